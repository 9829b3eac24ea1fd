"""The agent: sources -> bounded queue -> ingest (sign + commit) -> journal -> consumers.

Shaped like Telegraf/Vector: sources only decode and emit; ingest is the single writer that
turns drafts into signed records in group commits (one fsync for everything queued); rules and
sinks are consumers that each read the journal from their own cursor. The only in-memory queue
is bounded, so a flooding source is slowed down instead of growing memory, and nothing is
acknowledged before it is committed: a source that must acknowledge (an MQTT QoS 1 message)
queues an AfterCommit behind its draft, and ingest runs it once that draft is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_agent.journal import Draft, Journal, Stored
from edge_agent.tail import JournalTail
from ledger_client.records import RecordError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AfterCommit:
    """Queued behind drafts; its callback runs once everything emitted before it is committed
    (or dropped as unsignable), in emission order. Callbacks must be quick and not raise."""

    callback: Callable[[], None]


Item = Draft | AfterCommit
Emit = Callable[[Item], Awaitable[None]]


class Source(Protocol):
    name: str

    async def run(self, emit: Emit) -> None: ...


class Consumer(Protocol):
    """Reads the journal from its own cursor. `position` is the last seq it has dealt with
    (in memory; what it stores as its cursor may lag, e.g. a sink that only stores progress
    past records it acted on). Consumers with `settles = False` are not waited for at stop."""

    name: str
    position: int

    async def run(self, tail: JournalTail) -> None: ...


class Agent:
    def __init__(self, journal: Journal, sources: Sequence[Source],
                 consumers: Sequence[Consumer], *, queue_size: int = 1024,
                 max_group: int = 512, settle_timeout_s: float = 10.0):
        self.journal = journal
        self.sources = list(sources)
        self.consumers = list(consumers)
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self.max_group = max_group
        self.settle_timeout_s = settle_timeout_s
        self.tail = JournalTail(journal.head()[0])
        self.ingested = 0
        self.rejected = 0  # drafts that could not be signed (see _commit_one_by_one)

    async def emit(self, item: Item) -> None:
        """What sources call: waits while the queue is full (that is the backpressure)."""
        await self.queue.put(item)

    async def _ingest(self) -> None:
        while True:
            group = [await self.queue.get()]
            while len(group) < self.max_group and not self.queue.empty():
                group.append(self.queue.get_nowait())
            await self._commit(group)

    async def _commit(self, group: list[Item]) -> None:
        drafts = [item for item in group if isinstance(item, Draft)]
        stored: list[Stored] = []
        if drafts:
            try:
                stored = self.journal.append(drafts)
            except RecordError:
                stored = self._commit_one_by_one(drafts)
        for item in group:
            if isinstance(item, AfterCommit):
                try:
                    item.callback()
                except Exception:
                    log.exception("an after-commit callback failed")
        if stored:
            self.ingested += len(stored)
            await self.tail.advanced(stored[-1].seq)

    def _commit_one_by_one(self, group: list[Draft]) -> list[Stored]:
        """A draft that cannot be signed (a decoder bug: say, a float) must not take the good
        ones of its group down with it: commit them singly, drop and count the bad one."""
        stored: list[Stored] = []
        for draft in group:
            try:
                stored += self.journal.append([draft])
            except RecordError as exc:
                self.rejected += 1
                log.error("dropped a %s draft from %s: %s", draft.kind, draft.src, exc)
        return stored

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then stop sources, commit what they emitted, let consumers
        catch up with the head, and return."""
        source_tasks = [asyncio.create_task(s.run(self.emit), name=s.name) for s in self.sources]
        ingest = asyncio.create_task(self._ingest(), name="ingest")
        consumer_tasks = [asyncio.create_task(c.run(self.tail), name=c.name)
                          for c in self.consumers]
        everything = [*source_tasks, ingest, *consumer_tasks]
        stopper = asyncio.create_task(stop.wait())
        try:
            running = {stopper, *everything}
            while not stopper.done():
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]
                    # a source that simply ended (a finite replay) leaves the others running
            await _cancel(source_tasks)
            await _cancel([ingest])
            leftover = []
            while not self.queue.empty():
                leftover.append(self.queue.get_nowait())
            if leftover:
                await self._commit(leftover)
            await self._settle(consumer_tasks)
        finally:
            stopper.cancel()
            await _cancel(everything)

    async def _settle(self, tasks: list[asyncio.Task[None]]) -> None:
        """Give consumers that keep up with the head (rules, alert sinks) time to reach it."""
        settling = [c for c in self.consumers if getattr(c, "settles", True)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_timeout_s
        while any(c.position < self.tail.head for c in settling):
            if loop.time() > deadline or all(t.done() for t in tasks):
                log.warning("shutdown: consumers still behind the head; they resume on restart")
                return
            await asyncio.sleep(0.02)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
