"""The serial GPS source against real pseudo-terminals: it never falls over and never stalls.

Each test runs the real Agent with a real Journal (SQLite in tmp_path) and a SerialGpsSource
reading a pty written by firmware_sim's PtyPort (the simulator's own unplug/replug fault) or
by a flooding thread. Waits are on journal commits (agent.tail), never on fixed sleeps; the only
polls are for states nothing signals (the source having retried a vanished path).
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.sources.framing import LineFramer
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.serial_gps import SerialGpsSource
from firmware_sim import faults
from firmware_sim.gnss import Conditions, FixModel
from firmware_sim.motion import Motion
from firmware_sim.nmea import epoch_bytes
from firmware_sim.pty import PtyPair
from firmware_sim.ptyport import PtyPort
from firmware_sim.route import Route

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
REPLAY = FixFilterParams(max_age_ms=None, max_future_ms=None)  # simulated time, not now
ROUTE = Route([(-56.2, -34.9), (-56.2, -34.8)], 15.0)
BY_ID = "serial/by-id/usb-u-blox_AG_-_www.u-blox.com_u-blox_GNSS_receiver-if00"


def never() -> bool:
    return False


class Receiver:
    """A simulated GNSS receiver's epochs: ``epoch(k)`` is due at T0 + k * period_ms."""

    def __init__(self, period_ms: int = 200, seed: int = 1, t0_ms: int = T0):
        self.model = FixModel(Motion(ROUTE), None, Conditions(), seed=seed)
        self.period_ms = period_ms
        self.t0_ms = t0_ms

    def t_ms(self, k: int) -> int:
        return self.t0_ms + k * self.period_ms

    def epoch(self, k: int) -> bytes:
        return epoch_bytes(self.model.fix(k * self.period_ms / 1000, self.t_ms(k)))


class Watch:
    """Follows the journal as the agent commits, and waits on its tail for a condition."""

    def __init__(self, agent: Agent, journal: Journal, runner: asyncio.Task[None]):
        self.agent, self.journal, self.runner = agent, journal, runner
        self.records: list[dict[str, Any]] = []

    def refresh(self) -> list[dict[str, Any]]:
        last = self.records[-1]["seq"] if self.records else 0
        while batch := self.journal.read_after(last, 5000):
            self.records += [s.record() for s in batch]
            last = batch[-1].seq
        return self.records

    async def until(self, what: str, pred: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 15.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            head = self.agent.tail.head
            if pred(self.refresh()):
                return self.records
            if self.runner.done():
                self.runner.result()
                raise AssertionError(f"agent stopped while waiting for {what}")
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; "
                                     f"{len(self.records)} records, last {self.records[-3:]}")
            await self.agent.tail.wait_beyond(head, min(left, 0.5))

    def gps(self, src: str = "gps0") -> list[dict[str, Any]]:
        return [r for r in self.refresh() if r["kind"] == "gps" and r["src"] == src]

    def statuses(self, src: str = "gps0") -> list[dict[str, Any]]:
        return [r for r in self.refresh() if r["kind"] == "status" and r["src"] == src]


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.db", gateway_id="gw-test",
                   key=Ed25519PrivateKey.generate())


async def _start(journal: Journal, sources: list[SerialGpsSource],
                 queue_size: int = 1024) -> tuple[Agent, asyncio.Event, Watch]:
    agent = Agent(journal, sources, [], queue_size=queue_size)
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop))
    watch = Watch(agent, journal, runner)
    async with asyncio.timeout(10):
        for source in sources:
            await source.connected.wait()
    return agent, stop, watch


async def _stop(stop: asyncio.Event, watch: Watch) -> None:
    stop.set()
    await asyncio.wait_for(watch.runner, 15)


async def _poll(what: str, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """For states that nothing signals (a failed reopen is only a counter)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)
    assert cond(), what


def _events(records: list[dict[str, Any]]) -> list[str]:
    return [r["body"]["event"] for r in records]


def _nonblocking_pty() -> PtyPair:
    pty = PtyPair()
    os.set_blocking(pty.master_fd, False)
    return pty


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking pty master without blocking the event loop
    (the agent reads the other end from the same loop)."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)


# --- (a) unplug and replug behind a /dev/serial/by-id style link ----------------------------


def test_unplug_replug_behind_a_by_id_link_reconnects_without_restart(tmp_path: Path) -> None:
    link = tmp_path / BY_ID
    link.parent.mkdir(parents=True)
    journal = _journal(tmp_path)
    rx = Receiver()
    unplug_at, replug_at, epochs = 25, 40, 70
    written: list[int] = []  # epoch times delivered whole to a plugged-in port
    lost: list[int] = []

    async def scenario() -> tuple[SerialGpsSource, PtyPort, dict[str, Any]]:
        port = PtyPort("gps0", link, fast=True)
        source = SerialGpsSource(str(link), sensor_id="gps0", filters=REPLAY,
                                 backoff_s=(0.05, 0.2), silence_s=None)
        _agent, stop, watch = await _start(journal, [source])
        seen: dict[str, Any] = {"first_pts": port.paths[-1]}
        try:
            for k in range(epochs):
                if k == unplug_at:
                    assert await port.drain(10)  # the agent has read every byte so far
                    port.unplug()  # the simulator's fault: master closed, link removed
                    assert not os.path.lexists(link)
                    await watch.until("sensorDisconnected", lambda _r: any(
                        s["body"]["event"] == "sensorDisconnected" for s in watch.statuses()))
                    # the path is gone: the source keeps trying it, with backoff
                    await _poll("reopen attempts", lambda: source.counts["open_failed"] >= 3)
                    assert not source.connected.is_set()
                    seen["runner_alive"] = not watch.runner.done()
                if k == replug_at:
                    port.replug()  # a new /dev/pts/N behind the same link
                    seen["second_pts"] = port.paths[-1]
                    seen["link_target"] = os.readlink(link)
                ok = await port.write(rx.epoch(k), never)
                (written if ok else lost).append(rx.t_ms(k))
                if ok and k % 10 == 9:
                    # PtyPort writes with a blocking os.write (its master is not put in
                    # non-blocking mode): never let 20 KiB pile up in the pty, or the write
                    # would block this loop, which is also the agent's
                    assert await port.drain(10)
            assert await port.drain(10)
            await watch.until("every delivered epoch", lambda _r: len(watch.gps()) >= len(written))
            seen["reconnected"] = source.connected.is_set()
        finally:
            await _stop(stop, watch)
            port.close()
        return source, port, seen

    source, port, seen = asyncio.run(scenario())

    assert seen["runner_alive"] and seen["reconnected"]
    assert seen["second_pts"] != seen["first_pts"]  # really another device node
    assert seen["link_target"] == seen["second_pts"]
    assert port.paths == [seen["first_pts"], seen["second_pts"]]
    # the simulator lost exactly the epochs due while unplugged
    assert lost == [rx.t_ms(k) for k in range(unplug_at, replug_at)]
    assert written == [rx.t_ms(k) for k in (*range(unplug_at), *range(replug_at, epochs))]

    records = [s.record() for s in journal.read_after(0, 100_000)]
    gps = [r for r in records if r["kind"] == "gps"]
    # every epoch written while plugged in, exactly once and in order; none from the gap
    assert [r["t_ms"] for r in gps] == written
    statuses = [r for r in records if r["kind"] == "status"]
    assert [(r["body"]["event"], r["body"]["port"]) for r in statuses] == [
        ("sensorDisconnected", str(link)), ("sensorConnected", str(link))]
    disconnected, connected = (r["seq"] for r in statuses)
    before = [r["seq"] for r in gps if r["t_ms"] < rx.t_ms(unplug_at)]
    after = [r["seq"] for r in gps if r["t_ms"] >= rx.t_ms(replug_at)]
    assert max(before) < disconnected < connected < min(after)
    stats = source.stats()
    assert stats.events["disconnects"] == 1 and stats.events["open_failed"] >= 3
    assert stats.dropped.get("nmea_internal_error", 0) == 0


# --- (b) a 10 MB line, garbage, invalid UTF-8, wrong baud -----------------------------------


class MeasuringFramer(LineFramer):
    """The source's framer, remembering the most it ever held between reads."""

    __slots__ = ("peak",)

    def __init__(self, max_line: int, counts: Any):
        super().__init__(max_line, counts)
        self.peak = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = super().feed(data)
        self.peak = max(self.peak, len(self._buf))
        return lines


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def test_huge_line_garbage_and_wrong_baud_keep_the_source_up_and_bounded(
        tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    rx = Receiver()
    rng = random.Random(42)
    epochs, huge_before = 30, 15
    chunk = rng.randbytes(65_536).replace(b"\n", b"_")  # 64 KiB of noise with no newline
    huge_mb = 10

    async def scenario() -> tuple[SerialGpsSource, MeasuringFramer, int, bool]:
        pty = _nonblocking_pty()
        fd = pty.master_fd
        source = SerialGpsSource(pty.path, sensor_id="gps0", filters=REPLAY, max_line=512,
                                 silence_s=None)
        framer = MeasuringFramer(512, source.counts)
        source.framer = framer
        _agent, stop, watch = await _start(journal, [source])
        try:
            _reset_peak_rss()
            base_kb = _peak_rss_kb()
            for k in range(epochs):
                noise = [
                    faults.garbage(rng, 200),
                    faults.wrong_baud(rng, 300),
                    b"$GNGGA,\xc3\x28\xa0\xa1,4807.038,N*5A\r\n",  # invalid UTF-8
                    "$GNRMC,\u00e9t\u00e9*00\r\n".encode(),  # valid UTF-8, not ASCII
                    b"$GNRMC,1235",  # cut off, glued to the next epoch's GGA
                ]
                for burst in noise:
                    await _write_all(fd, burst)
                if k == huge_before:
                    # 10 MB with no newline at all, straight into the next epoch: its GGA is
                    # glued to the end of the monster line, and kept (the framer keeps an
                    # overflowing line's tail from its last `$`)
                    for _ in range(huge_mb * 16):
                        await _write_all(fd, chunk)
                await _write_all(fd, rx.epoch(k))
            await watch.until("all epochs", lambda _r: len(watch.gps()) >= epochs)
            grew_kb = _peak_rss_kb() - base_kb
            still_up = source.connected.is_set()
        finally:
            await _stop(stop, watch)
            pty.close()
        return source, framer, grew_kb, still_up

    source, framer, grew_kb, still_up = asyncio.run(scenario())

    assert still_up
    records = [s.record() for s in journal.read_after(0, 100_000)]
    assert [r["t_ms"] for r in records if r["kind"] == "gps"] == [
        rx.t_ms(k) for k in range(epochs)]
    glued = next(r for r in records if r["t_ms"] == rx.t_ms(huge_before))
    assert "alt_cm" in glued["body"]  # its GGA survived the monster line
    assert [r for r in records if r["kind"] == "status"] == []  # never disconnected
    stats = source.stats()
    assert stats.events["bytes"] > huge_mb * 1_048_576  # it really read the whole monster line
    assert stats.dropped["line_too_long"] >= 1
    assert stats.dropped["nmea_not_ascii"] >= epochs  # the invalid and non-ASCII sentences
    assert stats.dropped.get("nmea_internal_error", 0) == 0
    # memory: the framer never held more than a line's worth, and the process did not grow
    # by anything like the 10 MB it read (holding it would cost 10-20 MB)
    assert framer.peak <= 512
    assert grew_kb < 4_096, f"peak RSS grew by {grew_kb} kB"


# --- (c) a flooding source does not block another -------------------------------------------


class Flood(threading.Thread):
    """Writes garbage and valid-but-endless epochs to a pty master as fast as it is read."""

    def __init__(self, fd: int, rx: Receiver):
        super().__init__(daemon=True)
        self.fd, self.rx = fd, rx
        self.halt = threading.Event()
        self.bytes = 0
        self.epochs = 0
        self.held_back = 0  # times the pty was full: the reader was not keeping up

    def run(self) -> None:
        rng = random.Random(5)
        os.set_blocking(self.fd, False)
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        k = 0
        pending = b""
        while not self.halt.is_set():
            if not pending:
                pending = faults.garbage(rng, 300) + self.rx.epoch(k)
                k += 1
            try:
                n = os.write(self.fd, pending)
            except BlockingIOError:
                self.held_back += 1
                poller.poll(50)
                continue
            except OSError:
                return
            self.bytes += n
            pending = pending[n:]
            if not pending:
                self.epochs = k


def test_a_flooding_source_does_not_block_another(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    normal_rx = Receiver(period_ms=100, seed=2)
    flood_rx = Receiver(period_ms=100, seed=3)
    n_normal = 150

    async def scenario() -> tuple[Flood, int, int]:
        with PtyPair() as flood_pty, _nonblocking_pty() as normal:
            flooded = SerialGpsSource(flood_pty.path, sensor_id="gps-flood", filters=REPLAY,
                                      silence_s=None)
            steady = SerialGpsSource(normal.path, sensor_id="gps-normal", filters=REPLAY,
                                     silence_s=None)
            # a small queue, so the flood fills it and backpressure is what keeps order
            agent, stop, watch = await _start(journal, [flooded, steady], queue_size=16)
            flood = Flood(flood_pty.master_fd, flood_rx)
            flood.start()
            try:
                await watch.until("the flood to be under way",
                                  lambda _r: len(watch.gps("gps-flood")) >= 50)
                for k in range(n_normal):
                    await _write_all(normal.master_fd, normal_rx.epoch(k))
                await watch.until("every normal fix",
                                  lambda _r: len(watch.gps("gps-normal")) >= n_normal, 20)
                flood_fixes = len(watch.gps("gps-flood"))
                queue_peak = agent.queue.maxsize
            finally:
                flood.halt.set()
                await _stop(stop, watch)
                await asyncio.to_thread(flood.join, 5)
        return flood, flood_fixes, queue_peak

    flood, flood_fixes, queue_size = asyncio.run(scenario())

    records = [s.record() for s in journal.read_after(0, 1_000_000)]
    normal_gps = [r["t_ms"] for r in records if r["kind"] == "gps" and r["src"] == "gps-normal"]
    assert normal_gps == [normal_rx.t_ms(k) for k in range(n_normal)]
    assert flood_fixes >= 50  # the flooding source was served too, not starved
    # and held back, not thinned out: what it got in is exactly its first epochs, in order
    flood_gps = [r["t_ms"] for r in records if r["kind"] == "gps" and r["src"] == "gps-flood"]
    assert flood_gps == [flood_rx.t_ms(k) for k in range(len(flood_gps))]
    assert queue_size == 16
    assert flood.held_back > 0  # it really was a flood: the reader could not keep up
    assert [r for r in records if r["kind"] == "status"] == []


# --- (d) silence ----------------------------------------------------------------------------


def test_a_silent_receiver_gives_one_silent_and_one_back(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    rx = Receiver(period_ms=50)
    silence_s = 0.6

    async def scenario() -> dict[str, int]:
        pty = _nonblocking_pty()
        source = SerialGpsSource(pty.path, sensor_id="gps0", filters=REPLAY,
                                 silence_s=silence_s)
        agent, stop, watch = await _start(journal, [source])
        talking = asyncio.Event()
        talking.set()
        marks: dict[str, int] = {}

        async def receiver() -> None:
            k = 0
            while True:
                await talking.wait()
                await _write_all(pty.master_fd, rx.epoch(k))
                k += 1
                await asyncio.sleep(0.05)  # 20 Hz: the receiver's own rate, not a wait

        writer = asyncio.create_task(receiver())
        try:
            await watch.until("first fixes", lambda _r: len(watch.gps()) >= 10)
            talking.clear()
            marks["quiet_from"] = len(watch.gps())
            await watch.until("sensorSilent", lambda _r: len(watch.statuses()) >= 1)
            # the silence goes on for three more silence periods: nothing more is recorded
            head = agent.tail.head
            assert not await agent.tail.wait_beyond(head, timeout=3 * silence_s)
            marks["silent_records"] = len(watch.refresh())
            talking.set()
            await watch.until("sensorBack and fixes after it", lambda _r: (
                len(watch.statuses()) >= 2 and
                len(watch.gps()) >= marks["quiet_from"] + 10 and
                watch.gps()[-10]["seq"] > watch.statuses()[1]["seq"]))
        finally:
            await _stop(stop, watch)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            pty.close()
        return marks

    marks = asyncio.run(scenario())

    records = [s.record() for s in journal.read_after(0, 100_000)]
    statuses = [r for r in records if r["kind"] == "status"]
    assert _events(statuses) == ["sensorSilent", "sensorBack"]
    silent, back = statuses
    assert silent["t_ms"] - silent["body"]["since_ms"] == round(silence_s * 1000)
    assert back["body"]["since_ms"] == silent["body"]["since_ms"]
    # silent from the last byte until the receiver talked again: at least the silence
    # period before sensorSilent plus the three we watched after it
    assert back["body"]["silent_ms"] >= 4 * silence_s * 1000
    gps_seqs = [r["seq"] for r in records if r["kind"] == "gps"]
    assert max(s for s in gps_seqs if s < silent["seq"]) < silent["seq"] < back["seq"]
    assert silent["seq"] == marks["silent_records"]  # it was the last record of the silence
    assert len(gps_seqs) == len(set(gps_seqs))


def test_a_receiver_at_the_wrong_baud_rate_is_reported_garbled_then_readable(
        tmp_path: Path) -> None:
    """Bytes keep coming but no line is usable: not silent, yet the rules and customs must
    hear that this GPS is blind. One sensorGarbled, then one sensorReadable when it recovers."""
    journal = _journal(tmp_path)
    rx = Receiver(period_ms=50)
    silence_s = 0.4
    rng = random.Random(7)

    async def scenario() -> None:
        pty = _nonblocking_pty()
        source = SerialGpsSource(pty.path, sensor_id="gps0", filters=REPLAY,
                                 silence_s=silence_s)
        _agent, stop, watch = await _start(journal, [source])
        baud_fixed = asyncio.Event()

        async def receiver() -> None:
            k = 0
            while True:
                # the receiver's own rate (20 Hz), not a wait; garbage until told otherwise
                chunk = rx.epoch(k) if baud_fixed.is_set() else faults.wrong_baud(rng, 300)
                await _write_all(pty.master_fd, chunk)
                k += 1
                await asyncio.sleep(0.05)

        writer = asyncio.create_task(receiver())
        try:
            await watch.until("sensorGarbled", lambda _r: len(watch.statuses()) >= 1)
            assert watch.gps() == []
            baud_fixed.set()  # the installer fixed the baud rate
            await watch.until("sensorReadable and fixes", lambda _r: (
                len(watch.statuses()) >= 2 and len(watch.gps()) >= 5))
        finally:
            await _stop(stop, watch)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            pty.close()
        assert source.stats().events["garbled"] == 1

    asyncio.run(scenario())
    records = [s.record() for s in journal.read_after(0, 100_000)]
    statuses = [r for r in records if r["kind"] == "status"]
    assert _events(statuses) == ["sensorGarbled", "sensorReadable"]
    garbled, readable = statuses
    assert readable["body"]["since_ms"] == garbled["body"]["since_ms"]
    first_fix = min(r["seq"] for r in records if r["kind"] == "gps")
    assert garbled["seq"] < readable["seq"] < first_fix
