"""Run the real agent (a counting GPS source + the anchoring sink) until killed.

    python tests/helpers/anchor_agent.py JOURNAL GATEWAY_KEY EVM_KEY RPC_URL CONTRACT TOTAL

The source emits readings until the journal holds TOTAL records, then ends (the agent keeps
anchoring). The SIGKILL test starts this, kills it between broadcast and receipt, changes the
ledger behind its back, and starts it again: only the journal carries state across runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from edge_agent.agent import Agent
from edge_agent.journal import Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client import chain
from ledger_client.evmkey import load_account
from ledger_client.keys import load_key

GATEWAY_ID = "gw-crash"


class CountingSource:
    name = "gps0"

    def __init__(self, journal: Journal, total: int) -> None:
        self.journal, self.total = journal, total

    async def run(self, emit: Callable[[Draft], Awaitable[None]]) -> None:
        for seq in range(self.journal.head()[0] + 1, self.total + 1):
            await emit(Draft(1_790_000_000_000 + seq * 100, "gps", "gps0",
                             {"lat_e7": -349_000_000 + seq, "lon_e7": -562_000_000 - seq}))
            await asyncio.sleep(0.002)


async def main() -> None:
    path, key_path, evm_key, rpc, contract, total = sys.argv[1:7]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    journal = Journal(path, gateway_id=GATEWAY_ID, key=load_key(key_path))
    registry = chain.AnchorRegistry(chain.connect(rpc), contract)
    sink = AnchorSink(journal, registry, load_account(evm_key),
                      BatchPolicy(max_leaves=5, max_age_s=0.2, poll_s=0.02,
                                  stuck_after_s=3600, backoff_s=(0.02, 0.2)))
    agent = Agent(journal, [CountingSource(journal, int(total))], [sink])
    print("ready", flush=True)
    await agent.run(asyncio.Event())  # runs until the process is killed


if __name__ == "__main__":
    asyncio.run(main())
