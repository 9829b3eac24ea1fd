"""The ledger commands as customs and installers run them, against a real anvil node:
deploy, register, anchor through the agent's sink, status, evidence export, verify; then every
way a verification must fail, each with its own exit code.

Commands run in-process through `sealtrail.cli.main` (the parser and handlers the installed
`sealtrail` script runs); one run goes through a real subprocess to prove the entry point.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from anvil_node import AnvilNode, running, write_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account.signers.local import LocalAccount

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client import chain
from ledger_client.evmkey import load_account
from ledger_client.keys import public_hex
from sealtrail.cli import main

pytestmark = pytest.mark.integration
GW = "gw-cli-01"
PLAN = "plan-cli-7"
T0 = 1_790_000_000_000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@dataclass
class Setup:
    node: AnvilNode
    tmp: Path
    contract: str
    customs_key: Path
    submitter: LocalAccount
    journal: Journal
    alert_id: str

    def rpc(self, contract: bool = True) -> list[str]:
        return ["--rpc", self.node.url] + (["--contract", self.contract] if contract else [])


def _alert(seq_cited: int, t_ms: int, n: int) -> Draft:
    return Draft(t_ms, "alert", "rules", {
        "alert_id": f"00000000-0000-5000-8000-{n:012d}", "type": "routeDeviation",
        "severity": "critical", "asset": {"vehicle": "truck-1", "gps": "gps0"},
        "plan_id": PLAN, "evidence": [seq_cited]})


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Setup]:
    with running(tmp_path) as node:
        customs_key = write_key(tmp_path / "customs.key", node.account())
        code, out, err = run(capsys, "ledger", "deploy", "--rpc", node.url, "--key",
                             str(customs_key), "--json")
        assert code == 0, err
        contract = json.loads(out)["contract"]
        code, out, err = run(capsys, "ledger", "account", "--create", "--key",
                             str(tmp_path / "submitter.key"))
        assert code == 0, err
        submitter = load_account(tmp_path / "submitter.key")
        assert out.splitlines()[-1] == submitter.address
        node.rpc("anvil_setBalance", submitter.address, hex(10**20))
        key = Ed25519PrivateKey.generate()
        code, out, err = run(capsys, "ledger", "register-gateway", "--rpc", node.url,
                             "--contract", contract, "--key", str(customs_key), "--gateway-id",
                             GW, "--pubkey", public_hex(key), "--submitter", submitter.address)
        assert code == 0, err
        journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=key)
        # batch 1: seqs 1-8 (gps0, gps1 alternating), batch 2: 9-16 with an alert at 12,
        # then 17-20 closed but not sent, and 21-22 not even batched.
        journal.append([Draft(T0 + i * 1000, "gps", f"gps{i % 2}", {"lat_e7": i})
                        for i in range(1, 12)])
        journal.append([_alert(9, T0 + 11_500, 12)])
        journal.append([Draft(T0 + i * 1000, "gps", f"gps{i % 2}", {"lat_e7": i})
                        for i in range(13, 21)])
        sink = AnchorSink(journal, chain.AnchorRegistry(chain.connect(node.url), contract),
                          submitter, BatchPolicy(max_leaves=8, max_age_s=3600))
        sink.close_due_batches(16)
        assert sink.poll() == (2, True)
        sink.close_due_batches(20, force=True)  # batch 3 closed, never sent
        journal.append([Draft(T0 + 21_000, "gps", "gps0", {"lat_e7": 21}),
                        Draft(T0 + 22_000, "gps", "gps1", {"lat_e7": 22})])
        yield Setup(node, tmp_path, contract, customs_key, submitter, journal,
                    "00000000-0000-5000-8000-000000000012")
        journal.close()


def export(s: Setup, capsys: pytest.CaptureFixture[str], name: str,
           *selectors: str) -> tuple[Path, str]:
    path = s.tmp / name
    code, _, err = run(capsys, "evidence", "export", "--journal", str(s.journal.path), "-o",
                       str(path), *selectors)
    assert code == 0, err
    return path, err


def fails(out: str, label: str) -> list[int]:
    """Seqs of the records `verify` reported failing with `label`."""
    return [int(m) for m in re.findall(rf"^FAIL  seq (\d+) .*?: {label}: ", out, re.M)]


def oks(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"^OK    seq (\d+) ", out, re.M)]


def test_export_and_verify_a_plan_then_tamper_with_it(setup: Setup,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path, err = export(setup, capsys, "plan.json", "--plan", PLAN)
    doc = json.loads(path.read_text())
    # the alert (12), the reading it cites (9), and gps0's readings from t(9) to t(12)
    assert [r["seq"] for r in doc["records"]] == [9, 10, 11, 12]
    assert all(r["status"] == "anchored" for r in doc["records"]) and err == ""
    assert doc["chain_id"] == 31337 and doc["contract"] == setup.contract
    assert doc["gateway_id"] == GW and [a["batch_seq"] for a in doc["anchors"]] == [2]

    code, out, err = run(capsys, "verify", str(path), *setup.rpc(), "-v")
    assert code == 0, out + err
    assert oks(out) == [9, 10, 11, 12] and "summary: 4 of 4 records verified" in out
    assert "signature: ok" in out

    tampered = json.loads(path.read_text())
    tampered["records"][1]["record"] = tampered["records"][1]["record"].replace(
        '"lat_e7":10', '"lat_e7":11')
    (setup.tmp / "tampered.json").write_text(json.dumps(tampered))
    code, out, _ = run(capsys, "verify", str(setup.tmp / "tampered.json"), *setup.rpc())
    assert code == 11
    assert fails(out, "tampered") == [10] and oks(out) == [9, 12]
    # seq 11 is genuine, but its prev names the hash of the real seq 10, not of this file's
    assert fails(out, "broken link") == [11]


def test_pending_records_are_exported_and_fail_as_not_anchored(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    path, err = export(setup, capsys, "pending.json", "--seq", "15..22")
    assert "pending: seq 17..22 not anchored yet" in err
    doc = json.loads(path.read_text())
    assert [r["status"] for r in doc["records"]] == ["anchored"] * 2 + ["pending"] * 6
    assert doc["records"][2]["proof"]["anchor"] is None and doc["records"][6]["proof"] is None
    code, out, _ = run(capsys, "verify", str(path), *setup.rpc())
    assert code == 14 and fails(out, "not anchored") == list(range(17, 23))
    assert oks(out) == [15, 16]
    code, out, _ = run(capsys, "verify", str(path), *setup.rpc(), "--confirmations", "50")
    assert code == 14 and "confirmations, 50 required" in out


def test_wrong_chain_and_revoked_gateway(setup: Setup, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path, _ = export(setup, capsys, "all.json", "--seq", "1..16", "--seq", "20")
    with running(tmp_path, chain_id=4242) as other:  # same contract address, other chain
        code, out, _ = run(capsys, "verify", str(path), "--rpc", other.url, "--contract",
                           setup.contract)
        assert code == 15 and fails(out, "wrong chain") == [*range(1, 17), 20]

    code, out, err = run(capsys, "ledger", "revoke-gateway", *setup.rpc(), "--key",
                         str(setup.customs_key), "--gateway-id", GW, "--last-trusted-batch", "1")
    assert code == 0, err
    assert "batches 1..1 stay verifiable" in out
    code, out, _ = run(capsys, "verify", str(path), *setup.rpc())
    assert code == 13
    assert oks(out) == list(range(1, 9))
    assert fails(out, "revoked gateway") == [*range(9, 17), 20]
    assert "was revoked at block" in out


def test_wrong_key_is_told_apart_from_tampering(setup: Setup,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A gateway that signs with a key other than the registered one, and anchors: the
    records are in the anchored roots, so the verdict is 'wrong key', not 'tampered'."""
    other_key, submitter = Ed25519PrivateKey.generate(), setup.node.account()
    registry = chain.AnchorRegistry(chain.connect(setup.node.url), setup.contract)
    registry.register_gateway("gw-rekeyed", bytes.fromhex(public_hex(Ed25519PrivateKey.generate())),
                              submitter.address, load_account(setup.customs_key))
    journal = Journal(setup.tmp / "rekeyed.db", gateway_id="gw-rekeyed", key=other_key)
    journal.append([Draft(T0 + i, "gps", "gps0", {"lat_e7": i}) for i in range(3)])
    sink = AnchorSink(journal, registry, submitter, BatchPolicy(max_leaves=3))
    sink.close_due_batches(3)
    assert sink.poll() == (1, True)
    path = setup.tmp / "rekeyed.json"
    code, _, err = run(capsys, "evidence", "export", "--journal", str(journal.path), "-o",
                       str(path), "--seq", "1..3")
    assert code == 0, err
    code, out, _ = run(capsys, "verify", str(path), *setup.rpc())
    assert code == 16 and fails(out, "wrong key") == [1, 2, 3]


def test_status_shows_registration_and_lag(setup: Setup,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ledger", "status", *setup.rpc(), "--journal",
                         str(setup.journal.path))
    assert code == 0, err
    assert f"gateway {GW}: active" in out and setup.submitter.address in out
    assert "last batch on chain: 2 (seq 9..16)" in out
    assert "batches: 2 anchored, 1 built" in out and "2 records not in a closed batch" in out
    assert "anchoring lag: 6 records not on chain yet" in out
    code, out, _ = run(capsys, "ledger", "status", *setup.rpc(), "--gateway-id", GW, "--json")
    st = json.loads(out)
    assert code == 0 and st["last_batch"] == 2 and st["revoked"] is False


def test_verify_one_alert_from_the_journal_and_a_record_with_its_proof(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "--journal", str(setup.journal.path), "--alert",
                       setup.alert_id, *setup.rpc())
    assert code == 0 and f"seq 12 alert routeDeviation {setup.alert_id}" in out
    path, _ = export(setup, capsys, "one.json", "--alert", setup.alert_id)
    entry = next(r for r in json.loads(path.read_text())["records"] if r["seq"] == 12)
    (setup.tmp / "alert.json").write_text(entry["record"] + "\n")
    (setup.tmp / "proof.json").write_text(json.dumps(entry["proof"]))
    argv = [sys.executable, "-m", "sealtrail.cli", "verify", "--record",
            str(setup.tmp / "alert.json"), "--proof", str(setup.tmp / "proof.json"),
            *setup.rpc()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 1 of 1 records verified" in proc.stdout


def test_bad_input_gets_a_clear_error_and_exit_2(setup: Setup,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    loose = write_key(setup.tmp / "loose.key", setup.node.account())
    loose.chmod(0o644)
    code, _, err = run(capsys, "ledger", "deploy", "--rpc", setup.node.url, "--key", str(loose))
    assert code == 2 and "too open" in err
    code, _, err = run(capsys, "ledger", "register-gateway", *setup.rpc(), "--key",
                       str(setup.customs_key), "--gateway-id", "x", "--pubkey", "abcd",
                       "--submitter", setup.submitter.address)
    assert code == 2 and "32 bytes" in err
    code, _, err = run(capsys, "evidence", "export", "--journal", str(setup.journal.path),
                       "-o", str(setup.tmp / "x.json"), "--alert", "no-such-alert")
    assert code == 2 and "no such alert" in err
    (setup.tmp / "junk.json").write_text("{}")
    code, _, err = run(capsys, "verify", str(setup.tmp / "junk.json"), *setup.rpc())
    assert code == 2 and "not a sealtrail-evidence/1 document" in err
    code, _, err = run(capsys, "ledger", "status", "--rpc", "http://127.0.0.1:9",
                       "--contract", setup.contract, "--gateway-id", GW)
    assert code == 3 and "cannot reach the ledger" in err
    code, _, err = run(capsys, "ledger", "status", *setup.rpc(), "--gateway-id", GW,
                       "--chain-id", "1")
    assert code == 1 and "not the expected chain 1" in err
