"""The zone enter/exit state machine: hysteresis, minimum durations, validity windows, crossings
between sparse fixes, and restart from persisted state."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_geofences_zones import collection, feature, point, square

from geofences import (
    GEOFENCE_ENTER,
    GEOFENCE_EXIT,
    GeofenceError,
    ZoneEvent,
    ZoneIndex,
    ZoneMonitor,
    ZoneParams,
    chord_crossings,
    zones_from_geojson,
)

T0 = 1_767_225_600_000
M_PER_DEG = 111_319.5  # at the equator, east-west; close enough to place fixes


def lon_at(metres_east: float) -> int:
    return round(metres_east / M_PER_DEG * 1e7)


# "box": forbidden square, x in [-111 m, 111 m]; "stop": 50 m circle centred 1 km east.
ZONES = zones_from_geojson(collection(
    feature("box", square(0.0, 0.0, 0.001)),
    feature("stop", point(1000 / M_PER_DEG, 0.0), role="authorized_stop", radius_m=50),
    feature("late", square(0.0, 0.05, 0.001), role="port_area",
            valid_from="2026-01-01T00:00:00Z", valid_until="2026-01-01T00:01:00Z"),
))
BOX_EDGE = 111.3  # metres east of the centre


class Drive:
    """Feeds fixes (metres east of lon 0, lat 0 unless given) at t_ms; collects events."""

    def __init__(self, monitor: ZoneMonitor, t_ms: int = T0) -> None:
        self.m, self.t, self.seq = monitor, t_ms, 0
        self.events: list[ZoneEvent] = []

    def at(self, east_m: float, dt_ms: int = 1000, lat_e7: int = 0) -> list[ZoneEvent]:
        self.seq += 1
        self.t += dt_ms
        ev = self.m.update(self.seq, self.t, lat_e7, lon_at(east_m))
        self.events += ev
        return ev

    def hold(self, east_m: float, seconds: int) -> list[ZoneEvent]:
        out: list[ZoneEvent] = []
        for _ in range(seconds):
            out += self.at(east_m)
        return out


def test_enter_needs_min_inside_then_exit_needs_min_outside() -> None:
    d = Drive(ZoneMonitor(ZONES, ZoneParams(min_inside_ms=10_000, min_outside_ms=10_000)))
    assert d.hold(-500, 5) == []
    first_in = d.seq + 1
    assert d.hold(0, 10) == []  # inside for 9 s of fix time: not yet
    assert d.m.state_of("box") == "entering"
    [enter] = d.at(0)
    assert (enter.type, enter.zone_id, enter.role) == (GEOFENCE_ENTER, "box", "forbidden")
    assert enter.since_ms == T0 + first_in * 1000 and enter.t_ms - enter.since_ms == 10_000
    assert enter.evidence == tuple(range(first_in, d.seq + 1)) and enter.basis == "fixes"
    assert d.m.inside == ("box",)
    first_out = d.seq + 1
    assert d.hold(BOX_EDGE + 100, 10) == []
    [exit_] = d.at(BOX_EDGE + 100)
    assert exit_.type == GEOFENCE_EXIT and exit_.since_ms == T0 + first_out * 1000
    assert exit_.dwell_ms == exit_.since_ms - enter.since_ms
    assert exit_.distance_m == 100 and exit_.evidence_count == 11
    assert d.m.inside == () and d.m.state_of("box") == "outside"


def test_brief_visit_and_gnss_spike_raise_nothing() -> None:
    d = Drive(ZoneMonitor(ZONES))
    d.hold(-500, 3)
    d.hold(0, 5)  # 5 s in, then well out: forgotten
    d.hold(-500, 30)
    d.at(0)  # a single spike into the zone
    d.hold(-500, 30)
    assert d.events == [] and d.m.state_of("box") == "outside"


def test_hysteresis_edge_noise_does_not_flap() -> None:
    """Inside, then a minute of fixes jittering up to 25 m outside the fence (margin 30 m):
    no exit. 40 m out for the minimum duration: one exit. One fix back in cancels a pending
    exit silently."""
    d = Drive(ZoneMonitor(ZONES, ZoneParams(exit_margin_m=30)))
    d.hold(0, 12)
    assert [e.type for e in d.events] == [GEOFENCE_ENTER]
    rng = random.Random(1)
    for _ in range(60):
        d.at(BOX_EDGE + rng.uniform(-20, 25))
    assert len(d.events) == 1 and d.m.state_of("box") == "inside"
    d.hold(BOX_EDGE + 40, 5)
    assert d.m.state_of("box") == "exiting"
    d.at(BOX_EDGE - 10)  # back in: cancel
    assert d.m.state_of("box") == "inside"
    d.hold(BOX_EDGE + 40, 10)
    d.at(BOX_EDGE + 40)
    assert [e.type for e in d.events] == [GEOFENCE_ENTER, GEOFENCE_EXIT]


def test_pending_enter_survives_fixes_in_the_band_but_not_beyond() -> None:
    d = Drive(ZoneMonitor(ZONES, ZoneParams(exit_margin_m=30, min_inside_ms=10_000)))
    d.at(0)
    d.hold(BOX_EDGE + 10, 8)  # in the hysteresis band: neither in nor out
    assert d.m.state_of("box") == "entering"
    d.hold(0, 2)
    assert [e.type for e in d.events] == [GEOFENCE_ENTER]
    assert d.events[0].evidence_count == 3  # only the fixes really inside


def test_zero_durations_fire_at_once_and_circle_zone() -> None:
    d = Drive(ZoneMonitor(ZONES, ZoneParams(min_inside_ms=0, min_outside_ms=0)))
    assert [e.zone_id for e in d.at(1000 - 49)] == ["stop"]
    assert d.hold(1000 + 75, 3) == []  # 25 m out of a 50 m circle: inside the margin
    [ev] = d.at(1000 + 90)
    assert ev.type == GEOFENCE_EXIT and ev.distance_m == 40 and ev.dwell_ms == 4000


def test_per_role_params() -> None:
    """A forbidden area may be confirmed at once while a stop still needs its 10 s."""
    m = ZoneMonitor(ZONES, {"forbidden": ZoneParams(min_inside_ms=0)})
    d = Drive(m)
    assert [e.zone_id for e in d.at(0)] == ["box"]
    assert d.at(1000) == [] and m.state_of("stop") == "entering"


def test_zone_that_lapses_is_exited() -> None:
    """``late`` is valid for the first minute of 2026 only: inside it, the exit follows."""
    lat = round(0.05 * 1e7)
    d = Drive(ZoneMonitor(ZONES, ZoneParams(min_inside_ms=0, min_outside_ms=5_000)), T0 - 1000)
    d.at(0, lat_e7=lat)
    assert [e.zone_id for e in d.events] == ["late"]
    for _ in range(70):
        d.at(0, lat_e7=lat)
    assert [e.type for e in d.events] == [GEOFENCE_ENTER, GEOFENCE_EXIT]
    assert d.events[1].since_ms == T0 + 60_000 and d.events[1].distance_m == -1


def test_out_of_order_and_invalid_fixes_are_ignored() -> None:
    m = ZoneMonitor(ZONES, ZoneParams(min_inside_ms=0))
    assert m.update(1, T0, 0, 0)
    assert m.update(2, T0, 0, lon_at(-500)) == []  # same time
    assert m.update(3, T0 - 5, 0, lon_at(-500)) == []
    assert m.update(4, T0 + 1, 10**10, 0) == []
    assert m.update(5, "x", 0, 0) == []  # type: ignore[arg-type]
    assert (m.ignored_out_of_order, m.ignored_invalid) == (2, 2)


# ------------------------------------------------------------------------------------------
# Sparse fixes


BIG = zones_from_geojson(collection(feature("big", square(0.0, 0.0, 1000 / M_PER_DEG))))


def test_chord_through_a_zone_with_no_way_around_is_a_crossing() -> None:
    """Fixes 100 m either side of a 2 km square, 60 s apart: the chord (2.2 km, 132 km/h) is
    drivable but going round the square (~4.2 km, 250 km/h) is not: it went through."""
    m = ZoneMonitor(BIG, ZoneParams(segment_gap_ms=10_000))
    assert m.update(1, T0, 0, lon_at(-1100)) == []
    enter, exit_ = m.update(2, T0 + 60_000, 0, lon_at(1100))
    assert (enter.type, exit_.type) == (GEOFENCE_ENTER, GEOFENCE_EXIT)
    assert enter.basis == exit_.basis == "segment" and enter.evidence == (1, 2)
    assert enter.since_ms == pytest.approx(T0 + 100 / 2200 * 60_000, abs=50)
    assert exit_.since_ms == pytest.approx(T0 + 2100 / 2200 * 60_000, abs=50)
    assert exit_.dwell_ms == exit_.since_ms - enter.since_ms
    assert enter.distance_m == 100 and m.state_of("big") == "outside"


@pytest.mark.parametrize(
    ("dt_ms", "gap_ms", "why"),
    [
        (150_000, 10_000, "round the square in 150 s is 100 km/h: plausible"),
        (12_000, 10_000, "2.2 km in 12 s is 660 km/h: a GNSS jump, not evidence"),
        (60_000, 120_000, "gaps under segment_gap_ms are not checked"),
    ],
)
def test_chord_crossing_quiet_cases(dt_ms: int, gap_ms: int, why: str) -> None:
    m = ZoneMonitor(BIG, ZoneParams(segment_gap_ms=gap_ms))
    m.update(1, T0, 0, lon_at(-1100))
    assert m.update(2, T0 + dt_ms, 0, lon_at(1100)) == [], why


def test_chord_crossings_geometry() -> None:
    [c] = chord_crossings(BIG, (0, lon_at(-1100)), (0, lon_at(1100)), None)
    assert c.inside_fraction == pytest.approx(2000 / 2200, rel=1e-3)
    assert c.chord_m == pytest.approx(2200, rel=2e-3)
    assert c.detour_m == pytest.approx(2 * (100**2 + 1000**2) ** 0.5 + 2000, rel=5e-3)
    assert chord_crossings(BIG, (0, lon_at(-1100)), (round(1200 / M_PER_DEG * 1e7),
                                                      lon_at(-1100)), None) == []


# ------------------------------------------------------------------------------------------
# Persistence


def _run(zones: ZoneIndex, params: ZoneParams, fixes: list[tuple[int, int, int]],
         split: int | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    m = ZoneMonitor(zones, params)
    out: list[dict[str, Any]] = []
    for i, (t, lat, lon) in enumerate(fixes):
        if i == split:
            m = ZoneMonitor.from_dict(zones, params, json.loads(json.dumps(m.to_dict())))
        out += [e.to_dict() for e in m.update(i + 1, t, lat, lon)]
    return out, m.to_dict()


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(500, 40_000), st.sampled_from(
        [-1500, -300, -120, -100, 0, 50, 105, 120, 140, 960, 1000, 1040, 1060, 1500])),
        min_size=5, max_size=60),
    split=st.integers(0, 60),
)
def test_restart_anywhere_changes_nothing(steps: list[tuple[int, int]], split: int) -> None:
    fixes, t = [], T0
    for dt, east in steps:
        t += dt
        fixes.append((t, 0, lon_at(east)))
    params = ZoneParams(min_inside_ms=5_000, min_outside_ms=5_000, segment_gap_ms=10_000)
    assert _run(ZONES, params, fixes, None) == _run(ZONES, params, fixes, split)


def test_restore_drops_zones_no_longer_fenced_and_rejects_garbage() -> None:
    m = ZoneMonitor(ZONES, ZoneParams(min_inside_ms=0))
    m.update(1, T0, 0, 0)
    state = m.to_dict()
    assert state["zones"] == {"box": {"state": "inside", "entered_ms": T0}}
    other = zones_from_geojson(collection(feature("elsewhere", square(5, 5, 0.01))))
    restored = ZoneMonitor.from_dict(other, None, state)
    assert restored.inside == () and restored.to_dict()["last"]["seq"] == 1
    for bad, msg in [
        ({"v": 9}, "version"),
        ({**state, "zones": []}, "zones must be an object"),
        ({**state, "zones": {"box": {"state": "napping"}}}, "state must be one of"),
        ({**state, "zones": {"box": {"state": "inside"}}}, "do not match"),
        ({**state, "last": {"seq": "1"}}, "last must hold"),
    ]:
        with pytest.raises(GeofenceError, match=msg):
            ZoneMonitor.from_dict(ZONES, None, bad)


def test_params_are_validated() -> None:
    for kwargs in ({"exit_margin_m": -1}, {"min_inside_ms": 1.5}, {"max_speed_cmps": 0},
                   {"evidence_cap": 1}, {"segment_gap_ms": None}):
        with pytest.raises(GeofenceError, match="ZoneParams"):
            ZoneParams(**kwargs)  # type: ignore[arg-type]


def test_evidence_is_capped_first_and_last_kept() -> None:
    d = Drive(ZoneMonitor(ZONES, ZoneParams(min_inside_ms=100_000, evidence_cap=8)))
    d.hold(0, 101)
    [ev] = d.events
    assert ev.evidence_count == 101 and ev.evidence == (1, 2, 3, 4, 98, 99, 100, 101)


def test_multipolygon_gap_is_a_way_around() -> None:
    """Two 1 km squares with a 200 m lane between them, chord through both: the vehicle may have
    used the lane; only the detour around one part counts, so nothing is claimed. The same chord
    across a single square of the same total width (no lane) is a crossing."""
    def sq(cx: float) -> list[list[list[float]]]:
        return square(cx / M_PER_DEG, 0.0, 500 / M_PER_DEG)["coordinates"]
    two = zones_from_geojson(collection(feature(
        "pair", {"type": "MultiPolygon", "coordinates": [sq(-600), sq(600)]})))
    [c] = chord_crossings(two, (0, lon_at(-1200)), (0, lon_at(1200)), None)
    ns = 110_574 / M_PER_DEG  # a degree of latitude is shorter than one of longitude here
    assert c.detour_m == pytest.approx(1000 + (100**2 + (500 * ns) ** 2) ** 0.5
                                       + (1300**2 + (500 * ns) ** 2) ** 0.5, rel=1e-4)
    one = zones_from_geojson(collection(feature("one", square(0.0, 0.0, 1100 / M_PER_DEG))))
    [c1] = chord_crossings(one, (0, lon_at(-1200)), (0, lon_at(1200)), None)
    assert c1.detour_m == pytest.approx(2 * (100**2 + (1100 * ns) ** 2) ** 0.5 + 2200, rel=1e-4)
    for zones, expect in ((two, []), (one, [GEOFENCE_ENTER, GEOFENCE_EXIT])):
        m = ZoneMonitor(zones)  # 80 s: 2.9 km is 131 km/h (drivable), 4.4 km is 198 km/h (not)
        m.update(1, T0, 0, lon_at(-1200))
        assert [e.type for e in m.update(2, T0 + 80_000, 0, lon_at(1200))] == expect
