"""The agent: sources -> bounded queue -> ingest (sign + commit) -> journal -> consumers.

Shaped like Telegraf/Vector: sources only decode and emit; ingest is the single writer that
turns drafts into signed records in group commits; rules and sinks are consumers that each read
the journal from their own cursor. The only in-memory queue is bounded, so a flooding source is
slowed down instead of growing memory, and nothing is acknowledged before it is committed: a
source that must acknowledge (an MQTT QoS 1 message) queues an AfterCommit behind its draft,
and ingest runs it once that draft is durable.

Group commit: a commit costs an fsync and four or five rewritten pages whatever it holds, and
it wakes every consumer. So ingest lets a group gather for up to ``commit_interval_s`` (what
sits in the queue is committed together, one transaction, one fsync) and commits at once when
an alert is queued (alerts must not wait), when ``max_group`` items are waiting (a backlog), or
at stop. At a port's 200 readings a second that is one commit a second instead of two hundred.

A journal that cannot be written (disk full, I/O error) does not stop the agent: ingest keeps
the group it was writing, retries with backoff and logs the cause each time; the queue fills,
sources block, MQTT sensors are not acknowledged (their broker keeps the messages), serial
devices are not read. Everything else keeps running (metrics, delivery of what is journaled).
When a write succeeds again, a signed ``diskFull`` status record tells how long it lasted.

Commits run in a worker thread: a commit waits for an fsync (tens of milliseconds on an SD
card, seconds on a tired one), and the event loop that waits meanwhile is the one reading the
serial ports and the MQTT sensors. So while a group is being written the sources keep reading
and the next group gathers in the queue; ingest itself writes one group at a time, in order,
and runs a group's AfterCommits only once that group is durable. A stop arriving while a
commit is in the thread lets that commit finish and be accounted for (it must not be written
twice by the stop's final commit) before ingest ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_agent.journal import Draft, Journal, JournalUnwritable, Stored
from edge_agent.tail import JournalTail
from edge_agent.ticks import aligned
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
                 max_group: int = 512, commit_interval_s: float = 1.0,
                 settle_timeout_s: float = 10.0, retry_s: tuple[float, float] = (0.5, 10.0)):
        if commit_interval_s < 0 or max_group < 1:
            raise ValueError("commit_interval_s must be >= 0 and max_group >= 1")
        self.journal = journal
        self.sources = list(sources)
        self.consumers = list(consumers)
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self.max_group = min(max_group, queue_size)
        self.commit_interval_s = commit_interval_s
        self.settle_timeout_s = settle_timeout_s
        self.retry_s = retry_s
        self.tail = JournalTail(journal.head()[0])
        self.ingested = 0
        self.commits = 0
        self.rejected = 0  # drafts that could not be signed (see _commit_one_by_one)
        self.unwritable: str | None = None  # why the journal cannot be written, while so
        self.unwritable_since_ms: int | None = None
        self.unwritable_episodes = 0
        self._flush = asyncio.Event()
        self._drafts_queued = 0  # drafts (and alerts among them) in the queue: when to flush
        self._alerts_queued = 0
        self._pending: list[Item] = []
        self._stop_deferred = False  # a cancel that arrived during a commit in the thread

    def problems(self) -> list[str]:
        """Conditions the gateway's status reports to customs (``diskFull``)."""
        return ["diskFull"] if self.unwritable is not None else []

    async def emit(self, item: Item) -> None:
        """What sources call: waits while the queue is full (that is the backpressure)."""
        if self.queue.full():
            await self.queue.put(item)
        else:  # what put() does then, without a coroutine per reading
            self.queue.put_nowait(item)
        if type(item) is Draft:
            self._drafts_queued += 1
            if item.kind == "alert":
                self._alerts_queued += 1
                self._flush.set()
            elif self._drafts_queued >= self.max_group:
                self._flush.set()

    async def _ingest(self) -> None:
        """Gather a group, commit it. The group being gathered or written is `_pending` (not
        in the queue any more): what a stop must still commit."""
        while True:
            first = await self.queue.get()
            self._pending = [first]
            if type(first) is Draft:
                self._drafts_queued -= 1
                if first.kind == "alert":
                    self._alerts_queued -= 1
                    self._flush.set()
            if self.commit_interval_s and not self._flush.is_set():  # gather a group
                loop = asyncio.get_running_loop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(aligned(self.commit_interval_s, loop.time())):
                        await self._flush.wait()
            self._flush.clear()
            group = self._pending
            drafts = 0
            while drafts < self.max_group and not self.queue.empty():
                item = self.queue.get_nowait()
                group.append(item)
                if type(item) is Draft:
                    drafts += 1
                    self._alerts_queued -= item.kind == "alert"
            self._drafts_queued -= drafts
            if self._alerts_queued or self._drafts_queued >= self.max_group:
                self._flush.set()  # an alert or a full group left behind: no waiting
            await self._commit(group)

    async def _commit(self, group: list[Item]) -> None:
        drafts = [item for item in group if isinstance(item, Draft)]
        stored: list[Stored] = []
        if drafts:
            try:
                stored = await self._write(drafts)
            except RecordError:
                stored = await self._commit_one_by_one(drafts)
        self._pending = []
        for item in group:
            if isinstance(item, AfterCommit):
                try:
                    item.callback()
                except Exception:
                    log.exception("an after-commit callback failed")
        if stored:
            self.ingested += len(stored)
            await self.tail.advanced(stored[-1].seq)
        if self._stop_deferred:  # the group is accounted for: now the stop may proceed
            self._stop_deferred = False
            raise asyncio.CancelledError

    async def _write(self, drafts: list[Draft]) -> list[Stored]:
        """Append, waiting out a journal that cannot be written; RecordError passes."""
        delay = self.retry_s[0]
        while True:
            try:
                stored = await self._append(drafts)
                break
            except JournalUnwritable as exc:
                self._note_unwritable(exc, delay)
                if self._stop_deferred:  # nothing was written: the group stays pending
                    self._stop_deferred = False
                    raise asyncio.CancelledError from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_s[1])
        self.commits += 1
        if self.unwritable is not None:
            stored += await self._note_writable()
        return stored

    async def _append(self, drafts: list[Draft]) -> list[Stored]:
        """journal.append in a worker thread, the loop free meanwhile. A cancel (a stop)
        arriving while the thread writes waits for it: the write's outcome must be known,
        and is dealt with as usual; the stop is taken up once the group is accounted for."""
        write = asyncio.ensure_future(asyncio.to_thread(self.journal.append, drafts))
        while True:
            try:
                return await asyncio.shield(write)
            except asyncio.CancelledError:
                self._stop_deferred = True

    def _note_unwritable(self, exc: JournalUnwritable, delay: float) -> None:
        if self.unwritable is None:
            self.unwritable_since_ms = time.time_ns() // 1_000_000
            self.unwritable_episodes += 1
        self.unwritable = exc.cause
        log.error("%s; ingest paused: sensors are not acknowledged (an MQTT broker keeps "
                  "their messages) and %d items wait; retrying in %.1fs", exc,
                  self.queue.qsize(), delay)

    async def _note_writable(self) -> list[Stored]:
        """The journal took a write again: say so in the chain, with how long it lasted."""
        now = time.time_ns() // 1_000_000
        since = self.unwritable_since_ms or now
        event = Draft(now, "status", "agent", {"event": "diskFull", "since_ms": since,
                                               "until_ms": now, "error": self.unwritable})
        log.warning("journal writable again after %.1fs (%s); ingest resumed",
                    (now - since) / 1000, self.unwritable)
        self.unwritable = self.unwritable_since_ms = None
        try:
            return await self._append([event])
        except JournalUnwritable:
            return []  # the data went in; the note is lost, the log has it

    async def _commit_one_by_one(self, group: list[Draft]) -> list[Stored]:
        """A draft that cannot be signed (a decoder bug: say, a float) must not take the good
        ones of its group down with it: commit them singly, drop and count the bad one."""
        stored: list[Stored] = []
        for i, draft in enumerate(group):
            try:
                stored += await self._write([draft])
            except RecordError as exc:
                self.rejected += 1
                log.error("dropped a %s draft from %s: %s", draft.kind, draft.src, exc)
            self._pending = list(group[i + 1:])  # a stop now must not write these twice
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
            leftover, self._pending = self._pending, []
            while not self.queue.empty():
                leftover.append(self.queue.get_nowait())
            if leftover and self.unwritable is None:
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
