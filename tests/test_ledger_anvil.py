"""The anchoring sink against a real anvil node: confirmations, reorgs, stuck transactions and a
node that goes down and comes back.

Each test drives the sink's blocking `poll()` itself (or its real run loop where timing is the
point), and checks the outcome on the ledger, never only the sink's own bookkeeping: the root
the contract holds, how many transactions the submitter sent, which tx anchored the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anvil_node import AnvilNode, deploy_and_register, running, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from edge_agent.journal import Batch, Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from edge_agent.tail import JournalTail
from ledger_client.chain import LOG_WINDOW, AnchorRegistry
from ledger_client.keys import public_hex
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.verify import verify_record

pytestmark = pytest.mark.integration
GW = "gw-anvil-01"


class Gateway:
    """A registered gateway with its journal and a sink, on one anvil node."""

    def __init__(self, node: AnvilNode, tmp_path: Path) -> None:
        self.node = node
        key = Ed25519PrivateKey.generate()
        self.journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=key)
        self.registry, self.customs, self.submitter = deploy_and_register(
            node, GW, bytes.fromhex(public_hex(key)))

    def sink(self, **policy: object) -> AnchorSink:
        defaults: dict[str, object] = {"max_leaves": 8, "max_age_s": 3600, "poll_s": 0.02}
        return AnchorSink(self.journal, self.registry, self.submitter,
                          BatchPolicy(**{**defaults, **policy}))  # type: ignore[arg-type]

    def readings(self, n: int) -> int:
        start = self.journal.head()[0]
        self.journal.append([Draft(1_790_000_000_000 + (start + i) * 100, "gps", "gps0",
                                   {"lat_e7": -89_000_000 - start - i, "lon_e7": -795_000_000})
                             for i in range(n)])
        return self.journal.head()[0]

    def nonce(self) -> int:
        return self.node.w3.eth.get_transaction_count(self.submitter.address)

    def sent_unmined(self) -> tuple[AnchorSink, Batch]:
        """Automine off, batch 1 closed and broadcast: its tx waits in the node's pool."""
        self.node.automine(False)
        sink = self.sink(stuck_after_s=0.2)
        sink.close_due_batches(self.readings(8))
        sink.poll()
        sent = self.journal.batch(1)
        assert sent is not None and sent.status == "sent" and sent.tx_hash is not None
        assert sent.nonce == 0
        return sink, sent

    def pool_after_poll(self, sink: AnchorSink, other_than: bytes | None = None) -> list[Any]:
        """Let the sink look once, then list the submitter's txs in the pool (but one)."""
        sink.poll()
        return [t for t in self.node.pending(self.submitter.address)
                if other_than is None or t["hash"] != "0x" + other_than.hex()]

    def anchoring_tx(self, batch_seq: int) -> bytes:
        event = self.registry.anchor_event(GW, batch_seq)
        assert event is not None, f"batch {batch_seq} not anchored on chain"
        return event.tx_hash


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    with running(tmp_path) as n:
        yield n


@pytest.fixture
def gw(node: AnvilNode, tmp_path: Path) -> Gateway:
    return Gateway(node, tmp_path)


def test_confirmations_then_a_reorg_that_drops_the_anchor(gw: Gateway) -> None:
    sink = gw.sink(confirmations=2)
    sink.close_due_batches(gw.readings(8))
    assert sink.poll() == (0, False)
    batch = gw.journal.batch(1)
    assert batch is not None and batch.status == "mined"
    first_tx, first_block = batch.tx_hash, batch.block_number
    assert first_block == gw.node.head
    gw.node.mine(1)
    assert sink.poll() == (0, False)  # one block on top of it: not yet
    assert gw.journal.batch(1).status == "mined"  # type: ignore[union-attr]

    gw.node.reorg(2)  # the anchoring block and the one above it are replaced: the tx is gone
    assert gw.registry.root(GW, 1) is None
    sink.poll()  # the sink notices, puts the batch back and sends the SAME bytes again
    assert sink.counts["reorged"] == 1
    batch = gw.journal.batch(1)
    assert batch is not None and batch.status == "mined" and batch.tx_hash == first_tx
    assert gw.registry.root(GW, 1) == batch.root
    gw.node.mine(2)
    assert sink.poll() == (1, True)
    assert gw.journal.batch(1).status == "anchored"  # type: ignore[union-attr]
    assert gw.nonce() == 1  # one nonce, one transaction: nothing anchored twice
    assert gw.anchoring_tx(1) == first_tx


def test_an_old_anchor_is_found_through_log_windows_a_besu_node_accepts(gw: Gateway) -> None:
    """Besu caps eth_getLogs ranges (1000 blocks by default); a small cap keeps this quick."""
    window = 40
    sink = gw.sink()
    sink.close_due_batches(gw.readings(8))
    assert sink.poll() == (1, True)
    mined_in = gw.journal.batch(1).block_number  # type: ignore[union-attr]
    gw.node.rpc("anvil_mine", hex(2 * window + 10))
    capped = AnchorRegistry(gw.node.w3, gw.registry.address, log_window=window)
    calls: list[tuple[int, int]] = []
    real = gw.node.w3.eth.get_logs

    def counted(query):  # type: ignore[no-untyped-def]  # a spy: the real call answers
        calls.append((query["fromBlock"], query["toBlock"]))
        return real(query)

    gw.node.w3.eth.get_logs = counted  # type: ignore[method-assign]
    event = capped.anchor_event(GW, 1)
    assert event is not None and event.block_number == mined_in
    assert len(calls) == 3 and all(hi - lo < window for lo, hi in calls)
    assert calls[0][1] == gw.node.head and calls[-1][0] == 0
    calls.clear()
    assert capped.anchor_event(GW, 1, block_number=mined_in) == event and len(calls) == 1
    assert LOG_WINDOW == 1000 and gw.registry.log_window == LOG_WINDOW


def test_a_reorg_that_moves_the_anchor_to_another_block(gw: Gateway) -> None:
    sink = gw.sink(confirmations=3)
    sink.close_due_batches(gw.readings(8))
    sink.poll()
    before = gw.journal.batch(1)
    assert before is not None and before.status == "mined" and before.raw_tx is not None
    leaves = [r.signed for r in gw.journal.range(1, 8)]
    stale = make_proof(leaves, 1, 4, AnchorRef(
        gw.node.chain_id, gw.registry.address, 1, "0x" + before.tx_hash.hex(),  # type: ignore[union-attr]
        before.block_number or 0, "0x" + before.block_hash.hex(), 0), "anchored")  # type: ignore[union-attr]
    gw.node.mine(1)
    gw.node.reorg(2, [("0x" + before.raw_tx.hex(), 1)])  # same tx, one block later
    verified = verify_record(leaves[3], stale, gw.registry)  # a proof made before the reorg
    assert verified.block_number == before.block_number + 1  # type: ignore[operator]
    assert any("moved" in note for note in verified.notes)
    sink.poll()
    after = gw.journal.batch(1)
    assert after is not None and sink.counts["moved"] == 1 and sink.counts["reorged"] == 0
    assert after.block_number == before.block_number + 1  # type: ignore[operator]
    assert after.block_hash != before.block_hash and after.tx_hash == before.tx_hash
    gw.node.mine(2)
    assert sink.poll() == (0, False)  # confirmations count from the NEW block: 2 < 3
    gw.node.mine(1)
    assert sink.poll() == (1, True)
    assert gw.nonce() == 1


def test_a_reorg_that_gives_the_nonce_to_another_tx_rebuilds_the_batch(gw: Gateway) -> None:
    sink = gw.sink(confirmations=1)
    sink.close_due_batches(gw.readings(8))
    sink.poll()
    mined = gw.journal.batch(1)
    assert mined is not None and mined.status == "mined" and mined.nonce == 0
    # On the new branch, nonce 0 of the submitter pays someone instead of anchoring.
    other = gw.submitter.sign_transaction({
        "to": gw.customs.address, "value": 1, "gas": 21_000, "nonce": 0,
        "chainId": gw.node.chain_id, "gasPrice": 2 * gw.node.w3.eth.gas_price})
    gw.node.reorg(1, [("0x" + bytes(other.raw_transaction).hex(), 0)])
    sink.poll()  # dropped -> re-send -> nonce taken -> back to built
    assert sink.counts["reorged"] == 1 and sink.counts["rebuilt"] == 1
    assert gw.journal.batch(1).status == "built"  # type: ignore[union-attr]
    sink.poll()  # asks the contract, signs with nonce 1, sends
    gw.node.mine(1)
    assert sink.poll() == (1, True)
    rebuilt = gw.journal.batch(1)
    assert rebuilt is not None and rebuilt.nonce == 1 and rebuilt.tx_hash != mined.tx_hash
    assert gw.registry.root(GW, 1) == rebuilt.root
    assert gw.registry.gateway(GW).last_batch == 1  # type: ignore[union-attr]


def test_a_tx_dropped_from_the_mempool_is_broadcast_again(gw: Gateway) -> None:
    sink, sent = gw.sent_unmined()
    assert sent.tx_hash is not None
    assert [t["hash"] for t in gw.node.pending(gw.submitter.address)] == ["0x" + sent.tx_hash.hex()]
    gw.node.drop("0x" + sent.tx_hash.hex())
    assert gw.node.pending(gw.submitter.address) == []
    again = wait_for(lambda: gw.pool_after_poll(sink), 10, "the anchor tx back in the pool")
    assert [t["hash"] for t in again] == ["0x" + sent.tx_hash.hex()]
    assert sink.counts["rebroadcast"] == 1 and sink.counts["replaced"] == 0
    gw.node.mine(1)
    assert sink.poll() == (1, True)
    assert gw.anchoring_tx(1) == sent.tx_hash and gw.nonce() == 1


def test_an_underpriced_tx_is_replaced_at_the_same_nonce(gw: Gateway) -> None:
    sink, sent = gw.sent_unmined()
    base = gw.node.w3.eth.get_block("latest")["baseFeePerGas"]
    gw.node.rpc("anvil_setNextBlockBaseFeePerGas", hex(base * 50))
    gw.node.mine(1)  # the base fee jumps past the tx's fee cap: the node evicts it
    assert gw.node.pending(gw.submitter.address) == []
    replacement = wait_for(lambda: gw.pool_after_poll(sink, other_than=sent.tx_hash), 10,
                           "a replacement tx in the pool")
    assert int(replacement[0]["nonce"], 16) == 0
    assert sink.counts["replaced"] >= 1
    gw.node.mine(1)
    assert sink.poll() == (1, True)
    batch = gw.journal.batch(1)
    assert batch is not None and batch.nonce == 0 and batch.tx_hash != sent.tx_hash
    assert gw.anchoring_tx(1) == batch.tx_hash and gw.nonce() == 1


def test_a_tx_the_node_holds_but_never_mines_is_outbid_at_the_same_nonce(gw: Gateway) -> None:
    sink, sent = gw.sent_unmined()
    first_fee = int(gw.node.pending(gw.submitter.address)[0]["maxFeePerGas"], 16)
    pool = wait_for(lambda: gw.pool_after_poll(sink, other_than=sent.tx_hash), 10,
                    "the stuck tx replaced in the pool")
    assert len(pool) == 1 and int(pool[0]["nonce"], 16) == 0
    assert int(pool[0]["maxFeePerGas"], 16) >= first_fee * 1.1  # geth/Besu replacement rule
    assert sink.counts["replaced"] == 1 and sink.counts["rebroadcast"] == 0
    gw.node.mine(1)
    assert sink.poll() == (1, True)
    assert gw.anchoring_tx(1) == gw.journal.batch(1).tx_hash != sent.tx_hash  # type: ignore[union-attr]
    assert gw.nonce() == 1


def test_zero_gas_network_anchors_from_an_unfunded_key_and_never_bumps(tmp_path: Path) -> None:
    """Besu free-gas networks (min-gas-price 0): gas price 0, accounts hold no ether, and a
    stuck tx can only be re-broadcast, since outbidding 0 would need a balance."""
    with running(tmp_path, extra_args=("--block-base-fee-per-gas", "0")) as node:
        key = Ed25519PrivateKey.generate()
        customs, submitter = Account.create(), Account.create()  # no balance at all
        registry = AnchorRegistry.deploy(node.w3, customs, gas_price=0)
        registry.register_gateway(GW, bytes.fromhex(public_hex(key)), submitter.address,
                                  customs, gas_price=0)
        journal = Journal(tmp_path / "free.db", gateway_id=GW, key=key)
        journal.append([Draft(1_790_000_000_000 + i, "gps", "gps0", {"lat_e7": i})
                        for i in range(4)])
        node.automine(False)
        sink = AnchorSink(journal, registry, submitter,
                          BatchPolicy(max_leaves=4, gas_price_wei=0, stuck_after_s=0.0))
        sink.close_due_batches(4)
        for _ in range(3):  # stuck every time it is looked at: it must not try to outbid
            sink.poll()
        assert sink.counts["replaced"] == 0
        assert [int(t["gasPrice"], 16) for t in node.pending(submitter.address)] == [0]
        node.mine(1)
        assert sink.poll() == (1, True)
        assert node.w3.eth.get_balance(submitter.address) == 0
        assert registry.root(GW, 1) == journal.batch(1).root  # type: ignore[union-attr]


def test_node_down_then_up_anchoring_resumes_and_readings_keep_flowing(gw: Gateway) -> None:
    sink = gw.sink(max_leaves=5, backoff_s=(0.02, 0.1))
    registry_address = gw.registry.address

    async def scenario() -> None:
        tail = JournalTail(gw.journal.head()[0])
        runner = asyncio.create_task(sink.run(tail))
        await tail.advanced(gw.readings(5))
        await asyncio.wait_for(sink.anchored.wait(), 10)
        await asyncio.to_thread(gw.node.stop)  # graceful: anvil keeps its chain in --state
        errors = sink.errors
        for _ in range(3):  # ingest goes on while the ledger is away
            await tail.advanced(gw.readings(5))
        while sink.errors < errors + 2:  # retrying with backoff
            await asyncio.sleep(0.02)
        assert gw.journal.head()[0] == 20
        assert [b.status for b in gw.journal.batches()] == ["anchored", "built", "built", "built"]
        await asyncio.to_thread(gw.node.start)
        while gw.journal.batches(unanchored_only=True):
            await asyncio.wait_for(tail.wait_beyond(tail.head, timeout=0.05), 20)
        runner.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    on_chain = AnchorRegistry(gw.node.w3, registry_address).gateway(GW)
    assert on_chain is not None and (on_chain.last_batch, on_chain.next_seq) == (4, 21)
    for batch in gw.journal.batches():
        assert gw.registry.root(GW, batch.batch_seq) == batch.root

