"""End to end through pseudo-terminals: a simulated GNSS receiver and a serial e-seal reader feed
the real agent (sources, heartbeat, journal, rules engine with a customs-signed plan, console).

The truck drives the demo route out of the departure office (it leaves its corridor for about
100 s), a seal the plan does not list is in radio range, and once the truck is in the
destination office one of its seals is opened there: the trip closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.agent import Agent
from edge_agent.journal import Draft, Journal
from edge_agent.rules import RulesEngine
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.heartbeat import HeartbeatSource
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.serial_gps import SerialGpsSource
from edge_agent.sources.serial_seal import SerialSealSource
from firmware_sim.gps import GpsReceiver
from firmware_sim.motion import Motion, Stop
from firmware_sim.pty import PtyPair
from firmware_sim.route import Route
from geofences import sign_envelope
from ledger_client.keys import public_hex
from ledger_client.records import verify_chain
from tests.helpers.rules_rig import plan_doc, seal, seal_key

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
TRUCK = ROOT / "firmware_sim" / "scenarios" / "demo_truck_route.geojson"
FAST = FixFilterParams(max_age_ms=None, max_future_ms=None)  # fix time runs ahead of the wall


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def test_truck_seals_and_plan_through_the_real_agent(tmp_path) -> None:
    key, customs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.db", gateway_id="gw-e2e", key=key)
    now = time.time_ns() // 1_000_000
    rules = RulesEngine(journal, trusted_keys=[bytes.fromhex(public_hex(customs))])
    plan = plan_doc(valid_from_ms=now - 60_000, deadline_ms=now + 3_600_000)
    rules.set_plan(sign_envelope("plan", json.dumps(plan).encode(), customs))
    seals = {s: seal(s, now) for s in ("SEAL-A", "SEAL-B", "SEAL-X")}
    auth = SealAuthenticator(journal, {s: seal_key(s) for s in seals})
    route = Route.from_geojson_file(TRUCK, 8.0)
    motion = Motion(route, stops=[Stop(route.length_m, 20)])  # parked in the office at the end
    lines: list[str] = []
    arrived, closed = asyncio.Event(), asyncio.Event()

    def show(line: str) -> None:
        lines.append(line)
        if "geofenceEnter" in line and "office-dest" in line:
            arrived.set()
        if "tripClosed" in line:
            closed.set()

    async def scenario(gps: PtyPair, reader: PtyPair) -> None:
        gps_source = SerialGpsSource(gps.path, sensor_id="gps0", filters=FAST)
        seal_source = SerialSealSource(reader.path, auth, reader_id="reader0")
        agent = Agent(journal, [gps_source, seal_source, HeartbeatSource(0.2)],
                      [rules, ConsoleSink(journal, show)])
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        try:
            await asyncio.wait_for(asyncio.gather(gps_source.connected.wait(),
                                                  seal_source.connected.wait()), 10)
            for s in seals.values():  # every seal in range says hello, closed
                _write(reader.master_fd, s.message(time.time_ns() // 1_000_000).sentence())
            receiver = GpsReceiver(route, gps.master_fd, 5.0, realtime=False, t0_ms=now,
                                   motion=motion)
            truck = threading.Thread(target=receiver.run, daemon=True)
            truck.start()
            await asyncio.wait_for(arrived.wait(), 60)
            seals["SEAL-A"].set_state("O")  # customs open the container at the destination
            _write(reader.master_fd,
                   seals["SEAL-A"].message(time.time_ns() // 1_000_000).sentence())
            await asyncio.wait_for(closed.wait(), 20)
            receiver.stop.set()
            await asyncio.to_thread(truck.join)
        finally:
            stop.set()
            await runner

    with PtyPair() as gps, PtyPair() as reader:
        asyncio.run(scenario(gps, reader))

    alerts = [s.record()["body"] for s in journal.alerts_after(0)]
    types = [a["type"] for a in alerts]
    assert types.count("sealIdMismatch") == 1, types  # when, depends on the two ports' timing
    got = [(t, a["details"].get("zone_id")) for t, a in zip(types, alerts, strict=True)
           if t != "sealIdMismatch"]
    assert got == [("geofenceEnter", "office-dep"), ("geofenceExit", "office-dep"),
                   ("routeDeviation", None), ("routeReturn", None),
                   ("geofenceEnter", "office-dest"), ("tripClosed", None)]
    assert all(a["plan_id"] == "plan-0001" for a in alerts)
    closed_alert = alerts[types.index("tripClosed")]
    assert closed_alert["asset"]["seal"] == "SEAL-A"
    assert closed_alert["asset"]["container"] == "MSCU1234567"
    mismatch = alerts[types.index("sealIdMismatch")]
    assert mismatch["asset"]["seal"] == "SEAL-X" and mismatch["severity"] == "critical"
    # the console showed each alert once, and the chain (heartbeats included) verifies
    assert len(lines) == len(alerts), lines
    assert "ALERT CRITICAL routeDeviation" in "\n".join(lines)
    records = journal.read_after(0, 100_000)
    assert any(r.src == "agent" and r.kind == "status" for r in records)
    report = verify_chain(journal.iter_signed(), key.public_key(), gateway_id="gw-e2e")
    assert report.count == journal.head()[0]
    journal.close()


def test_a_plan_loaded_while_the_agent_runs_takes_effect_at_once(tmp_path) -> None:
    """set_plan from the running loop (the MQTT plans topic) wakes the rules itself: the switch
    does not wait for the next sensor reading."""
    key, customs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.db", gateway_id="gw-e2e", key=key)
    rules = RulesEngine(journal, trusted_keys=[bytes.fromhex(public_hex(customs))])
    envelope = sign_envelope("plan", json.dumps(plan_doc()).encode(), customs)

    async def scenario() -> int:
        agent = Agent(journal, [], [rules])
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        try:
            while rules._tail is None:  # the consumer task has started
                await asyncio.sleep(0)
            rules.set_plan(envelope)
            seq = journal.head()[0]
            await asyncio.wait_for(agent.tail.wait_beyond(seq - 1), 5)
            deadline = asyncio.get_running_loop().time() + 5
            while rules.position < seq and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            return seq
        finally:
            stop.set()
            await runner

    seq = asyncio.run(scenario())
    assert rules.position == seq and rules.plan is not None
    assert rules.plan.plan_id == "plan-0001"
    journal.close()


def test_heartbeat_source_beats_on_schedule_from_src_agent() -> None:
    beats: list[tuple[int, str, str, dict[str, object]]] = []
    enough = asyncio.Event()
    clock = iter(range(1_000, 10_000, 7))

    async def emit(item: object) -> None:
        beats.append((item.t_ms, item.kind, item.src, item.body))  # type: ignore[attr-defined]
        if len(beats) == 3:
            enough.set()

    async def scenario() -> None:
        source = HeartbeatSource(0.01, clock=lambda: next(clock))
        task = asyncio.create_task(source.run(emit))
        await asyncio.wait_for(enough.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert beats[:3] == [(1_000, "status", "agent", {"event": "heartbeat"}),
                         (1_007, "status", "agent", {"event": "heartbeat"}),
                         (1_014, "status", "agent", {"event": "heartbeat"})]
    with pytest.raises(ValueError, match="interval_s"):
        HeartbeatSource(0)


def test_the_live_engine_saves_its_state_between_alerts_and_at_stop(tmp_path) -> None:
    """Between alerts the engine saves state and cursor at its checkpoint interval, or when
    the journal goes quiet, and at stop: a restart then has nothing to evaluate again."""
    journal = Journal(tmp_path / "journal.db", gateway_id="gw-e2e",
                      key=Ed25519PrivateKey.generate())
    rules = RulesEngine(journal, checkpoint_s=3600.0, checkpoint_records=10**9)

    async def scenario() -> tuple[int, int]:
        beats = HeartbeatSource(0.01)
        agent = Agent(journal, [beats], [rules])
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        try:
            while rules.position < 20:
                await asyncio.sleep(0.01)
            saved_while_running = journal.cursor("rules")
        finally:
            stop.set()
            await runner
        return saved_while_running, rules.position

    while_running, evaluated = asyncio.run(scenario())
    assert while_running == 0  # heartbeats raise nothing; an hour had not passed
    assert journal.cursor("rules") == evaluated >= 20  # saved at stop
    journal.close()


def test_a_quiet_journal_gets_the_evaluated_state_saved(tmp_path) -> None:
    """The engine's clock is frozen, so evaluating never finds its interval over: only the
    wait for new records timing out (checkpoint_s) can save the cursor before stop."""
    journal = Journal(tmp_path / "journal.db", gateway_id="gw-e2e",
                      key=Ed25519PrivateKey.generate())
    rules = RulesEngine(journal, checkpoint_s=0.2, checkpoint_records=10**9,
                        monotonic=lambda: 0.0)
    journal.append([Draft(1_790_000_000_000 + i, "status", "agent", {"event": "heartbeat"})
                    for i in range(10)])

    async def scenario() -> int:
        agent = Agent(journal, [], [rules])
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while journal.cursor("rules") < 10 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)  # no new records: the wait times out and saves
            return journal.cursor("rules")
        finally:
            stop.set()
            await runner

    assert asyncio.run(scenario()) == 10
    journal.close()
