"""A slow disk does not stop the agent reading its serial ports.

The real agent reads a real pseudo-terminal; the journal's commit is held (the journal's
``before_commit`` test hook waits on an event, as an fsync on a tired SD card would) and the
test writes more NMEA to the pty meanwhile. Those lines must be read, decoded and handed to
ingest while the commit is still held, and nothing may be acknowledged before it is durable.
The agent's loop runs in its own thread, so the test can watch it even if it were blocked
(which is exactly what happened when ingest committed on the event loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.agent import AfterCommit, Agent, Consumer, Emit, Item
from edge_agent.journal import Draft, Journal
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.serial_gps import SerialGpsSource
from firmware_sim.nmea import SimFix, epoch_bytes
from firmware_sim.pty import PtyPair
from ledger_client.records import verify_chain

pytestmark = pytest.mark.integration
T0 = 1_790_000_000_000
WAIT_S = 20.0  # bounds on events that take milliseconds; only reached when the test fails


def _epochs(first: int, n: int) -> bytes:
    return b"".join(epoch_bytes(SimFix(t_ms=T0 + i * 1000, lat=-34.9 + i * 1e-4, lon=-56.2,
                                       speed_mps=10.0, course_deg=90.0))
                    for i in range(first, first + n))


class Watching:
    """The serial source as the agent runs it, with two things added on the way to ingest:
    each draft handed over is counted (and `seen(n)` fires when n have been), and each is
    followed by an AfterCommit, as an MQTT source acknowledges its sensor; `acks` notes the
    journal head when each acknowledgement runs (and `acked(n)` fires at the n-th)."""

    def __init__(self, inner: SerialGpsSource, journal: Journal):
        self.inner = inner
        self.name = inner.name
        self.journal = journal
        self.connected = threading.Event()
        self.drafts = 0
        self.acks: list[tuple[int, int]] = []  # (draft number, journal head when acked)
        self._seen: list[tuple[int, threading.Event]] = []
        self._acked: list[tuple[int, threading.Event]] = []

    def seen(self, n: int) -> threading.Event:
        self._seen.append((n, event := threading.Event()))
        return event

    def acked(self, n: int) -> threading.Event:
        self._acked.append((n, event := threading.Event()))
        return event

    def _ack(self, number: int) -> Callable[[], None]:
        def ack() -> None:
            self.acks.append((number, self.journal.head()[0]))
            _fire(self._acked, number)
        return ack

    async def run(self, emit: Emit) -> None:
        async def handed(item: Item) -> None:
            await emit(item)
            if isinstance(item, Draft):
                self.drafts += 1
                await emit(AfterCommit(self._ack(self.drafts)))
                _fire(self._seen, self.drafts)

        task = asyncio.create_task(self.inner.run(handed))
        await self.inner.connected.wait()
        self.connected.set()
        await task


class SlowDisk:
    """The journal's before_commit hook: commit number `stall_at` (the first by default)
    hangs until `release` is set."""

    def __init__(self, stall_at: int = 1) -> None:
        self.stall_at = stall_at
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.commits = 0

    def __call__(self) -> None:
        self.commits += 1
        if self.commits == self.stall_at:
            self.stalled.set()
            self.release.wait(WAIT_S * 3)


def _slow_journal(tmp_path: Path, stall_at: int = 1) -> tuple[SlowDisk, Journal]:
    disk = SlowDisk(stall_at)
    return disk, Journal(tmp_path / "j.db", gateway_id="gw-slow",
                         key=Ed25519PrivateKey.generate(), before_commit=disk)


def _pipeline(journal: Journal, port: str,
              consumers: Sequence[Consumer] = ()) -> tuple[Watching, Agent]:
    """The serial GPS source on `port`, watched, feeding an agent that commits at once."""
    source = Watching(SerialGpsSource(port, sensor_id="gps0", filters=FixFilterParams(
        max_age_ms=None, max_future_ms=None)), journal)
    return source, Agent(journal, [source], list(consumers), commit_interval_s=0)


def _fire(waits: list[tuple[int, threading.Event]], count: int) -> None:
    for n, event in waits:
        if count >= n:
            event.set()


def test_lines_written_during_a_stalled_commit_are_read_before_it_ends(tmp_path) -> None:
    disk, journal = _slow_journal(tmp_path)
    with PtyPair() as pty:
        source, agent = _pipeline(journal, pty.path)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        runner = threading.Thread(target=lambda: loop.run_until_complete(agent.run(stop)),
                                  daemon=True)
        runner.start()
        try:
            assert source.connected.wait(WAIT_S), "the source never opened the pty"
            os.write(pty.master_fd, _epochs(0, 2))
            assert disk.stalled.wait(WAIT_S), "the first reading was never committed"
            before = source.drafts

            read = source.seen(before + 4)
            os.write(pty.master_fd, _epochs(2, 6))  # while the commit hangs
            assert read.wait(WAIT_S), (
                f"{source.drafts - before} of the readings written during a stalled commit "
                "were read: reading waited for the disk")
            assert not disk.release.is_set() and journal.head()[0] == 0  # still stalled
            assert source.acks == []  # nothing acknowledged before it is durable
            disk.release.set()
            assert source.acked(before + 4).wait(WAIT_S), "the readings were not committed"
        finally:
            disk.release.set()
            loop.call_soon_threadsafe(stop.set)
            runner.join(WAIT_S * 3)
            loop.close()

    stored = journal.read_after(0, 1000)
    assert [s.seq for s in stored] == list(range(1, source.drafts + 1))
    assert [s.t_ms for s in stored] == sorted(s.t_ms for s in stored)  # in the pty's order
    assert verify_chain((s.signed for s in stored), journal._key.public_key(),
                        gateway_id="gw-slow").count == source.drafts
    # every acknowledgement ran once its reading (and all before it) was durable, in order
    assert [n for n, _ in source.acks] == list(range(1, source.drafts + 1))
    assert all(head >= n for n, head in source.acks)
    assert disk.commits < source.drafts  # what queued up during the stall went in as one group


def test_a_stop_during_a_stalled_commit_writes_every_reading_once(tmp_path) -> None:
    """The stop cancels ingest while its commit is in the worker thread: that commit finishes
    and counts, and the stop's final commit writes only what came after it."""
    disk, journal = _slow_journal(tmp_path)
    with PtyPair() as pty:
        source, agent = _pipeline(journal, pty.path)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        stopping = threading.Event()

        async def run() -> None:
            runner = asyncio.create_task(agent.run(stop))
            await stop.wait()
            stopping.set()  # agent.run is now cancelling ingest, whose commit hangs
            await runner

        thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
        thread.start()
        try:
            assert source.connected.wait(WAIT_S)
            os.write(pty.master_fd, _epochs(0, 2))
            assert disk.stalled.wait(WAIT_S)
            read = source.seen(source.drafts + 3)
            os.write(pty.master_fd, _epochs(2, 5))
            assert read.wait(WAIT_S)
            loop.call_soon_threadsafe(stop.set)
            assert stopping.wait(WAIT_S)
        finally:
            disk.release.set()
            thread.join(WAIT_S * 3)
            loop.close()
        assert not thread.is_alive()

    stored = journal.read_after(0, 1000)
    assert [s.seq for s in stored] == list(range(1, source.drafts + 1))
    assert len({s.t_ms for s in stored}) == len(stored)  # no reading written twice
    assert [n for n, _ in source.acks] == list(range(1, source.drafts + 1))
    assert all(head >= n for n, head in source.acks)


def test_a_sink_storing_its_cursor_on_a_stalled_disk_does_not_stop_the_reading(
        tmp_path) -> None:
    """The console sink shows an alert and stores its cursor; that commit hangs. Readings
    written to the pty meanwhile are read and handed to ingest: a sink's commit runs in a
    worker thread, not on the loop (where it stopped every source until the disk answered)."""
    disk, journal = _slow_journal(tmp_path, stall_at=2)  # 1: the alert; 2: the console cursor
    journal.append([Draft(T0, "alert", "rules", {
        "alert_id": "00000000-0000-4000-8000-000000000001", "type": "routeDeviation",
        "severity": "warning"})])
    shown: list[str] = []
    with PtyPair() as pty:
        source, agent = _pipeline(journal, pty.path, [ConsoleSink(journal, write=shown.append)])
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        runner = threading.Thread(target=lambda: loop.run_until_complete(agent.run(stop)),
                                  daemon=True)
        runner.start()
        try:
            assert disk.stalled.wait(WAIT_S), "the console never stored its cursor"
            assert source.connected.wait(WAIT_S), "the source never opened the pty"
            read = source.seen(4)
            os.write(pty.master_fd, _epochs(1, 4))  # while the console's commit hangs
            assert read.wait(WAIT_S), (
                f"{source.drafts} of 4 readings written during the sink's stalled commit were "
                "read: the loop waited for the disk")
            assert journal.cursor("console") == 0 and journal.head()[0] == 1  # still stalled
            disk.release.set()
            assert source.acked(4).wait(WAIT_S), "the readings were not committed"
        finally:
            disk.release.set()
            loop.call_soon_threadsafe(stop.set)
            runner.join(WAIT_S * 3)
            loop.close()

    assert len(shown) == 1 and "routeDeviation" in shown[0]
    assert journal.cursor("console") == 1  # the stalled commit landed once the disk answered
    assert [s.seq for s in journal.read_after(0, 1000)] == list(range(1, source.drafts + 2))
