"""`sealtrail verify` is strict about what an evidence file claims, against a real anvil node.

Every variant here is a file someone could hand to customs: labels that lie about the signed
seq, a header naming another gateway, a gateway that signed a fork and anchored it, and forged
records anchored on an attacker's own registry. Each is refused with its own exit code; the
honest file verifies, so each refusal is due to the change made.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anvil_node import AnvilNode, running
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account.signers.local import LocalAccount

from edge_agent.journal import Draft, Journal
from edge_agent.ledger_cli import JournalFile, build_evidence
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client import chain, evidence
from ledger_client.keys import public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.proof import AnchorRef
from ledger_client.records import GENESIS_PREV, record_hash, sign_record
from sealtrail.cli import main

pytestmark = pytest.mark.integration
GW = "gw-strict"
T0 = 1_790_000_000_000
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class World:
    node: AnvilNode
    tmp: Path
    customs: chain.AnchorRegistry
    honest: Path  # seqs 1..12 of GW, three anchored batches of 4

    def doc(self) -> dict[str, Any]:
        return json.loads(self.honest.read_text())

    def write(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.tmp / name
        path.write_text(json.dumps(doc))
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("strict")
    with running(tmp) as node:
        admin, submitter = node.account(), node.account()
        customs = chain.AnchorRegistry.deploy(node.w3, admin)
        key = Ed25519PrivateKey.generate()
        customs.register_gateway(GW, bytes.fromhex(public_hex(key)), submitter.address, admin)
        journal = Journal(tmp / "journal.db", gateway_id=GW, key=key)
        journal.append([Draft(T0 + i * 1000, "gps", "gps0", {"lat_e7": i}) for i in range(12)])
        sink = AnchorSink(journal, customs, submitter, BatchPolicy(max_leaves=4))
        asyncio.run(sink.flush(12))
        journal.close()
        jf = JournalFile(tmp / "journal.db")
        try:
            ev = build_evidence(jf, dict(jf.signed(1, 12)), {"seq": ["1..12"]})
        finally:
            jf.close()
        honest = tmp / "honest.json"
        honest.write_text(ev.to_json())
        yield World(node, tmp, customs, honest)


@pytest.fixture(autouse=True)
def no_ambient_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes chooses the ledger."""
    monkeypatch.delenv("SEALTRAIL_CONTRACT", raising=False)
    monkeypatch.delenv("SEALTRAIL_RPC", raising=False)


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def ledger(w: World, contract: str | None = None) -> list[str]:
    return ["--rpc", w.node.url, "--contract", contract or w.customs.address]


def fails(out: str, label: str) -> list[int]:
    return [int(m) for m in re.findall(rf"^FAIL  seq (\d+) .*?: {label}: ", out, re.M)]


def oks(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"^OK    seq (\d+) ", out, re.M)]


def test_the_honest_file_verifies(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verify(capsys, str(world.honest), *ledger(world))
    assert code == 0, out + err
    assert oks(out) == list(range(1, 13)) and "summary: 12 of 12 records verified" in out


def test_a_relabelled_seq_is_reported_by_its_signed_seq_and_fails(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    doc = world.doc()
    doc["records"][3]["seq"] = 40
    code, out, _ = verify(capsys, str(world.write("relabelled.json", doc)), *ledger(world))
    assert code == 19
    assert fails(out, "mislabelled seq") == [4] and "seq 40" not in out.replace(
        "labels this record seq 40", "")
    assert "the file labels this record seq 40; its signed seq is 4" in out
    assert oks(out) == [1, 2, 3, *range(5, 13)]

    doc = world.doc()  # two labels swapped: both records named by what they are
    doc["records"][0]["seq"], doc["records"][1]["seq"] = 2, 1
    code, out, _ = verify(capsys, str(world.write("swapped.json", doc)), *ledger(world))
    assert code == 19 and fails(out, "mislabelled seq") == [1, 2]


def test_a_header_naming_another_gateway_fails_every_record(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    doc = world.doc()
    doc["gateway_id"] = "gw-innocent"
    code, out, _ = verify(capsys, str(world.write("header.json", doc)), *ledger(world))
    assert code == 18 and fails(out, "wrong gateway") == list(range(1, 13))
    assert f"signed by gateway '{GW}', but the file is gateway 'gw-innocent'" in out


def _register(w: World, registry: chain.AnchorRegistry, admin: LocalAccount,
              gateway_id: str) -> tuple[Ed25519PrivateKey, LocalAccount]:
    key, submitter = Ed25519PrivateKey.generate(), w.node.account()
    registry.register_gateway(gateway_id, bytes.fromhex(public_hex(key)), submitter.address,
                              admin)
    return key, submitter


def _sign(key: Ed25519PrivateKey, gateway_id: str, seq: int, prev: str, lat: int) -> bytes:
    return sign_record({"v": 1, "gw": gateway_id, "seq": seq, "t_ms": T0 + seq, "kind": "gps",
                        "src": "gps0", "body": {"lat_e7": lat}, "prev": prev}, key)[1]


def _anchor_as(w: World, registry: chain.AnchorRegistry, submitter: LocalAccount,
               gateway_id: str, signed: list[bytes], name: str) -> Path:
    nonce = registry.w3.eth.get_transaction_count(submitter.address)
    root = MerkleTree.from_leaves(signed).root
    raw, tx_hash = registry.build_anchor_tx(submitter, 1, root, 1, len(signed), nonce=nonce)
    registry.send_raw(raw)
    event = registry.event_from_receipt(registry.w3.eth.wait_for_transaction_receipt(tx_hash))
    ref = AnchorRef(registry.chain_id, registry.address, 1, "0x" + tx_hash.hex(),
                    event.block_number, "0x" + event.block_hash.hex(), event.log_index)
    batch = evidence.BatchInfo(1, 1, len(signed), root, ref, True)
    ev = evidence.build(gateway_id, enumerate(signed, 1), [batch], lambda a, b: signed[a - 1:b])
    path = w.tmp / name
    path.write_text(ev.to_json())
    return path


def test_a_fork_the_gateway_signed_and_anchored_is_a_broken_link(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """The registered key signed seq 3 on top of another seq 2 than the one it anchored: every
    record is genuine and in the anchored root, and still the file is not one chain."""
    admin = world.node.account()
    registry = chain.AnchorRegistry.deploy(world.node.w3, admin)
    key, submitter = _register(world, registry, admin, "gw-fork")
    r1 = _sign(key, "gw-fork", 1, GENESIS_PREV, 1)
    r2 = _sign(key, "gw-fork", 2, record_hash(r1).hex(), 2)
    other2 = _sign(key, "gw-fork", 2, record_hash(r1).hex(), 99)
    r3 = _sign(key, "gw-fork", 3, record_hash(other2).hex(), 3)
    r4 = _sign(key, "gw-fork", 4, record_hash(r3).hex(), 4)
    path = _anchor_as(world, registry, submitter, "gw-fork", [r1, r2, r3, r4], "fork.json")
    code, out, _ = verify(capsys, str(path), *ledger(world, registry.address))
    assert code == 17 and fails(out, "broken link") == [3] and oks(out) == [1, 2, 4]
    assert "is not the hash of seq 2 in this file" in out

    doc = json.loads(path.read_text())  # without seq 2 there is nothing to link 3 to
    del doc["records"][1]
    code, out, _ = verify(capsys, str(world.write("fork-gap.json", doc)),
                          *ledger(world, registry.address))
    assert code == 0 and oks(out) == [1, 3, 4]


def test_seq_1_must_start_the_chain(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    admin = world.node.account()
    registry = chain.AnchorRegistry.deploy(world.node.w3, admin)
    key, submitter = _register(world, registry, admin, "gw-nogenesis")
    r1 = _sign(key, "gw-nogenesis", 1, "ab" * 32, 1)
    r2 = _sign(key, "gw-nogenesis", 2, record_hash(r1).hex(), 2)
    path = _anchor_as(world, registry, submitter, "gw-nogenesis", [r1, r2], "nogenesis.json")
    code, out, _ = verify(capsys, str(path), *ledger(world, registry.address))
    assert code == 17 and fails(out, "broken link") == [1] and oks(out) == [2]


@pytest.fixture(scope="module")
def forged(world: World) -> tuple[Path, str]:
    """Records of GW signed by an attacker's key, anchored on the attacker's own registry
    (where the attacker registered GW): the file names the attacker's contract."""
    admin = world.node.account()
    attacker = chain.AnchorRegistry.deploy(world.node.w3, admin)
    key, submitter = _register(world, attacker, admin, GW)
    signed, prev = [], GENESIS_PREV
    for seq in range(1, 5):
        signed.append(_sign(key, GW, seq, prev, -seq))
        prev = record_hash(signed[-1]).hex()
    return _anchor_as(world, attacker, submitter, GW, signed, "forged.json"), attacker.address


def test_a_file_on_an_attackers_registry_is_refused(
        world: World, forged: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, attacker = forged
    assert json.loads(path.read_text())["contract"] == attacker
    code, out, err = verify(capsys, str(path), "--rpc", world.node.url)
    assert code == 2 and out == ""
    assert "no registry contract chosen" in err and "never trusted" in err
    # consistent on the attacker's own registry: the refusal is about whose registry counts
    code, out, _ = verify(capsys, str(path), *ledger(world, attacker))
    assert code == 0 and oks(out) == [1, 2, 3, 4]

    code, out, _ = verify(capsys, str(path), *ledger(world))
    assert code == 15 and fails(out, "wrong chain") == [1, 2, 3, 4]
    assert f"the file is for chain 31337 contract {attacker}" in out


def test_customs_contract_from_the_environment_or_the_config(
        world: World, forged: tuple[Path, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = forged
    monkeypatch.setenv("SEALTRAIL_CONTRACT", world.customs.address)
    code, out, _ = verify(capsys, str(path), "--rpc", world.node.url)
    assert code == 15 and fails(out, "wrong chain") == [1, 2, 3, 4]
    assert "(from $SEALTRAIL_CONTRACT)" in out
    monkeypatch.delenv("SEALTRAIL_CONTRACT")

    config = world.tmp / "customs.toml"  # the customs service's tables are not verify's
    config.write_text(f'[mqtt]\nhost = "broker"\nport = "not a number"\n[store]\npath = 3\n'
                      f'[ledger]\nrpc = "{world.node.url}"\ncontract = "{world.customs.address}"'
                      '\npoa = true\n')
    code, out, _ = verify(capsys, str(path), "--config", str(config))
    assert code == 15 and fails(out, "wrong chain") == [1, 2, 3, 4]
    assert f"(from --config {config} [ledger] contract)" in out

    doc = json.loads(path.read_text())  # the header claims customs' contract; proofs do not
    doc["contract"] = world.customs.address
    code, out, _ = verify(capsys, str(world.write("forged-header.json", doc)), *ledger(world))
    assert code == 15 and fails(out, "wrong chain") == [1, 2, 3, 4]


def test_flag_beats_config_beats_environment(world: World, forged: tuple[Path, str],
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, attacker = forged
    config = world.tmp / "precedence.toml"
    config.write_text(f'[ledger]\nrpc = "{world.node.url}"\ncontract = "{world.customs.address}"'
                      '\nconfirmations = 50\n')
    monkeypatch.setenv("SEALTRAIL_CONTRACT", attacker)
    code, out, _ = verify(capsys, str(world.honest), "--config", str(config))
    assert code == 14 and "50 required" in out  # config's contract and confirmations
    code, out, _ = verify(capsys, str(world.honest), "--config", str(config),
                          "--confirmations", "0")
    assert code == 0 and oks(out) == list(range(1, 13))
    code, out, _ = verify(capsys, str(world.honest), "--config", str(config), "--contract",
                          attacker)
    assert code == 15  # the flag wins: the honest file is on another contract than that one
    config.write_text(f'[ledger]\nrpc = "{world.node.url}"\nchain_id = 1\n')
    code, _, err = verify(capsys, str(world.honest), "--config", str(config))
    assert code == 1 and "not the expected chain 1" in err  # contract from the environment


@pytest.mark.parametrize("text, words", [
    ('[ledger]\ncontract = 12\n', "[ledger] contract must be a string, got 12"),
    ('[ledger]\nconfirmations = -1\n', "[ledger] confirmations must be an integer >= 0"),
    ('[store]\npath = "x"\n', "no [ledger] table"),
    ('[ledger\n', "not a TOML file"),
    ('[ledger]\nrpc = "http://x"\n', "has no contract"),
])
def test_a_config_that_cannot_be_used_is_bad_input(world: World, text: str, words: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = world.tmp / "bad.toml"
    config.write_text(text)
    code, out, err = verify(capsys, str(world.honest), "--config", str(config))
    assert code == 2 and out == "" and words in err and "Traceback" not in err
    assert str(config) in err


def test_verify_never_loads_web3(world: World) -> None:
    """The command reads the ledger over raw JSON-RPC: no web3 import (1.5 s, and py_ecc's
    recursion limit), checked in a fresh interpreter that runs the real command."""
    script = ("import sys; from sealtrail.cli import main; rc = main(sys.argv[1:]); "
              "sys.exit(100 if 'web3' in sys.modules else rc)")
    proc = subprocess.run([sys.executable, "-c", script, "verify", str(world.honest),
                           *ledger(world)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 12 of 12 records verified" in proc.stdout
