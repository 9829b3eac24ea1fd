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
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.head > seq), timeout)
            except TimeoutError:
                return False
        return True
