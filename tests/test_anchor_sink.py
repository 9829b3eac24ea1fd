"""Anchoring sink on the in-process chain: batching rules and crash recovery at every step."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from edge_agent.tail import JournalTail
from ledger_client import chain
from ledger_client.chain import ContractRevert
from ledger_client.keys import public_hex
from ledger_client.proof import BatchRoot, verify_log

GW = "gw-anchor-test"


class Env:
    def __init__(self, tmp_path: Path):
        self.key = Ed25519PrivateKey.generate()
        self.journal = Journal(tmp_path / "j.db", gateway_id=GW, key=self.key)
        self.w3 = chain.connect(None)
        customs = self.w3.eth.accounts[0]
        self.registry = chain.AnchorRegistry.deploy(self.w3, customs)
        self.account = Account.create()
        chain.fund(self.w3, customs, self.account.address, 10**18)
        self.registry.register_gateway(GW, bytes.fromhex(public_hex(self.key)),
                                       self.account.address, customs)

    def sink(self, **policy) -> AnchorSink:
        return AnchorSink(self.journal, self.registry, self.account, BatchPolicy(**policy))

    def readings(self, n: int) -> None:
        start = self.journal.head()[0]
        self.journal.append([Draft(1_790_000_000_000 + (start + i) * 100, "gps", "gps0",
                                   {"lat_e7": -349_000_000 + i, "lon_e7": -562_000_000})
                             for i in range(n)])

    def alert(self, severity: str) -> None:
        seq = self.journal.head()[0] + 1
        self.journal.append([Draft(1_790_000_000_000, "alert", "rules", {
            "alert_id": f"00000000-0000-5000-8000-{seq:012d}", "type": "routeDeviation",
            "severity": severity, "evidence": []})])


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _anchor_all(sink: AnchorSink) -> None:
    assert asyncio.run(sink.submit_pending())


def test_batches_close_on_max_leaves_and_anchor_in_order(env) -> None:
    env.readings(40)
    sink = env.sink(max_leaves=16, max_age_s=3600)
    closed = sink.close_due_batches(env.journal.head()[0])
    assert [(b.first_seq, b.tree_size, b.reason) for b in closed] == \
        [(1, 16, "max_leaves"), (17, 16, "max_leaves")]  # 8 left pending: not yet due
    _anchor_all(sink)
    for batch in env.journal.batches():
        assert batch.status == "anchored"
        assert env.registry.root(GW, batch.batch_seq) == batch.root
    info = env.registry.gateway(GW)
    assert (info.last_batch, info.next_seq) == (2, 33)
    report = verify_log(env.journal.iter_signed(), env.key.public_key(),
                        [BatchRoot(b.first_seq, b.tree_size, b.root)
                         for b in env.journal.batches()], gateway_id=GW)
    assert (report.anchored_through, report.unanchored_tail) == (32, 8)


def test_a_critical_alert_closes_the_batch_at_once_and_a_warning_does_not(env) -> None:
    env.readings(5)
    env.alert("warning")
    sink = env.sink(max_leaves=1000, max_age_s=3600)
    assert sink.close_due_batches(env.journal.head()[0]) == []
    env.alert("critical")
    closed = sink.close_due_batches(env.journal.head()[0])
    assert [(b.first_seq, b.tree_size, b.reason) for b in closed] == [(1, 7, "critical_alert")]


def test_max_age_closes_a_partial_batch(env) -> None:
    env.readings(3)
    sink = env.sink(max_leaves=1000, max_age_s=0.0)
    closed = sink.close_due_batches(env.journal.head()[0])
    assert [(b.first_seq, b.tree_size, b.reason) for b in closed] == [(1, 3, "max_age")]


def _sign_only(sink: AnchorSink, env: Env) -> bytes:
    """Do what step() does up to the crash point: nonce and raw tx durable, nothing sent."""
    batch = env.journal.batches(unanchored_only=True)[0]
    nonce = env.w3.eth.get_transaction_count(env.account.address, "pending")
    raw, tx_hash = env.registry.build_anchor_tx(env.account, batch.batch_seq, batch.root,
                                                batch.first_seq, batch.tree_size, nonce=nonce)
    env.journal.update_batch(batch.batch_seq, status="signed", nonce=nonce, raw_tx=raw,
                             tx_hash=tx_hash)
    return tx_hash


def test_restart_after_signing_resends_the_same_transaction(env) -> None:
    env.readings(10)
    sink = env.sink(max_leaves=10)
    sink.close_due_batches(10)
    tx_hash = _sign_only(sink, env)
    restarted = env.sink(max_leaves=10)  # a new process: only the journal survived
    _anchor_all(restarted)
    batch = env.journal.batch(1)
    assert batch.status == "anchored" and batch.tx_hash == tx_hash
    assert env.w3.eth.get_transaction_count(env.account.address) == 1  # one tx, one nonce


def test_restart_after_broadcast_asks_the_contract_and_does_not_anchor_twice(env) -> None:
    env.readings(10)
    sink = env.sink(max_leaves=10)
    sink.close_due_batches(10)
    _sign_only(sink, env)
    env.registry.send_raw(env.journal.batch(1).raw_tx)  # broadcast, then "crash" before "sent"
    restarted = env.sink(max_leaves=10)
    _anchor_all(restarted)
    assert env.journal.batch(1).status == "anchored"
    assert env.w3.eth.get_transaction_count(env.account.address) == 1
    env.readings(10)
    restarted.close_due_batches(20)
    _anchor_all(restarted)  # the next batch still lines up with the contract's sequence
    assert env.registry.gateway(GW).last_batch == 2


def test_node_down_leaves_the_batch_built_and_ingest_going(env) -> None:
    env.readings(10)
    sink = AnchorSink(env.journal, chain.AnchorRegistry(
        chain.connect("http://127.0.0.1:9", poa=False), env.registry.address),
                      env.account, BatchPolicy(max_leaves=10, backoff_s=(0.01, 0.02)))
    sink.close_due_batches(10)
    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        asyncio.run(sink.submit_pending())
    env.readings(5)  # ingest is unaffected
    assert env.journal.head()[0] == 15
    assert env.journal.batch(1).status == "built"
    sink.registry = env.registry  # the node is back
    _anchor_all(sink)
    assert env.journal.batch(1).status == "anchored"


def test_run_loop_anchors_batches_as_records_arrive_and_after_a_dead_node(env) -> None:
    dead = chain.AnchorRegistry(chain.connect("http://127.0.0.1:9", poa=False),
                                env.registry.address)
    sink = AnchorSink(env.journal, dead, env.account,
                      BatchPolicy(max_leaves=8, max_age_s=3600, poll_s=0.05,
                                  backoff_s=(0.01, 0.05)))

    async def scenario() -> None:
        tail = JournalTail(env.journal.head()[0])
        runner = asyncio.create_task(sink.run(tail))
        env.readings(8)
        await tail.advanced(8)
        while sink.errors < 2:  # the node is down: the loop keeps retrying with backoff
            await asyncio.wait_for(tail.wait_beyond(tail.head, timeout=0.05), 5)
        sink.registry = env.registry  # the node is back
        await asyncio.wait_for(sink.anchored.wait(), 10)
        sink.anchored.clear()
        env.readings(8)
        await tail.advanced(16)
        await asyncio.wait_for(sink.anchored.wait(), 10)
        runner.cancel()

    asyncio.run(scenario())
    assert [b.status for b in env.journal.batches()] == ["anchored", "anchored"]
    assert env.registry.gateway(GW).last_batch == 2


def test_a_revoked_gateway_stops_before_spending_gas_or_a_nonce(env) -> None:
    env.readings(4)
    sink = env.sink(max_leaves=2)
    sink.close_due_batches(2)
    _anchor_all(sink)
    env.registry.revoke_gateway(GW, env.w3.eth.accounts[0])
    sink.close_due_batches(4)
    nonce = env.w3.eth.get_transaction_count(env.account.address)
    with pytest.raises(ContractRevert) as excinfo:
        sink.poll()
    assert excinfo.value.error == "RevokedGateway"
    assert env.w3.eth.get_transaction_count(env.account.address) == nonce
    assert env.journal.batch(2).status == "built" and env.journal.batch(2).raw_tx is None


@pytest.mark.parametrize("bad", [{"max_leaves": 0}, {"confirmations": -1},
                                 {"gas_price_wei": -5}, {"poll_s": -1.0}])
def test_policy_refuses_nonsense(bad) -> None:
    with pytest.raises(ValueError):
        BatchPolicy(**bad)
