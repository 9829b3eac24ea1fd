"""The rules' pure state machines, with tiny fakes for zones and plans: no journal, no I/O.

Each machine is also checked for persistence the way the engine uses it: saving its state
after every input and rebuilding it from that state must not change a single output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from edge_agent.rules import SEVERITY, RuleParams, RuleParamsError, alert_id
from edge_agent.rules.alerts import CLOSES, Alert, Evidence
from edge_agent.rules.context import ActivePlan, Fix, Place, distance_m
from edge_agent.rules.health import SensorHealth
from edge_agent.rules.motion import SpeedMonitor, StopMonitor
from edge_agent.rules.seals import SealContext, SealMonitor
from edge_agent.rules.trip import Trip
from edge_agent.rules.zonewatch import ZoneWatch
from geofences import corridor_from_degrees, zones_from_geojson

T0 = 1_790_000_000_000
BASE = (-349_000_000, -562_000_000)  # lat_e7, lon_e7 near Montevideo
P = RuleParams()


def fix(seq: int, t_s: float, north_m: float = 0.0, east_m: float = 0.0, speed_cmps: int = 0,
        quality: int = 1) -> Fix:
    lat = BASE[0] + round(north_m / 111_195 * 1e7)
    lon = BASE[1] + round(east_m / (111_195 * 0.8200) * 1e7)
    return Fix(seq, T0 + round(t_s * 1000), lat, lon, quality, 9, 12, speed_cmps)


@dataclass(frozen=True)
class FakeZone:
    zone_id: str
    role: str
    centre: tuple[int, int]
    radius_m: float


@dataclass
class FakeZones:
    """Circles; ``containing`` as geofences.ZoneIndex answers it (margin included)."""

    zones: list[FakeZone] = field(default_factory=list)

    def containing(self, lat_e7: int, lon_e7: int, t_ms: int,
                   margin_m: float = 0.0) -> list[FakeZone]:
        return [z for z in self.zones
                if distance_m(lat_e7, lon_e7, *z.centre) <= z.radius_m + margin_m]


def zone_at(zone_id: str, role: str, north_m: float, east_m: float, radius_m: float) -> FakeZone:
    f = fix(0, 0, north_m, east_m)
    return FakeZone(zone_id, role, (f.lat_e7, f.lon_e7), radius_m)


@dataclass
class FakePlan:
    zones: FakeZones
    plan_id: str = "plan-1"
    vehicle: str = "truck-1"
    containers: Sequence[Any] = ({"container_id": "C1", "seal_ids": ["S1", "S2"]},)
    corridor: Any = None
    departure_office: str = "dep"
    destination_office: str = "dest"
    authorized_stops: Sequence[str] = ("fuel",)
    valid_from_ms: int = T0 - 1
    deadline_ms: int = T0 + 3_600_000
    limits: dict[str, int] = field(default_factory=dict)
    digest: str = "d1"


def active(plan: FakePlan | None = None) -> ActivePlan:
    plan = plan or FakePlan(FakeZones([zone_at("dest", "customs_office", 1000, 0, 100),
                                       zone_at("fuel", "authorized_stop", 500, 0, 50)]))
    return ActivePlan.build(plan, 7, P)  # type: ignore[arg-type]


def persisted(make: Callable[[], Any], dump: Callable[[Any], dict[str, Any]],
              load: Callable[[dict[str, Any]], Any]) -> Callable[[Any], Any]:
    """Round-trip ``obj`` through JSON the way the journal state table does."""
    def again(obj: Any) -> Any:
        return load(json.loads(json.dumps(dump(obj))))
    return again


# -- alerts, params -----------------------------------------------------------------------------


def test_alert_ids_are_stable_and_distinguish_every_part() -> None:
    a = alert_id("gw", "sealOpened", "S1", 10)
    assert a == alert_id("gw", "sealOpened", "S1", 10)
    assert len({a, alert_id("gw2", "sealOpened", "S1", 10), alert_id("gw", "sealTampered", "S1",
                10), alert_id("gw", "sealOpened", "S2", 10), alert_id("gw", "sealOpened", "S1",
                11)}) == 5
    assert set(CLOSES) <= set(SEVERITY) and set(CLOSES.values()) <= set(SEVERITY)


def test_evidence_keeps_first_and_latest_seqs_and_the_true_count() -> None:
    ev = Evidence()
    for seq in range(1, 101):
        ev.push(seq, cap=8)
    assert ev.seqs == [1, 2, 3, 4, 97, 98, 99, 100] and ev.count == 100
    again = Evidence.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert again.seqs == ev.seqs and again.count == 100


def test_plan_limits_override_params_and_bad_values_are_named() -> None:
    p = P.with_limits({"max_speed_kmh": 60, "max_stop_s": 120, "deviation_min_s": 20,
                       "unknown_limit": 3})
    assert p.max_speed_kmh == 60 and p.max_stop_ms == 120_000
    assert p.deviation.min_duration_ms == 20_000 and p.max_speed_cmps == 1667
    with pytest.raises(RuleParamsError, match="max_stop_s"):
        P.with_limits({"max_stop_s": -1})
    with pytest.raises(RuleParamsError, match="stop_speed_cmps"):
        RuleParams(move_speed_cmps=10, stop_speed_cmps=100)


def test_fix_from_body_refuses_no_fix_and_broken_values() -> None:
    good = {"lat_e7": BASE[0], "lon_e7": BASE[1], "fix_quality": 1, "sats": 9, "hdop_x10": 8,
            "speed_cmps": 5}
    assert Fix.from_body(1, T0, good) is not None
    for bad in ({"fix_quality": 0}, {"fix_quality": 8}, {"lat_e7": 1.5}, {"lon_e7": 2**40},
                {"lat_e7": None}):
        assert Fix.from_body(1, T0, {**good, **bad}) is None, bad


# -- motion -------------------------------------------------------------------------------------


def test_overspeed_needs_every_fix_over_the_limit_for_the_minimum_duration() -> None:
    m, limit = SpeedMonitor(), P.max_speed_cmps
    again = persisted(SpeedMonitor, lambda x: x.to_dict(), SpeedMonitor.from_dict)
    raised = []
    speeds = [limit + 100] * 20 + [limit - 10] + [limit + 100] * 40 + [limit - 50] * 5
    speeds += [limit - 400] * 40 + [limit + 300] * 35
    for i, speed in enumerate(speeds):
        m = again(m)
        alert = m.update(fix(i + 1, i, speed_cmps=speed), P, "gps0")
        if alert is not None:
            raised.append(alert)
    # the 20 s burst is cancelled by one fix at the limit; the 40 s run fires once, 30 s in;
    # hovering just under the limit does not re-arm; 40 s well under does, then a new episode
    assert [a.seq for a in raised] == [52, 137]
    first = raised[0]
    assert first.details["over_since_ms"] == T0 + 21_000 and first.details["duration_ms"] == 30_000
    assert first.evidence[0] == 22 and first.evidence[-1] == 52


def test_a_stop_is_reported_once_and_noise_neither_ends_nor_restarts_it() -> None:
    m = StopMonitor()
    again = persisted(StopMonitor, lambda x: x.to_dict(), StopMonitor.from_dict)
    import random
    rng = random.Random(3)
    reports = []
    seq = 0
    for t in range(0, 1500):  # 25 min parked, 15 m noise, Doppler jitter
        seq += 1
        m = again(m)
        f = fix(seq, t, rng.gauss(0, 15), rng.gauss(0, 15), abs(round(rng.gauss(0, 8))))
        if (stop := m.update(f, P, P.max_stop_ms)) is not None:
            reports.append(stop)
    assert len(reports) == 1 and reports[0].duration_ms == P.max_stop_ms
    assert reports[0].since_ms == T0
    # driving off ends it; the next stop is a new one
    assert m.update(fix(seq + 1, 1501, 200, 0, 1500), P, P.max_stop_ms) is None
    assert not m.stopped


def test_without_a_reported_speed_position_alone_tells_a_stop_from_driving() -> None:
    """A GGA+ZDA or GNS+GLL receiver reports no speed: unknown, not zero. A truck driving at
    15 m/s is never 'stopped', and a parked one is, from positions alone; overspeed needs a
    measured speed and is not judged."""
    def unknown(seq: int, t_s: float, north_m: float) -> Fix:
        return fix(seq, t_s, north_m)._replace(speed_cmps=None, sats=None, hdop_x10=None)

    driving = StopMonitor()
    for t in range(0, 1500):
        assert driving.update(unknown(t + 1, t, 15.0 * t), P, P.max_stop_ms) is None
    parked = StopMonitor()
    reports = [stop for t in range(0, 1500)
               if (stop := parked.update(unknown(t + 1, t, 0.0), P, P.max_stop_ms))]
    assert len(reports) == 1 and reports[0].duration_ms == P.max_stop_ms
    assert "sats" not in unknown(1, 0, 0).position()
    assert Fix.from_list(json.loads(json.dumps(unknown(1, 0, 0).to_list()))) == unknown(1, 0, 0)
    speed = SpeedMonitor()
    assert all(speed.update(unknown(t + 1, t, 60.0 * t), P, "gps0") is None for t in range(600))


# -- health -------------------------------------------------------------------------------------


def test_gnss_outage_alerts_only_past_its_threshold_and_closes_once() -> None:
    h = SensorHealth("gps0")
    assert h.status(10, T0, {"event": "gnssLost", "since_ms": T0 - 3000}) == []
    assert h.tick(T0 + 170_000, 11, P, 0) == []  # 173 s < 180 s
    assert h.due_ms(P, 0) == T0 - 3000 + P.gnss_lost_ms
    [lost] = h.tick(T0 + 177_000, 12, P, 0)
    assert lost.type == "gnssLost" and lost.evidence == (10,) and lost.seq == 12
    assert h.tick(T0 + 300_000, 13, P, 0) == []  # open: not raised again
    h = SensorHealth.from_dict("gps0", json.loads(json.dumps(h.to_dict())))
    [back] = h.status(14, T0 + 400_000, {"event": "gnssRestored", "outage_ms": 403_000})
    assert back.type == "gnssRestored" and back.opened_seq == 12
    assert back.details["outage_ms"] == 403_000


def test_a_blackout_of_the_agent_restarts_every_silence_timer() -> None:
    h = SensorHealth("gps0")
    h.reading(1, T0, usable_fix=True)
    resumed = T0 + 3_600_000  # the agent was down for an hour
    assert h.tick(resumed, 2, P, resumed) == []
    assert h.due_ms(P, resumed) == resumed + P.comm_loss_ms
    [loss] = h.tick(resumed + P.comm_loss_ms, 3, P, resumed)
    assert loss.type == "commLoss" and loss.details["cause"] == "silence"
    [back] = h.reading(4, resumed + P.comm_loss_ms + 1, usable_fix=True)
    assert back.type == "commRestored" and back.opened_seq == 3


def test_disconnect_alerts_after_comm_loss_ms_and_a_quick_replug_is_silent() -> None:
    h = SensorHealth("reader0")
    h.status(1, T0, {"event": "sensorDisconnected"})
    assert h.tick(T0 + 20_000, 2, P, 0) == []
    assert h.status(3, T0 + 20_000, {"event": "sensorConnected"}) == []
    assert h.due_ms(P, 0) is None  # a reader that only sends status has no silence timer
    h.status(4, T0 + 30_000, {"event": "sensorSilent"})
    [loss] = h.tick(T0 + 30_000 + P.comm_loss_ms, 5, P, 0)
    assert loss.details["cause"] == "sensorSilent" and loss.evidence == (4,)
    [back] = h.status(6, T0 + 200_000, {"event": "sensorBack"})
    assert back.type == "commRestored"


def test_jamming_fires_on_suspicion_once_until_cleared() -> None:
    h = SensorHealth("gps0")
    [jam] = h.status(1, T0, {"event": "jammingSuspected", "indicators": ["satellites_collapse"],
                             "sats": 4, "sats_before": 12})
    assert jam.type == "jamming" and jam.details["indicators"] == ["satellites_collapse"]
    assert h.status(2, T0 + 1, {"event": "jammingSuspected"}) == []
    [clear] = h.status(3, T0 + 60_000, {"event": "jammingCleared", "duration_ms": 60_000})
    assert clear.opened_seq == 1
    assert h.status(4, T0 + 70_000, {"event": "jammingCleared"}) == []


# -- seals --------------------------------------------------------------------------------------


def seal_body(state: str = "C", battery: int = 90, ctr: int = 1, **extra: Any) -> dict[str, Any]:
    return {"seal_id": "S1", "ctr": ctr, "state": state, "battery_pct": battery, **extra}


def ctx(plan: ActivePlan | None, place: Place, released: bool = False) -> SealContext:
    return SealContext(plan, released, lambda: place, P)


def test_an_opening_is_critical_outside_authorized_zones_and_a_warning_inside() -> None:
    plan = active()
    nowhere = Place(fix(5, 0, 0, 0))
    fuel = Place(fix(6, 0, 500, 0), (plan.plan.zones.zones[1],))  # type: ignore[attr-defined]
    m = SealMonitor("S1")
    assert m.reading(1, T0, seal_body("C"), ctx(plan, nowhere)) == []
    assert m.reading(2, T0, seal_body("C", ctr=2), ctx(plan, nowhere)) == []
    [opened] = m.reading(3, T0, seal_body("O", ctr=3), ctx(plan, nowhere))
    assert (opened.type, opened.level, opened.evidence) == ("sealOpened", "critical", (3, 5))
    assert m.reading(4, T0, seal_body("O", ctr=4), ctx(plan, nowhere)) == []  # heartbeat: no news
    [tampered] = m.reading(7, T0, seal_body("T", ctr=5), ctx(plan, fuel))
    assert (tampered.type, tampered.level) == ("sealTampered", "warning")
    assert tampered.details["zones"] == [{"id": "fuel", "role": "authorized_stop"}]
    unknown = SealMonitor("S2").reading(8, T0, seal_body("O"), ctx(None, Place(None)))
    assert unknown[0].level == "critical" and unknown[0].details["location"] == "unknown"


def test_opening_a_plan_seal_in_the_destination_office_closes_the_trip() -> None:
    plan = active()
    dest = Place(fix(9, 0, 1000, 0), (plan.plan.zones.zones[0],))  # type: ignore[attr-defined]
    [closed] = SealMonitor("S1").reading(10, T0, seal_body("O"), ctx(plan, dest))
    assert closed.type == "tripClosed" and closed.key == "plan-1" and closed.level == "info"
    # a seal the plan does not list opened there is an ordinary (warning) opening
    other = SealMonitor("S9").reading(11, T0, {**seal_body("O"), "seal_id": "S9"},
                                      ctx(plan, dest))
    assert [a.type for a in other] == ["sealIdMismatch", "sealOpened"]
    assert other[1].level == "warning"
    # once released, the trip's seals open without alerts but tampering still counts
    released = SealMonitor("S2")
    assert released.reading(12, T0, seal_body("O"), ctx(None, dest, released=True)) == []
    assert [a.type for a in released.reading(13, T0, seal_body("T"),
                                             ctx(None, dest, released=True))] == ["sealTampered"]


def test_missing_found_low_battery_and_mismatch_each_fire_once() -> None:
    plan = active()
    m, place = SealMonitor("S1"), Place(None)
    again = persisted(lambda: None, lambda x: x.to_dict(),
                      lambda d: SealMonitor.from_dict("S1", d))
    assert m.reading(1, T0, seal_body(battery=25), ctx(plan, place)) == []
    m = again(m)
    assert m.due_ms(T0 - 10, P) == T0 + P.seal_missing_ms
    assert m.tick(T0 + P.seal_missing_ms - 1, 2, T0, 7, P) == []
    [missing] = m.tick(T0 + P.seal_missing_ms, 3, T0, 7, P)
    assert missing.type == "sealMissing" and missing.evidence == (1,)
    assert m.tick(T0 + 2 * P.seal_missing_ms, 4, T0, 7, P) == []
    m = again(m)
    types = [a.type for a in m.reading(5, T0 + 10**6, seal_body(battery=20, ctr=2),
                                       ctx(plan, place))]
    assert types == ["sealFound", "sealLowBattery"]
    for i, pct in enumerate([19, 21, 18, 25, 29, 20]):  # wobbling under the re-arm level
        assert m.reading(6 + i, T0 + 10**6 + i, seal_body(battery=pct, ctr=3 + i),
                         ctx(plan, place)) == []
    m.reading(20, T0 + 2 * 10**6, seal_body(battery=100, ctr=20), ctx(plan, place))  # replaced
    [low] = m.reading(21, T0 + 2 * 10**6 + 1, seal_body(battery=15, ctr=21), ctx(plan, place))
    assert low.type == "sealLowBattery"
    wrong = m.reading(22, T0 + 2 * 10**6 + 2, seal_body(ctr=22, container_id="C9"),
                      ctx(plan, place))
    assert [(a.type, a.details["reason"]) for a in wrong] == [("sealIdMismatch", "container")]
    assert m.reading(23, T0 + 2 * 10**6 + 3, seal_body(ctr=23, container_id="C9"),
                     ctx(plan, place)) == []


# -- zones --------------------------------------------------------------------------------------


def test_zone_events_become_alerts_with_role_severity_and_closing_ids() -> None:
    """geofences.ZoneMonitor decides (hysteresis, duration); ZoneWatch names and grades."""
    centre = fix(0, 0)
    zones = zones_from_geojson({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [
            centre.lon_e7 / 1e7, centre.lat_e7 / 1e7]},
        "properties": {"id": "yard", "role": "forbidden", "radius_m": 50, "name": "Yard"}}]})
    w = ZoneWatch("gps0")
    again = persisted(lambda: None, lambda x: x.to_dict(), lambda d: ZoneWatch.from_dict("gps0", d))
    track = ([(i, 100) for i in range(5)] + [(5 + i, 0) for i in range(5)] + [(10, 100)]
             + [(11 + i, 10) for i in range(12)] + [(23 + i, 60 + 5 * (i % 3)) for i in range(20)]
             + [(43 + i, 120) for i in range(12)])
    raised: list[Alert] = []
    for seq, (t, north) in enumerate(track, start=1):
        w = again(w)
        raised += w.update(fix(seq, t, north, 0), [("plan:p1", zones)], P)
    # 5 s inside (< 10 s) is nothing; 12 s inside enters; 20 s in the margin band (55-70 m from
    # the centre, 5-20 m outside, under the 30 m margin) changes nothing; 120 m away exits
    assert [(a.type, a.level, a.seq) for a in raised] == [
        ("geofenceEnter", "critical", 22), ("geofenceExit", "warning", 54)]
    enter, leave = raised
    assert leave.opened_seq == 22 and enter.key == "gps0/plan:p1/yard"
    assert enter.details["zone_name"] == "Yard" and leave.details["dwell_ms"] == 32_000
    # a set no longer watched (trip closed) is dropped, without an exit
    w.update(fix(99, 99, 0, 0), [("plan:p1", zones)], P)
    assert w.update(fix(100, 200, 500, 0), [], P) == [] and w.to_dict() == {}


# -- trip ---------------------------------------------------------------------------------------


def test_late_arrival_fires_once_unless_arrived_and_an_amendment_rearms_it() -> None:
    plan = active(FakePlan(FakeZones(), deadline_ms=T0 + 60_000))
    trip = Trip.start(plan, T0, None)
    assert trip.tick(T0 + 59_999, 1, None) == []
    [late] = trip.tick(T0 + 60_000, 2, fix(1, 0))
    assert late.type == "lateArrival" and late.evidence == (1, 7)
    assert trip.tick(T0 + 90_000, 3, None) == []
    same = Trip.start(plan, T0 + 1, Trip.from_dict(json.loads(json.dumps(trip.to_dict()))))
    assert same.late_alert == 2  # same plan, same deadline: stays raised
    later = active(FakePlan(FakeZones(), deadline_ms=T0 + 120_000, digest="d2"))
    amended = Trip.start(later, T0 + 2, same)
    assert amended.late_alert is None and amended.loaded_ms == T0
    amended.arrive(fix(9, 100))
    assert amended.tick(T0 + 200_000, 4, None) == []


def test_corridor_helper_is_real_for_the_vehicle_module() -> None:
    # the vehicle module feeds geofences.DeviationMonitor; a corridor from degrees works there
    c = corridor_from_degrees("c1", 60, [(-56.2, -34.9), (-56.19, -34.9)])
    assert c.distance_m(-349_000_000, -561_950_000) < 1


def test_a_garbled_sensor_is_a_comm_loss_and_readable_again_restores_it() -> None:
    h = SensorHealth("gps0")
    h.status(1, T0, {"event": "sensorGarbled", "since_ms": T0 - 10_000})
    assert h.tick(T0 + P.comm_loss_ms - 1, 2, P, 0) == []
    [loss] = h.tick(T0 + P.comm_loss_ms, 3, P, 0)
    assert loss.type == "commLoss" and loss.details["cause"] == "sensorGarbled"
    [back] = h.status(4, T0 + P.comm_loss_ms + 5_000, {"event": "sensorReadable"})
    assert back.type == "commRestored"
