"""Scenario tests: firmware_sim traces through the real decoders, journal and rules engine.

Each scenario is a transit on the demo corridor under a customs-signed plan (tests/helpers/
rules_rig.py: offices at both ends, a fuel stop, a forbidden yard) and asserts the *complete*
list of alerts it raises: every alert type fires exactly once, where it should, and nothing
else fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.rules import RuleParams
from firmware_sim.gnss import Conditions, Jamming, Window
from firmware_sim.motion import Motion, SpeedZone, Stop
from firmware_sim.route import LonLat, PositionNoise, Route, haversine_m
from firmware_sim.trace import (
    TraceItem,
    gps_trace,
    merge,
    point_along,
    seal_trace,
    sub_line,
)
from geofences import parse_plan
from tests.helpers.rules_rig import CORRIDOR, T0, Rig, e7, plan_doc, seal, zone_points

LENGTH = Route(CORRIDOR, 1.0).length_m
WAIT_S = 30.0
"""Every truck waits this long in the departure office (sealing, papers) before it leaves."""
DEP, DEST = ("geofenceEnter", "office-dep"), ("geofenceEnter", "office-dest")
LEAVE_DEP = ("geofenceExit", "office-dep")


def detour(at_m: float, to: LonLat, rejoin_m: float | None = None) -> list[LonLat]:
    """Follow the corridor to ``at_m``, drive out to ``to``, back to it at ``rejoin_m``
    (default ``at_m``), then on to the end."""
    rejoin_m = at_m if rejoin_m is None else rejoin_m
    return [*sub_line(CORRIDOR, 0, at_m), to, point_along(CORRIDOR, rejoin_m),
            *sub_line(CORRIDOR, rejoin_m, LENGTH)[1:]]


def trip(coords: Sequence[LonLat], speed_mps: float, stops: Sequence[Stop] = (),
         zones: Sequence[SpeedZone] = ()) -> Motion:
    """A truck on ``coords`` that leaves the departure office after ``WAIT_S``."""
    return Motion(Route(coords, speed_mps), zones=zones, stops=[Stop(0.0, WAIT_S), *stops])


def closed_seals(duration_s: float, ids: Sequence[str] = ("SEAL-A", "SEAL-B")) -> list[
        list[TraceItem]]:
    return [seal_trace(seal(s), t0_ms=T0, duration_s=duration_s, heartbeat_s=30, phase_s=3 + i)
            for i, s in enumerate(ids)]


def drive(rig: Rig, motion: Motion, *, tail_s: float = 60, noise: float = 2.0,
          rate_hz: float = 1.0, conditions: Conditions | None = None,
          seals: list[list[TraceItem]] | None = None) -> list[TraceItem]:
    """The truck's GNSS receiver for the drive plus ``tail_s`` parked, and its seals."""
    duration = motion.duration_s + tail_s
    gps = gps_trace(motion, t0_ms=T0, rate_hz=rate_hz, duration_s=duration, seed=1,
                    noise=PositionNoise(noise, seed=1) if noise else None, conditions=conditions)
    seals = closed_seals(duration) if seals is None else seals
    rig.feed(merge(gps, *seals), until_ms=T0 + round(duration * 1000))
    return gps


def summary(rig: Rig) -> list[tuple[str, str]]:
    """(type, zone or asset) per alert, in journal order."""
    out = []
    for a in rig.alerts():
        d = a["details"]
        what = d.get("zone_id") or a["asset"].get("seal") or a["asset"].get("sensor") or ""
        out.append((a["type"], what))
    return out


def by_type(rig: Rig, alert_type: str) -> dict[str, Any]:
    [alert] = [a for a in rig.alerts() if a["type"] == alert_type]
    return alert


def started(tmp_path: Path, **plan: Any) -> Rig:
    rig = Rig(tmp_path)
    rig.load_plan(plan_doc(**plan), t_ms=T0 - 1000)
    return rig


def test_deviation_into_a_forbidden_yard_and_back(tmp_path) -> None:
    rig = started(tmp_path)
    yard = zone_points()["yard-x"]
    out_at = point_along(CORRIDOR, 600)
    drive(rig, trip(detour(600, yard), 8.0, [Stop(600 + haversine_m(out_at, yard), 30)]))
    assert summary(rig) == [DEP, LEAVE_DEP, ("geofenceEnter", "yard-x"),
                            ("routeDeviation", ""), ("geofenceExit", "yard-x"),
                            ("routeReturn", ""), DEST]
    plan = parse_plan(rig.payload(plan_doc()))
    corridor = plan.corridor
    deviation, back = by_type(rig, "routeDeviation"), by_type(rig, "routeReturn")
    assert deviation["severity"] == "critical" and deviation["plan_id"] == "plan-0001"
    assert deviation["asset"] == {"vehicle": "truck-SBX-1234", "gps": "gps0"}
    for seq in deviation["evidence"]:  # every piece of evidence is a GPS fix outside
        body = rig.reading(seq)["body"]
        assert corridor.distance_m(body["lat_e7"], body["lon_e7"]) > 60
    assert back["details"]["closes"] == deviation["alert_id"]
    assert back["details"]["off_route_duration_ms"] > 60_000
    enter = [a for a in rig.alerts() if a["details"].get("zone_id") == "yard-x"]
    assert [a["severity"] for a in enter] == ["critical", "warning"]
    yard_e7 = e7(yard)
    for seq in enter[0]["evidence"]:
        body = rig.reading(seq)["body"]
        assert plan.zones.distance_m("yard-x", body["lat_e7"], body["lon_e7"]) == 0
    assert abs(enter[0]["position"]["lat_e7"] - yard_e7[0]) < 1000  # ~10 m
    # every alert names the planLoaded record that tied it to the plan
    loaded = rig.reading(deviation["details"]["plan_seq"])
    assert loaded["body"]["event"] == "planLoaded" and loaded["body"]["digest"] == plan.digest


def test_stop_outside_authorized_zones_fires_once_and_the_fuel_stop_never(tmp_path) -> None:
    rig = started(tmp_path, limits={"max_stop_s": 300})
    fuel = zone_points()["stop-fuel"]
    # 20 minutes parked at 400 m with 5 m noise, then 8 minutes at the fuel stop
    drive(rig, trip(detour(700, fuel), 8.0, [Stop(400, 1200), Stop(750, 480)]), noise=5.0)
    assert summary(rig) == [DEP, LEAVE_DEP, ("unauthorizedStop", ""),
                            ("geofenceEnter", "stop-fuel"), ("geofenceExit", "stop-fuel"), DEST]
    stop = by_type(rig, "unauthorizedStop")
    assert stop["severity"] == "warning"
    assert stop["details"]["duration_ms"] == 300_000 and stop["details"]["limit_ms"] == 300_000
    assert stop["details"]["zones"] == []
    first = rig.reading(stop["evidence"][0])
    assert first["t_ms"] == stop["details"]["stopped_since_ms"]
    stop_point = e7(point_along(CORRIDOR, 400))
    assert abs(stop["position"]["lat_e7"] - stop_point[0]) < 3000  # within ~30 m


def test_overspeed_fires_once_for_a_sustained_run_not_for_a_burst(tmp_path) -> None:
    rig = started(tmp_path, limits={"max_speed_kmh": 60})
    # 12 m/s, with an 8 s burst at 19 m/s (68 km/h), then 20 m/s (72 km/h) from 300 m on
    motion = trip(CORRIDOR, 20.0, zones=[SpeedZone(0, 300, 12.0), SpeedZone(100, 250, 19.0)])
    drive(rig, motion)
    assert summary(rig) == [DEP, LEAVE_DEP, ("overspeed", ""), DEST]
    alert = by_type(rig, "overspeed")
    assert alert["details"]["limit_kmh"] == 60 and alert["details"]["max_speed_kmh"] == 72
    speeds = [rig.reading(s)["body"]["speed_cmps"] for s in alert["evidence"]]
    assert min(speeds) > 1667
    first = rig.reading(alert["evidence"][0])
    assert alert["details"]["over_since_ms"] == first["t_ms"]
    assert rig.reading(alert["evidence"][-1])["t_ms"] - first["t_ms"] >= 30_000


def test_late_arrival_fires_once_when_the_deadline_passes_on_the_road(tmp_path) -> None:
    rig = started(tmp_path, deadline_ms=T0 + 60_000)
    drive(rig, trip(CORRIDOR, 8.0))
    assert summary(rig) == [DEP, LEAVE_DEP, ("lateArrival", ""), DEST]
    late = by_type(rig, "lateArrival")
    assert late["t_ms"] >= T0 + 60_000 and late["details"]["deadline_ms"] == T0 + 60_000
    assert late["asset"]["vehicle"] == "truck-SBX-1234"


def test_no_late_arrival_for_a_truck_waiting_at_the_office_past_its_deadline(tmp_path) -> None:
    rig = started(tmp_path, deadline_ms=T0 + 300_000)
    drive(rig, trip(CORRIDOR, 8.0), tail_s=600)
    assert summary(rig) == [DEP, LEAVE_DEP, DEST]
    assert rig.engine.trip is not None and rig.engine.trip.arrived_ms is not None


def test_seal_rules_open_tamper_missing_battery_and_mismatch(tmp_path) -> None:
    seals = {"MSCU1234567": ["SEAL-A", "SEAL-B"], "TGHU7654321": ["SEAL-C"]}
    rig = Rig(tmp_path, seal_ids=("SEAL-A", "SEAL-B", "SEAL-C", "SEAL-X"))
    rig.load_plan(plan_doc(seals=seals), t_ms=T0 - 1000)
    fuel = zone_points()["stop-fuel"]
    motion = trip(detour(700, fuel), 4.0, [Stop(750, 120)])
    duration = motion.duration_s + 60
    at_fuel = WAIT_S + 750 / 4.0 + 60  # in the middle of the fuel stop
    traces = [
        # A: opened on the road (400 m); battery at 23 % draining 60 %/h (20 % after 3 min)
        seal_trace(seal("SEAL-A", battery_pct=23.0, drain_pct_per_h=60.0), t0_ms=T0,
                   duration_s=duration, heartbeat_s=30, phase_s=2,
                   events=[(WAIT_S + 100.0, "O")]),
        # B: tampered while the truck stands in the authorized fuel stop
        seal_trace(seal("SEAL-B"), t0_ms=T0, duration_s=duration, heartbeat_s=30, phase_s=4,
                   events=[(at_fuel, "T")]),
        # C: out of radio range from 40 s to 440 s
        seal_trace(seal("SEAL-C"), t0_ms=T0, duration_s=duration, heartbeat_s=30, phase_s=20,
                   silent=[(40.0, 400.0)]),
        # X: a seal the plan does not list, heard all along
        seal_trace(seal("SEAL-X"), t0_ms=T0, duration_s=duration, heartbeat_s=30, phase_s=8),
    ]
    drive(rig, motion, seals=traces)
    assert summary(rig) == [
        ("sealIdMismatch", "SEAL-X"), DEP, LEAVE_DEP, ("sealLowBattery", "SEAL-A"),
        ("sealOpened", "SEAL-A"), ("geofenceEnter", "stop-fuel"), ("sealTampered", "SEAL-B"),
        ("sealMissing", "SEAL-C"), ("geofenceExit", "stop-fuel"), ("sealFound", "SEAL-C"),
        DEST]
    opened, tampered = by_type(rig, "sealOpened"), by_type(rig, "sealTampered")
    assert opened["severity"] == "critical" and opened["details"]["zones"] == []
    assert opened["asset"] == {"vehicle": "truck-SBX-1234", "seal": "SEAL-A",
                               "container": "MSCU1234567"}
    kinds = sorted(rig.reading(s)["kind"] for s in opened["evidence"])
    assert kinds == ["gps", "seal"]  # the seal reading and the fix that places it
    assert tampered["severity"] == "warning"
    assert tampered["details"]["zones"] == [{"id": "stop-fuel", "role": "authorized_stop"}]
    missing, found = by_type(rig, "sealMissing"), by_type(rig, "sealFound")
    assert missing["severity"] == "critical" and found["details"]["closes"] == missing["alert_id"]
    last_heard = rig.reading(missing["evidence"][0])
    assert last_heard["kind"] == "seal" and last_heard["body"]["seal_id"] == "SEAL-C"
    assert missing["t_ms"] - last_heard["t_ms"] >= 300_000
    mismatch = by_type(rig, "sealIdMismatch")
    assert mismatch["details"]["reason"] == "not_in_plan" and mismatch["severity"] == "critical"
    low = by_type(rig, "sealLowBattery")
    assert rig.reading(low["evidence"][0])["body"]["battery_pct"] <= 20


def test_opening_in_the_destination_office_closes_the_trip(tmp_path) -> None:
    rig = started(tmp_path, deadline_ms=T0 + 400_000)
    beyond = point_along(CORRIDOR[-2:], haversine_m(CORRIDOR[-2], CORRIDOR[-1]) - 1, 300)
    drive_s = WAIT_S + LENGTH / 8.0
    motion = trip([*CORRIDOR, beyond], 8.0, [Stop(LENGTH, 600)])  # 10 min at the office
    duration = motion.duration_s + 400
    traces = [seal_trace(seal("SEAL-A"), t0_ms=T0, duration_s=drive_s + 120, heartbeat_s=30,
                         phase_s=3, events=[(drive_s + 60, "O")]),
              seal_trace(seal("SEAL-B"), t0_ms=T0, duration_s=drive_s + 120, heartbeat_s=30,
                         phase_s=5, events=[(drive_s + 90, "O")])]
    drive(rig, motion, seals=traces, tail_s=duration - motion.duration_s)
    # after tripClosed: B's opening, both seals falling silent, the deadline passing and the
    # truck leaving its corridor raise nothing
    assert summary(rig) == [DEP, LEAVE_DEP, DEST, ("tripClosed", "SEAL-A")]
    closed = by_type(rig, "tripClosed")
    assert closed["severity"] == "info" and closed["plan_id"] == "plan-0001"
    assert closed["details"]["destination_office"] == "office-dest"
    assert {"id": "office-dest", "role": "customs_office"} in closed["details"]["zones"]
    assert rig.engine.trip is not None and not rig.engine.trip.open


def test_gnss_lost_only_past_three_minutes_and_restored_once(tmp_path) -> None:
    rig = started(tmp_path)
    drive(rig, trip(CORRIDOR, 2.0), conditions=Conditions(
        dropouts=(Window(100, 300),)))
    assert summary(rig) == [DEP, LEAVE_DEP, ("gnssLost", ""), ("gnssRestored", ""), DEST]
    lost, back = by_type(rig, "gnssLost"), by_type(rig, "gnssRestored")
    status = rig.reading(lost["evidence"][0])
    assert status["kind"] == "status" and status["body"]["event"] == "gnssLost"
    assert lost["t_ms"] - status["body"]["since_ms"] == 180_000
    assert back["details"]["closes"] == lost["alert_id"]
    assert back["details"]["outage_ms"] >= 300_000 - 1000


def test_jamming_raises_one_critical_alert_and_one_clearance(tmp_path) -> None:
    rig = started(tmp_path)
    drive(rig, trip(CORRIDOR, 2.0), rate_hz=2.0, noise=1.5,
          conditions=Conditions(jamming=(Jamming(Window(100, 70), 15),)))
    assert summary(rig) == [DEP, LEAVE_DEP, ("jamming", ""), ("jammingCleared", ""), DEST]
    jam = by_type(rig, "jamming")
    assert jam["severity"] == "critical"
    assert "satellites_collapse" in jam["details"]["indicators"]
    assert rig.reading(jam["evidence"][0])["body"]["event"] == "jammingSuspected"


def test_comm_loss_for_a_long_unplug_not_a_short_one(tmp_path) -> None:
    rig = started(tmp_path)
    motion = trip(CORRIDOR, 2.0)  # 11 minutes of driving
    gps = gps_trace(motion, t0_ms=T0, rate_hz=1.0, seed=1)
    trace = merge(gps, *closed_seals(motion.duration_s))
    port = {"port": "/dev/serial/by-id/usb-reader0"}

    def until(t_s: float) -> list[TraceItem]:
        return [i for i in trace if rig.now < i.t_ms <= T0 + t_s * 1000]

    rig.feed(until(60))
    rig.status("reader0", {"event": "sensorDisconnected", **port})  # a 20 s unplug
    rig.feed(until(80))
    rig.status("reader0", {"event": "sensorConnected", **port})
    rig.feed(until(200))
    rig.status("reader0", {"event": "sensorDisconnected", **port})  # a 3 min unplug
    rig.feed(until(380))
    rig.status("reader0", {"event": "sensorConnected", **port})
    rig.feed(until(10_000))
    types = [t for t in summary(rig) if not t[0].startswith("geofence")]
    assert types == [("commLoss", "reader0"), ("commRestored", "reader0")]
    loss = by_type(rig, "commLoss")
    assert loss["details"]["cause"] == "sensorDisconnected"
    assert loss["asset"]["sensor"] == "reader0" and "gps" not in loss["asset"]
    assert loss["t_ms"] - rig.reading(loss["evidence"][0])["t_ms"] >= 120_000


def test_a_gps_that_falls_silent_without_a_word_is_a_comm_loss(tmp_path) -> None:
    rig = started(tmp_path)
    motion = trip(CORRIDOR, 2.0)
    gps = gps_trace(motion, t0_ms=T0, rate_hz=1.0, seed=1, duration_s=motion.duration_s + 60)
    quiet = [i for i in gps if not T0 + 200_000 <= i.t_ms < T0 + 400_000]
    seals = closed_seals(motion.duration_s + 60)
    rig.feed(merge(quiet, *seals), until_ms=gps[-1].t_ms)
    types = [t for t in summary(rig) if not t[0].startswith("geofence")]
    assert types == [("commLoss", "gps0"), ("commRestored", "gps0")]
    loss = by_type(rig, "commLoss")
    assert loss["details"]["cause"] == "silence" and loss["asset"]["gps"] == "gps0"


def test_params_apply_without_a_plan_for_the_gateways_own_sensors(tmp_path) -> None:
    rig = Rig(tmp_path, params=RuleParams(gnss_lost_ms=60_000))
    motion = Motion(Route(CORRIDOR, 4.0))
    drive(rig, motion, conditions=Conditions(dropouts=(Window(50, 90),)), seals=[])
    assert [(a["type"], a["plan_id"]) for a in rig.alerts()] == [("gnssLost", None),
                                                                   ("gnssRestored", None)]
