"""The agent over a real pseudo-terminal: simulated GPS -> serial source -> journal -> alert."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.rules import RuleParams, RulesEngine
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.serial_gps import NmeaHandler, SerialGpsSource
from firmware_sim.gps import GpsReceiver
from firmware_sim.nmea import SimFix, epoch_bytes
from firmware_sim.pty import PtyPair
from firmware_sim.route import Route
from geofences import DeviationParams, load_corridor, sign_envelope
from ledger_client.keys import public_hex
from ledger_client.records import verify_chain
from tests.helpers.nmea_logs import load, with_binary
from tests.helpers.rules_rig import plan_doc

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
CORRIDOR = ROOT / "sealtrail" / "demo_data" / "corridor.geojson"
TRUCK = ROOT / "firmware_sim" / "scenarios" / "demo_truck_route.geojson"
T0 = 1_790_000_000_000
REPLAY = FixFilterParams(max_age_ms=None, max_future_ms=None)  # simulated time, not now


def _journal(tmp_path: Path) -> tuple[Journal, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return Journal(tmp_path / "j.db", gateway_id="gw-test", key=key), key


async def _run_until(agent: Agent, done: asyncio.Event, timeout: float = 60.0) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop))
    try:
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait({waiter, runner}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        if runner in finished:
            runner.result()
        assert waiter in finished, "timed out waiting for the agent"
    finally:
        stop.set()
        await runner


def test_simulated_truck_leaving_its_corridor_raises_one_signed_alert(tmp_path) -> None:
    journal, key = _journal(tmp_path)
    corridor = load_corridor(CORRIDOR)
    route = Route.from_geojson_file(TRUCK, 20.0)
    lines: list[str] = []
    returned = asyncio.Event()
    customs = Ed25519PrivateKey.generate()  # the customs key that signs the transit plan

    def show(line: str) -> None:
        lines.append(line)
        if "routeReturn" in line:
            returned.set()

    with PtyPair() as pty:
        source = SerialGpsSource(pty.path, sensor_id="gps0", filters=REPLAY)
        rules = RulesEngine(journal, trusted_keys=[bytes.fromhex(public_hex(customs))],
                            params=RuleParams(deviation=DeviationParams(
                                min_duration_ms=5_000, return_min_duration_ms=2_000)))
        plan = json.dumps(plan_doc(valid_from_ms=T0 - 60_000)).encode()
        rules.set_plan(sign_envelope("plan", plan, customs), t_ms=T0 - 1000)
        agent = Agent(journal, [source], [rules, ConsoleSink(journal, show)])
        receiver = GpsReceiver(route, pty.master_fd, 10.0, realtime=False, t0_ms=T0)
        truck = threading.Thread(target=receiver.run, daemon=True)
        truck.start()
        asyncio.run(_run_until(agent, returned))
        receiver.stop.set()
        truck.join()

    alerts = [s.record() for s in journal.alerts_after(0)
              if s.record()["body"]["type"].startswith("route")]  # not the offices' geofences
    assert [a["body"]["type"] for a in alerts] == ["routeDeviation", "routeReturn"]
    deviation = alerts[0]["body"]
    assert deviation["severity"] == "critical" and deviation["plan_id"] == "plan-0001"
    assert deviation["details"]["max_distance_m"] > corridor.width_m
    # Evidence names real GPS readings, and each of them is outside the corridor.
    for seq in deviation["evidence"]:
        reading = journal.get(seq)
        assert reading is not None and reading.kind == "gps"
        body = reading.record()["body"]
        assert corridor.distance_m(body["lat_e7"], body["lon_e7"]) > corridor.width_m
    route_lines = [line for line in lines if " route" in line]
    assert len(route_lines) == 2 and "routeDeviation" in route_lines[0]
    assert len(lines) == len(journal.alerts_after(0))  # the console showed every alert
    report = verify_chain(journal.iter_signed(), key.public_key(), gateway_id="gw-test")
    assert report.count == journal.head()[0]
    assert source.stats().written == sum(1 for s in journal.read_after(0, 100_000)
                                         if s.kind == "gps")


def _valid_epochs(n: int) -> list[bytes]:
    return [epoch_bytes(SimFix(t_ms=T0 + i * 1000, lat=-34.9 + i * 1e-4, lon=-56.2,
                               speed_mps=10.0, course_deg=90.0))
            for i in range(n)]


def test_garbage_and_truncated_sentences_never_stop_the_source(tmp_path) -> None:
    journal, _ = _journal(tmp_path)
    rng = random.Random(7)
    epochs = _valid_epochs(40)
    stream = bytearray()
    for epoch in epochs:
        stream += rng.randbytes(rng.randint(0, 300))  # line noise, invalid UTF-8 included
        stream += b"\n$GNGGA,1234"  # a sentence cut off mid-way
        stream += b"\n" + epoch
    stream += b"$" + b"A" * 100_000 + b"\n"  # an endless line at a wrong baud rate
    stream += _valid_epochs(41)[-1]

    async def scenario() -> SerialGpsSource:
        with PtyPair() as pty:
            source = SerialGpsSource(pty.path, sensor_id="gps0", max_line=256, filters=REPLAY)
            agent = Agent(journal, [source], [])
            stop = asyncio.Event()
            runner = asyncio.create_task(agent.run(stop))
            await source.connected.wait()
            writer = asyncio.create_task(asyncio.to_thread(_write_all, pty.master_fd,
                                                           bytes(stream)))
            while agent.tail.head < 41:
                await asyncio.wait_for(agent.tail.wait_beyond(agent.tail.head), 30)
            await writer
            stop.set()
            await runner
            return source

    source = asyncio.run(scenario())
    assert journal.head()[0] == 41  # every valid fix, and only those
    stats = source.stats()
    assert stats.dropped["line_too_long"] >= 1
    rejected = sum(v for k, v in {**stats.dropped, **stats.events}.items()
                   if k.startswith("nmea_") and k != "nmea_unsupported")
    assert rejected >= 40, stats  # the 40 truncated sentences at least, plus noise lines
    assert stats.added == 41


def test_a_receiver_mixing_ubx_binary_and_nmea_loses_no_fix(tmp_path) -> None:
    # A u-blox M8 log with UBX frames between its sentences, more than a line (512 bytes) of
    # binary before some of them: every fix of the log reaches the journal, as decoded from
    # the log alone.
    journal, _ = _journal(tmp_path)
    lines = load("ublox_m8_nmea40")
    clean = NmeaHandler(GpsStream("gps0", REPLAY))
    expected = [(d.t_ms, d.body) for line in lines for d in clean.handle(line)]
    expected += [(d.t_ms, d.body) for d in clean.reset()]
    assert len(expected) == 5

    async def scenario() -> SerialGpsSource:
        with PtyPair() as pty:
            source = SerialGpsSource(pty.path, sensor_id="gps0", max_line=512, filters=REPLAY)
            agent = Agent(journal, [source], [])
            stop = asyncio.Event()
            runner = asyncio.create_task(agent.run(stop))
            await source.connected.wait()
            data = with_binary(lines, seed=5, no_newline=True)
            await asyncio.to_thread(_write_all, pty.master_fd, data)
            # the last epoch is complete on its last GSA: no need to close the port
            while agent.tail.head < len(expected):
                await asyncio.wait_for(agent.tail.wait_beyond(agent.tail.head), 30)
            stop.set()
            await runner
            return source

    source = asyncio.run(scenario())
    records = [s.record() for s in journal.read_after(0, 1000)]
    assert [(r["t_ms"], r["body"]) for r in records] == expected
    stats = source.stats()
    assert stats.dropped["line_too_long"] >= 1
    assert stats.dropped.get("nmea_internal_error", 0) == 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:4096])
        view = view[written:]
