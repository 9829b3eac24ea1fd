"""SIGKILL of a real agent process between broadcast and receipt, on a real anvil node.

Automine is off, so every anchor transaction the agent broadcasts waits in the node's pool until
the test mines it: the test kills the agent exactly in that window, then changes the ledger
behind its back (mines the tx, or drops it from the pool), and starts the agent again. At the
end the ledger must hold every batch of the journal exactly once, in order, with the roots the
journal's records produce, and the submitter must have sent exactly one transaction per batch.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from anvil_node import AnvilNode, deploy_and_register, running, wait_for, write_key
from web3 import Web3

from ledger_client.chain import ANCHORED_TOPIC, gateway_key
from ledger_client.keys import create_key, public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.proof import BatchRoot, verify_log

pytestmark = pytest.mark.integration
HELPER = Path(__file__).parent / "helpers" / "anchor_agent.py"
GW = "gw-crash"  # the helper's gateway id
TOTAL = 40


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    with running(tmp_path) as n:
        yield n


def _batches(journal: Path) -> list[tuple[int, int, int, bytes, str]]:
    if not journal.exists():
        return []
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT batch_seq, first_seq, tree_size, root, status "
                               "FROM batches ORDER BY batch_seq"))


def _records(journal: Path) -> list[bytes]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT signed FROM records ORDER BY seq")]


class AgentProcess:
    def __init__(self, tmp_path: Path, node: AnvilNode, contract: str) -> None:
        self.args = [sys.executable, str(HELPER), str(tmp_path / "journal.db"),
                     str(tmp_path / "gateway.key"), str(tmp_path / "submitter.key"), node.url,
                     contract, str(TOTAL)]
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: "
                                 f"{self.log.read_text(errors='replace')[-3000:]}")
        return True

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup, no flush
        self.proc.wait(timeout=10)


def test_sigkill_between_broadcast_and_receipt_anchors_each_batch_once(
        node: AnvilNode, tmp_path: Path) -> None:
    key = create_key(tmp_path / "gateway.key")
    registry, _, submitter = deploy_and_register(node, GW, bytes.fromhex(public_hex(key)))
    write_key(tmp_path / "submitter.key", submitter)
    journal = tmp_path / "journal.db"
    agent = AgentProcess(tmp_path, node, registry.address)
    node.automine(False)

    for round_no in range(4):
        agent.start()
        in_pool = wait_for(lambda: agent.alive() and node.pending(submitter.address), 30,
                           f"an anchor tx in the pool (round {round_no})")
        agent.kill()  # broadcast happened (the node has it), no receipt can exist yet
        assert len(in_pool) == 1  # one transaction in flight, never more
        if round_no % 2 == 0:
            node.mine(1)  # mined while the agent is dead: it must not send it again
        else:
            node.drop(in_pool[0]["hash"])  # lost while dead: it must send the same bytes again

    node.automine(True)
    agent.start()

    def all_anchored() -> bool:
        agent.alive()
        batches = _batches(journal)
        return bool(batches) and batches[-1][1] + batches[-1][2] - 1 == TOTAL and all(
            b[4] == "anchored" for b in batches)

    wait_for(all_anchored, 90, "every record in an anchored batch")  # a hang guard: a node
    # call that timed out on a loaded machine puts the sink in its backoff (seconds, doubling)
    agent.kill()

    batches = _batches(journal)
    records = _records(journal)
    assert len(records) == TOTAL
    info = registry.gateway(GW)
    assert info is not None and (info.last_batch, info.next_seq) == (len(batches), TOTAL + 1)
    logs = node.w3.eth.get_logs({"address": registry.address, "fromBlock": 0,
                                 "toBlock": "latest",
                                 "topics": [ANCHORED_TOPIC, gateway_key(GW)]})
    anchored_seqs = [int.from_bytes(bytes(log["topics"][2]), "big") for log in logs]
    assert anchored_seqs == list(range(1, len(batches) + 1))  # each once, none skipped
    for batch_seq, first, size, root, _ in batches:
        assert MerkleTree.from_leaves(records[first - 1:first - 1 + size]).root == root
        assert registry.root(GW, batch_seq) == root
    # one nonce per batch: no transaction was signed twice or wasted
    assert node.w3.eth.get_transaction_count(Web3.to_checksum_address(submitter.address)) == \
        len(batches)
    report = verify_log(records, key.public_key(),
                        [BatchRoot(first, size, root) for _, first, size, root, _ in batches],
                        gateway_id=GW)
    assert report.anchored_through == TOTAL
