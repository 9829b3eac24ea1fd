"""Live updates: the store's ``changes`` feed, pushed to browsers as Server-Sent Events.

Every receiver, importer and console instance writes a ``changes`` row in the transaction that
changed something (a new alert, a vehicle that moved, a link going down, an officer's action),
so following that table is how a console sees every commit, whoever made it, on whatever
machine: nothing another instance needs lives in this process. One ``ChangeFeed`` per process
reads the table (every ``poll_s``, or at once when the in-process receiver calls ``wake`` after
a commit) and fans the news out to the open event streams; the browser only listens (its
EventSource reconnects by itself, and it reloads its snapshot when it does).

PostgreSQL hands out ``changes.id`` at insert time, not in commit order, so a row with a lower
id can become visible after a higher one. The feed therefore remembers the ids it delivered and
keeps looking behind the first gap for ``GAP_WAIT_S`` (after that the missing id belonged to a
transaction that rolled back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from customs.store import SqlStore

log = logging.getLogger(__name__)
GAP_WAIT_S = 5.0
QUEUE = 256  # events a slow browser may lag behind before its stream is closed
KEEPALIVE_S = 15.0

Describe = Callable[[list[tuple[int, int, str, str | None, str | None]]], dict[str, Any]]


class ChangeFeed:
    def __init__(self, store: SqlStore, describe: Describe, *, poll_s: float = 0.25):
        self.store = store
        self.describe = describe
        self.poll_s = poll_s
        self.position = 0  # every id <= this was delivered (or given up on)
        self._seen: set[int] = set()
        self._gap_since: float | None = None
        self._wake = asyncio.Event()
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self.events = 0

    def wake(self) -> None:
        """A commit happened in this process: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        self.position = await asyncio.to_thread(self.store.last_change)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                await self._step()
            except Exception as exc:  # the store down: keep the streams, try again
                log.warning("change feed: %s", exc)
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        rows = await asyncio.to_thread(self.store.changes_since, self.position, 2000)
        fresh = [r for r in rows if r[0] not in self._seen]
        if not rows:
            return
        self._seen.update(r[0] for r in fresh)
        expected = self.position + 1
        contiguous = self.position
        for row in rows:  # advance over the run of ids without a hole
            if row[0] != expected:
                break
            contiguous = expected
            expected += 1
        if contiguous == rows[-1][0] or len(rows) >= 2000:
            self._gap_since = None
            self.position = rows[-1][0] if len(rows) >= 2000 else contiguous
        else:
            now = time.monotonic()
            self._gap_since = self._gap_since or now
            if now - self._gap_since > GAP_WAIT_S:
                self.position, self._gap_since = rows[-1][0], None
            else:
                self.position = contiguous
        self._seen = {i for i in self._seen if i > self.position}
        if fresh and self._subscribers:
            payload = await asyncio.to_thread(self.describe, fresh)
            self._publish(max(r[0] for r in fresh), payload)

    def _publish(self, last_id: int, payload: dict[str, Any]) -> None:
        message = f"id: {last_id}\nevent: change\ndata: {json.dumps(payload)}\n\n"
        self.events += 1
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: end its stream, it reconnects and reloads
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def stream(self, disconnected: Callable[[], Any]) -> AsyncIterator[str]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE)
        self._subscribers.add(queue)
        try:
            yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'at': self.position})}\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every open stream (the service is stopping)."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
