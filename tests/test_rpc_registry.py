"""The web3-free anchoring client (`RpcRegistry` + `Signer`) on a real anvil node: the anchor
sink runs on it end to end, and the node's refusals become the same errors as on the web3
client (`chain.AnchorRegistry`), which is the reference here."""

from __future__ import annotations

from pathlib import Path

import pytest
from anvil_node import AnvilNode, deploy_and_register, running
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client.errors import ChainError, ContractRevert, NonceConsumed
from ledger_client.evmtx import Fees, TxState
from ledger_client.keys import public_hex
from ledger_client.rpc import JsonRpc
from ledger_client.rpc_registry import RpcRegistry, decode_revert
from ledger_client.signer import Signer

pytestmark = pytest.mark.integration
GW = "gw-rpc-01"


@pytest.fixture
def node(tmp_path: Path):
    with running(tmp_path) as anvil:
        yield anvil


def _setup(node: AnvilNode, tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=key)
    web3_registry, customs, submitter = deploy_and_register(node, GW,
                                                            bytes.fromhex(public_hex(key)))
    registry = RpcRegistry(JsonRpc(node.url), web3_registry.address,
                           from_block=web3_registry.deploy_receipt["blockNumber"])  # type: ignore[index]
    return journal, web3_registry, customs, registry, Signer(bytes(submitter.key))


def _readings(journal: Journal, n: int) -> int:
    start = journal.head()[0]
    journal.append([Draft(1_790_000_000_000 + (start + i) * 100, "gps", "gps0",
                          {"lat_e7": -89_000_000 - start - i, "lon_e7": -795_000_000})
                    for i in range(n)])
    return journal.head()[0]


def test_the_sink_anchors_on_the_rpc_registry_and_both_clients_read_it_back(
        node: AnvilNode, tmp_path: Path) -> None:
    journal, web3_registry, _, registry, account = _setup(node, tmp_path)
    registry.check_deployed()
    info = registry.gateway(GW)
    assert info is not None and info.submitter == account.address
    sink = AnchorSink(journal, registry, account,  # type: ignore[arg-type]
                      BatchPolicy(max_leaves=4, max_age_s=3600, poll_s=0.02, confirmations=1))
    sink.close_due_batches(_readings(journal, 8))
    for _ in range(20):
        _, done = sink.poll()
        if done:
            break
        node.mine()
    for seq in (1, 2):
        batch = journal.batch(seq)
        assert batch is not None and batch.status == "anchored", batch
        assert registry.root(GW, seq) == web3_registry.root(GW, seq) == batch.root
        ours, theirs = registry.anchor_event(GW, seq), web3_registry.anchor_event(GW, seq)
        assert ours == theirs and ours is not None and ours.tx_hash == batch.tx_hash
        assert registry.receipt_event(batch.tx_hash) == ours  # type: ignore[arg-type]
        assert registry.tx_state(batch.tx_hash) is TxState.MINED  # type: ignore[arg-type]
    assert registry.nonce(account.address) == 2 == web3_registry.nonce(account.address)
    assert registry.head_block() == node.head


def test_a_reverting_preflight_names_the_same_custom_error_as_web3(node: AnvilNode,
                                                                   tmp_path: Path) -> None:
    _, web3_registry, customs, registry, account = _setup(node, tmp_path)
    root = b"\x11" * 32
    errors = []
    for client in (web3_registry, registry):
        with pytest.raises(ContractRevert) as info:
            client.preflight_anchor(account.address, 2, root, 1, 4)  # batch 1 comes first
        errors.append((info.value.error, info.value.values))
    assert errors[0] == errors[1] and errors[0][0] == "BadBatchSeq"
    stranger = Signer(b"\x07" * 32)
    errors = []
    for client in (web3_registry, registry):
        with pytest.raises(ContractRevert) as info:
            client.preflight_anchor(stranger.address, 1, root, 1, 4)
        errors.append((info.value.error, info.value.values))
    assert errors[0] == errors[1] == ("NotSubmitter", (stranger.address,))
    web3_registry.revoke_gateway(GW, customs)
    with pytest.raises(ContractRevert, match="RevokedGateway"):
        registry.preflight_anchor(account.address, 1, root, 1, 4)


def test_send_raw_is_idempotent_detects_a_taken_nonce_and_replays_a_revert(
        node: AnvilNode, tmp_path: Path) -> None:
    _, web3_registry, _, registry, account = _setup(node, tmp_path)
    raw, tx_hash = registry.build_anchor_tx(account, 1, b"\x22" * 32, 1, 4, nonce=0)
    assert registry.send_raw(raw) == tx_hash
    assert registry.send_raw(raw) == tx_hash  # mined already: same hash, no error
    other, _ = registry.build_anchor_tx(account, 2, b"\x33" * 32, 5, 4, nonce=0,
                                        fees=Fees(gas_price=2 * 10**9))
    with pytest.raises(NonceConsumed):
        registry.send_raw(other)
    # a tx that reverts on chain (preflight skipped): the receipt names the custom error
    bad, bad_hash = registry.build_anchor_tx(account, 5, b"\x44" * 32, 5, 4, nonce=1)
    registry.send_raw(bad)
    with pytest.raises(ContractRevert, match="BadBatchSeq"):
        registry.receipt_event(bad_hash)
    assert registry.receipt_event(b"\x00" * 32) is None
    assert registry.tx_state(b"\x00" * 32) is TxState.UNKNOWN
    fees = registry.suggest_fees()
    assert fees == web3_registry.suggest_fees() and not fees.legacy
    assert registry.suggest_fees(0) == Fees(gas_price=0)


def test_revert_data_decodes_like_web3_and_garbage_is_unknown() -> None:
    error = decode_revert(bytes.fromhex("08c379a0") + (32).to_bytes(32, "big")
                          + (2).to_bytes(32, "big") + b"no".ljust(32, b"\0"))
    assert (error.error, error.values) == ("Error", ("no",))
    assert decode_revert(b"\xde\xad\xbe\xef").error == "UnknownRevert"
    with pytest.raises(ChainError):
        raise decode_revert(b"")
