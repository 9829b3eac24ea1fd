"""The journal head as an awaitable: how consumers learn there is something new to read.

Consumers (rules, sinks, the batcher) read the journal from their own cursors; this only tells
them when to look, so a slow consumer never holds back ingest or another consumer.
"""

from __future__ import annotations

import asyncio


class JournalTail:
    def __init__(self, head: int = 0):
        self.head = head
        self._changed = asyncio.Condition()

    async def advanced(self, seq: int) -> None:
        """Record that the journal now reaches `seq` and wake everyone waiting."""
        async with self._changed:
            if seq > self.head:
                self.head = seq
                self._changed.notify_all()

    async def wait_beyond(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until the head passes `seq`; False if `timeout` ran out first."""
        if self.head > seq:
            return True
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for runs the wait in a
        # task of its own, and a cancellation arriving as it starts (SIGTERM right after
        # start-up) could leave the consumer "cancelling" forever and the agent not exiting.
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self.head > seq)
            except TimeoutError:
                return False
        return True
