"""Bad-fix filters, GNSS health (no-fix periods, jamming) and their joining in GpsStream.

Pure: no ports, no journal. Boundaries are checked on both sides (exactly at a threshold and
one unit past it), and expected times are worked out by hand from the inputs. The receiver
traces come from firmware_sim's GNSS model (dropouts, jamming), encoded by its own NMEA
encoder and decoded by the agent's decoder, so the whole sensor path is exercised.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytest

from edge_agent.journal import Draft
from edge_agent.sources.gnss_health import GnssHealth, HealthParams, StatusEvent
from edge_agent.sources.gps_filter import FixFilter, FixFilterParams
from edge_agent.sources.gps_fix import GpsFix, NoFix
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.nmea import NmeaDecoder
from firmware_sim.gnss import Conditions, FixModel, Jamming, Window
from firmware_sim.motion import Motion
from firmware_sim.nmea import epoch_bytes
from firmware_sim.route import PositionNoise, Route

T0 = 1_790_000_000_000
LAT0, LON0 = -349_040_000, -562_105_000
REPLAY = FixFilterParams(max_age_ms=None, max_future_ms=None)
E7_PER_M = 1e7 * 180 / (math.pi * 6_371_008.8)
"""Degrees x 1e7 per metre along a meridian (mean Earth radius), where distance is exact."""


def north(m: float) -> int:
    return LAT0 + round(m * E7_PER_M)


def fix(t_ms: int, lat: int = LAT0, *, sats: int | None = 10, hdop: int | None = 9,
        quality: int = 1,
        mode: int | None = 3, err: tuple[int, int] | None = None) -> GpsFix:
    return GpsFix(t_ms=t_ms, lat_e7=lat, lon_e7=LON0, fix_quality=quality, sats=sats,
                  hdop_x10=hdop, alt_cm=3000, speed_cmps=0, course_cdeg=0, fix_mode=mode,
                  err_lat_cm=err[0] if err else None, err_lon_cm=err[1] if err else None)


# --- FixFilter: each reason at its boundary --------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sats": 4}, None),  # exactly min_sats
        ({"sats": 3}, "few_satellites"),
        ({"hdop": 200}, None),  # exactly max_hdop_x10 (20.0)
        ({"hdop": 201}, "high_hdop"),
        ({"quality": 0}, "invalid"),
        ({"quality": 7}, "invalid"),  # manual input
        ({"quality": 8}, "invalid"),  # simulator mode
        ({"quality": 2}, None),  # DGPS
        ({"quality": 6}, None),  # dead reckoning is a fix, if a poor one
        ({"mode": 1}, "invalid"),  # GSA "no fix"
        ({"mode": 2}, None),
        ({"mode": None}, None),  # no GSA: nothing to say
        # unknown is not zero: an RMC-only receiver reports neither, and is not judged on them
        ({"sats": None}, None),
        ({"hdop": None}, None),
        ({"sats": None, "hdop": None}, None),
        ({"sats": None, "hdop": 201}, "high_hdop"),  # what is known still counts
        ({"sats": 3, "hdop": None}, "few_satellites"),
        ({"sats": None, "quality": 8}, "invalid"),
    ],
)
def test_quality_checks_at_their_boundaries(changes: dict[str, Any], reason: str | None) -> None:
    flt = FixFilter(FixFilterParams())
    assert flt.check(fix(T0, **changes), now_ms=T0) == reason
    assert flt.counts == ({reason: 1} if reason else {})


def test_age_and_future_limits_at_the_edge() -> None:
    p = FixFilterParams(max_age_ms=30_000, max_future_ms=5_000)
    now = T0
    cases = [(now - 30_000, None), (now - 30_001, "stale"),
             (now + 5_000, None), (now + 5_001, "future")]
    for t_ms, reason in cases:
        assert FixFilter(p).check(fix(t_ms), now_ms=now) == reason, t_ms


def test_none_switches_a_check_off() -> None:
    now = T0
    lenient = FixFilterParams(max_age_ms=None, max_future_ms=None, max_speed_cmps=None)
    flt = FixFilter(lenient)
    assert flt.check(fix(now - 86_400_000), now_ms=now) is None  # a day old
    assert flt.check(fix(now + 86_400_000), now_ms=now) is None  # a day ahead
    # 100 km in one second
    assert flt.check(fix(now + 86_401_000, north(100_000)), now_ms=now) is None
    assert flt.counts == {}
    strict = FixFilter(FixFilterParams())
    assert strict.check(fix(now - 86_400_000), now_ms=now) == "stale"
    assert strict.check(fix(now + 86_400_000), now_ms=now) == "future"


def test_duplicate_and_time_regress() -> None:
    flt = FixFilter(REPLAY)
    assert flt.check(fix(T0 + 1000), T0) is None
    assert flt.check(fix(T0 + 1000), T0) == "duplicate"
    # same time, another place: still the same epoch again, not a jump
    assert flt.check(fix(T0 + 1000, north(5_000)), T0) == "duplicate"
    assert flt.check(fix(T0 + 999), T0) == "time_regress"
    # rejections do not move the reference: the next genuine fix is compared with T0 + 1000
    assert flt.check(fix(T0 + 1001), T0) is None
    assert flt.counts == {"duplicate": 2, "time_regress": 1}


@pytest.mark.parametrize(
    ("dt_ms", "slack_m", "reach_m"),
    [
        (1000, 50.0, 120.0),  # 70 m/s x 1 s + 50 m of slack
        (2000, 50.0, 190.0),  # 70 m/s x 2 s + 50 m
        (1000, 0.0, 70.0),  # no slack
        (100, 50.0, 57.0),  # 10 Hz: 7 m + 50 m, so jitter is not a jump
    ],
)
def test_speed_jump_boundary_with_slack(dt_ms: int, slack_m: float, reach_m: float) -> None:
    p = FixFilterParams(max_age_ms=None, max_future_ms=None, max_speed_cmps=7_000,
                        jump_slack_m=slack_m)
    inside = math.floor(reach_m * E7_PER_M)  # just under reach_m (1e-7 deg is 1.1 cm)
    for d_e7, reason in ((inside, None), (inside + 1, "speed_jump")):
        flt = FixFilter(p)
        assert flt.check(fix(T0), T0) is None
        assert flt.check(fix(T0 + dt_ms, LAT0 + d_e7), T0) == reason, (d_e7, reason)
        # southwards too (the distance is symmetric)
        flt = FixFilter(p)
        assert flt.check(fix(T0), T0) is None
        assert flt.check(fix(T0 + dt_ms, LAT0 - d_e7), T0) == reason


def _truth(k: int) -> GpsFix:
    """A truck driving north at 20 m/s, one fix a second."""
    return fix(T0 + k * 1000, north(20 * k))


def test_a_bad_first_fix_does_not_lock_out_the_truth() -> None:
    flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=5))
    bogus = fix(T0 - 1000, north(10_000))  # 10 km off, accepted: nothing to compare with
    assert flt.check(bogus, T0) is None
    verdicts = [flt.check(_truth(k), T0) for k in range(10)]
    # the truth agrees with itself: the 5th consistent fix in a row re-anchors the filter
    assert verdicts == ["speed_jump"] * 4 + [None] * 6
    assert flt.counts == {"speed_jump": 4, "reanchored": 1}


def test_reanchor_after_is_the_length_of_the_consistent_run() -> None:
    for n in (2, 3, 8):
        flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=n))
        flt.check(fix(T0 - 1000, north(10_000)), T0)
        verdicts = [flt.check(_truth(k), T0) for k in range(n + 2)]
        assert verdicts == ["speed_jump"] * (n - 1) + [None] * 3, n


def test_a_single_outlier_is_dropped_and_never_becomes_the_anchor() -> None:
    flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=3))
    verdicts = []
    for k in range(20):
        verdicts.append(flt.check(_truth(2 * k), T0))
        # multipath: the same wrong place every other second (consistent with itself), but
        # each genuine fix in between breaks the run, so it is never trusted
        verdicts.append(flt.check(fix(T0 + (2 * k + 1) * 1000, north(5_000)), T0))
    assert verdicts == [None, "speed_jump"] * 20
    assert flt.counts == {"speed_jump": 20}


def test_inconsistent_outliers_never_reanchor() -> None:
    flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=3))
    assert flt.check(_truth(0), T0) is None
    # each 5 km from the last one: they do not agree with each other
    scattered = [fix(T0 + k * 1000, north(5_000 * (k % 2 + 1) * (-1) ** k)) for k in range(1, 12)]
    assert [flt.check(f, T0) for f in scattered] == ["speed_jump"] * 11
    assert flt.check(_truth(12), T0) is None  # the truth is still the reference


def test_a_receiver_whose_clock_steps_back_is_reanchored_not_dropped_for_ever() -> None:
    # A receiver restart: the clock comes back 30 min early (RTC, or time before the
    # almanac's leap seconds) and runs on from there, the truck still driving north.
    flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=5))
    assert [flt.check(_truth(k), T0) for k in range(3)] == [None] * 3
    back = 1_800_000
    after = [fix(T0 - back + k * 1000, north(20 * (3 + k))) for k in range(8)]
    # four in a row that follow on from each other are still dropped; the fifth re-anchors
    assert [flt.check(f, T0) for f in after] == ["time_regress"] * 4 + [None] * 4
    assert flt.counts == {"time_regress": 4, "reanchored_time": 1}


def test_reanchoring_on_time_needs_the_run_to_agree() -> None:
    flt = FixFilter(FixFilterParams(max_age_ms=None, max_future_ms=None, reanchor_after=3))
    assert flt.check(_truth(10), T0) is None
    # stepped back, but each 5 km from the one before: never a run
    jumpy = [fix(T0 + k * 1000, north(5_000 * (k % 2))) for k in range(6)]
    assert [flt.check(f, T0) for f in jumpy] == ["time_regress"] * 6
    # stepped back, and not moving forward in time: never a run either
    stuck = [fix(T0 + 1000 - k * 100, north(200)) for k in range(6)]
    assert [flt.check(f, T0) for f in stuck] == ["time_regress"] * 6
    # a single step back between good fixes costs that fix only
    assert flt.check(fix(T0 + 9_000, north(200)), T0) == "time_regress"
    assert flt.check(_truth(11), T0) is None
    assert flt.counts == {"time_regress": 13}


def test_a_run_of_old_times_is_still_stale_when_there_is_a_now() -> None:
    # live: the wall clock is the judge, so a clock stepped back minutes stays rejected
    flt = FixFilter(FixFilterParams(reanchor_after=2))
    assert flt.check(_truth(0), T0) is None
    old = [fix(T0 - 600_000 + k * 1000, north(20 * k)) for k in range(4)]
    assert [flt.check(f, T0) for f in old] == ["stale"] * 4


# --- GnssHealth: no-fix periods --------------------------------------------------------------


def _events(evts: Iterable[StatusEvent]) -> list[str]:
    return [e.body["event"] for e in evts]


def test_gnss_lost_once_after_lost_after_ms_not_before() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    last = fix(T0, sats=9, hdop=11)
    assert h.fix(last, usable=True) == []
    assert h.no_fix(T0 + 1_000) == []
    assert h.no_fix(T0 + 3_999) == []  # 2999 ms of no fix
    (lost,) = h.no_fix(T0 + 4_000)  # exactly 3000 ms
    assert lost.t_ms == T0 + 4_000
    assert lost.body == {
        "event": "gnssLost", "since_ms": T0 + 1_000,
        "last_fix": {"t_ms": T0, "lat_e7": LAT0, "lon_e7": LON0, "sats": 9, "hdop_x10": 11},
        # 9 satellites (>= jam_sats_before) 1 s before the loss: abrupt, for the rules to weigh
        "sudden": True,
    }  # fmt: skip
    assert h.lost
    assert [h.no_fix(T0 + t) for t in range(5_000, 60_000, 1_000)] == [[]] * 55


def test_gnss_lost_without_any_earlier_fix() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    assert h.no_fix(T0) == [] and h.no_fix(T0 + 2_000) == []
    (lost,) = h.no_fix(T0 + 3_000)
    assert lost.body == {"event": "gnssLost", "since_ms": T0}


def test_gradual_loss_is_not_sudden() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    h.fix(fix(T0, sats=5), usable=True)  # few satellites before the loss
    h.no_fix(T0 + 1_000)
    assert h.no_fix(T0 + 4_000)[0].body["sudden"] is False
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    h.fix(fix(T0, sats=12), usable=True)
    h.no_fix(T0 + 2_001)  # strong fix, but more than 2 s before the no-fix period began
    assert h.no_fix(T0 + 5_001)[0].body["sudden"] is False


def test_gnss_restored_with_outage_duration() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    h.fix(fix(T0), usable=True)
    for t in range(1_000, 61_000, 1_000):
        h.no_fix(T0 + t)
    (restored,) = h.fix(fix(T0 + 61_000), usable=True)
    assert restored == StatusEvent(T0 + 61_000, {
        "event": "gnssRestored", "since_ms": T0 + 1_000, "outage_ms": 60_000})
    assert not h.lost
    assert h.fix(fix(T0 + 62_000), usable=True) == []


def test_short_gaps_never_make_an_outage() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    out: list[StatusEvent] = []
    for k in range(100):
        t = T0 + k * 3_000
        out += h.no_fix(t)
        out += h.no_fix(t + 2_999)  # 2999 ms without a fix, then a fix: the clock restarts
        out += h.fix(fix(t + 2_999 + 1), usable=True)
    assert out == []


def test_unusable_fixes_count_as_no_fix() -> None:
    h = GnssHealth(HealthParams(lost_after_ms=3_000))
    out = [e for k in range(5) for e in h.fix(fix(T0 + k * 1_000, sats=3), usable=False)]
    assert _events(out) == ["gnssLost"]
    assert out[0].t_ms == T0 + 3_000 and out[0].body["since_ms"] == T0


def test_a_60s_tunnel_gives_one_lost_and_one_restored() -> None:
    h = GnssHealth()
    out: list[StatusEvent] = []
    for k in range(1_200):  # 2 minutes at 10 Hz; no fix from 30 s to 90 s
        t = T0 + k * 100
        out += h.no_fix(t) if 300 <= k < 900 else h.fix(fix(t, north(k)), usable=True)
    assert _events(out) == ["gnssLost", "gnssRestored"]
    lost, restored = out
    assert (lost.t_ms, lost.body["since_ms"]) == (T0 + 33_000, T0 + 30_000)
    assert restored.t_ms == T0 + 90_000 and restored.body["outage_ms"] == 60_000


# --- GnssHealth: jamming indicators ----------------------------------------------------------


def test_gst_error_rise_boundary() -> None:
    # 30 m and 40 m: exactly 50 m horizontal (3-4-5), not above jam_err_cm = 5000
    h = GnssHealth(HealthParams(jam_err_cm=5_000))
    assert h.fix(fix(T0, err=(3_000, 4_000)), usable=True) == []
    (ev,) = h.fix(fix(T0 + 1_000, err=(3_000, 4_001)), usable=True)  # 50.008 m
    assert ev.t_ms == T0 + 1_000
    assert ev.body["event"] == "jammingSuspected"
    assert ev.body["indicators"] == ["error_estimate"]
    assert ev.body["err_h_cm"] == 5_001
    assert h.jamming


def test_jamming_suspected_once_while_it_lasts() -> None:
    h = GnssHealth()
    out = [e for k in range(300) for e in h.fix(fix(T0 + k * 1_000, err=(9_000, 9_000)), True)]
    assert _events(out) == ["jammingSuspected"]


@pytest.mark.parametrize(
    ("before", "after", "gap_ms", "suspected"),
    [
        (8, 4, 5_000, True),  # jam_sats_before -> jam_sats_after
        (12, 4, 10_000, True),  # at the edge of the 10 s window
        (12, 4, 10_001, False),  # just outside it
        (7, 4, 5_000, False),  # never had enough satellites to lose
        (8, 5, 5_000, False),  # did not fall far enough
    ],
)
def test_satellite_collapse_boundaries(before: int, after: int, gap_ms: int,
                                       suspected: bool) -> None:
    h = GnssHealth(HealthParams(jam_sats_before=8, jam_sats_after=4, jam_window_ms=10_000))
    assert h.fix(fix(T0, sats=before), usable=True) == []
    out = h.fix(fix(T0 + gap_ms, sats=after), usable=True)
    if suspected:
        (ev,) = out
        assert ev.body == {"event": "jammingSuspected", "indicators": ["satellites_collapse"],
                           "sats": after, "sats_before": before, "hdop_x10": 9}
    else:
        assert out == []


def test_unknown_satellites_are_not_a_collapse() -> None:
    # An RMC-only fix (its GGA lost to line noise) reports no satellite count: that is not
    # evidence that satellites fell away.
    h = GnssHealth()
    out = [e for k in range(10) for e in h.fix(fix(T0 + k * 1_000, sats=12), True)]
    out += h.fix(fix(T0 + 10_000, sats=None, hdop=None), usable=False)
    out += h.fix(fix(T0 + 11_000, sats=12), usable=True)
    assert out == []


def test_jamming_cleared_only_after_clear_after_ms_of_healthy_fixes() -> None:
    h = GnssHealth(HealthParams(clear_after_ms=30_000))
    assert _events(h.fix(fix(T0, err=(9_000, 9_000)), True)) == ["jammingSuspected"]
    assert h.fix(fix(T0 + 1_000, err=(9_000, 9_000)), True) == []  # still jammed
    out = [e for k in range(2, 32) for e in h.fix(fix(T0 + k * 1_000, err=(50, 50)), True)]
    assert out == []  # healthy from T0 + 2 s to T0 + 31 s: 29 s
    (cleared,) = h.fix(fix(T0 + 32_000, err=(50, 50)), True)  # exactly 30 s of healthy fixes
    assert cleared == StatusEvent(T0 + 32_000, {
        "event": "jammingCleared", "since_ms": T0, "duration_ms": 32_000})
    assert not h.jamming
    assert h.fix(fix(T0 + 33_000, err=(50, 50)), True) == []


def test_weak_geometry_is_not_jamming_but_the_same_error_on_a_good_fix_is() -> None:
    # 3 satellites, 2D, HDOP 10: a GST error of ~350 m is what that geometry gives. The fix
    # fails the quality filter, so it is an outage (gnssLost after 3 s), not a jammer.
    weak = [fix(T0 + k * 1000, sats=3, hdop=100, mode=2, err=(25_000, 25_000))
            for k in range(5)]
    stream = GpsStream("gps0", REPLAY, clock=lambda: T0)
    drafts = [d for f in weak for d in stream.observe(f)]
    assert _statuses(drafts) == [("gnssLost", 3_000)]
    assert stream.counts == {"dropped_few_satellites": 5}
    # the same error estimate on fixes that pass the filter: suspicious
    good = [fix(T0 + k * 1000, sats=9, hdop=9, err=(25_000, 25_000)) for k in range(5, 7)]
    drafts = [d for f in good for d in stream.observe(f)]
    assert _statuses(drafts) == [("jammingSuspected", 5_000), ("gnssRestored", 5_000)]
    suspected = next(d for d in drafts if d.body.get("event") == "jammingSuspected")
    assert suspected.body["indicators"] == ["error_estimate"]
    assert suspected.body["err_h_cm"] == 35_355  # hypot(250 m, 250 m)


def test_a_satellite_collapse_counts_even_on_a_fix_too_poor_to_use() -> None:
    # losing satellites is a signal indicator, not geometry: 10 -> 3 in 2 s is suspicious
    # although the 3-satellite fix itself is dropped
    h = GnssHealth()
    assert h.fix(fix(T0, sats=10), usable=True) == []
    out = h.fix(fix(T0 + 2_000, sats=3, hdop=100, mode=2, err=(25_000, 25_000)), usable=False)
    (ev,) = out
    assert ev.body["indicators"] == ["satellites_collapse"]  # the error alone would not be


def test_jamming_does_not_flap_on_alternating_fixes() -> None:
    h = GnssHealth(HealthParams(clear_after_ms=30_000))
    out: list[StatusEvent] = []
    for k in range(600):  # 10 minutes of good, bad, good, bad...
        err = (9_000, 9_000) if k % 2 else (50, 50)
        out += h.fix(fix(T0 + k * 1_000, err=err), True)
    assert _events(out) == ["jammingSuspected"]
    # a no-fix report breaks a healthy period just like a bad fix
    out = [e for k in range(600, 625) for e in h.fix(fix(T0 + k * 1_000), True)]
    out += h.no_fix(T0 + 625_000)
    out += [e for k in range(626, 655) for e in h.fix(fix(T0 + k * 1_000), True)]
    assert out == []
    assert _events(h.fix(fix(T0 + 656_000), True)) == ["jammingCleared"]  # 30 s after 626


# --- GpsStream --------------------------------------------------------------------------------


def _kinds(drafts: list[Draft]) -> list[str]:
    return [d.body["event"] if d.kind == "status" else d.kind for d in drafts]


def test_stream_puts_restored_before_the_fix_that_ended_the_outage() -> None:
    stream = GpsStream("gps7", REPLAY, clock=lambda: T0)
    out: list[Draft] = []
    out += stream.observe(fix(T0))
    for t in range(1_000, 10_000, 1_000):
        out += stream.observe(NoFix(T0 + t))
    back = fix(T0 + 10_000, north(100))
    out += stream.observe(back)
    assert _kinds(out) == ["gps", "gnssLost", "gnssRestored", "gps"]
    restored, reading = out[2], out[3]
    assert restored.t_ms == reading.t_ms == T0 + 10_000
    assert (restored.kind, restored.src, reading.src) == ("status", "gps7", "gps7")
    assert reading.body == back.body() and "t_ms" not in reading.body
    assert stream.accepted == 2


def test_a_dropped_fix_produces_no_reading() -> None:
    now = T0
    stream = GpsStream("gps0", FixFilterParams(), clock=lambda: now)
    assert _kinds(stream.observe(fix(now))) == ["gps"]
    assert stream.observe(fix(now)) == []  # duplicate
    assert stream.observe(fix(now - 60_000)) == []  # stale (and a time regress)
    assert stream.observe(fix(now + 1_000, north(50_000))) == []  # 50 km in a second
    assert stream.observe(fix(now + 2_000, hdop=250)) == []  # HDOP 25
    assert stream.counts == {"dropped_duplicate": 1, "dropped_stale": 1,
                             "dropped_speed_jump": 1, "dropped_high_hdop": 1}
    assert stream.accepted == 1


def test_jamming_status_comes_before_its_reading() -> None:
    stream = GpsStream("gps0", REPLAY, clock=lambda: T0)
    out = stream.observe(fix(T0, err=(9_000, 9_000)))
    assert _kinds(out) == ["jammingSuspected", "gps"]


def test_no_fix_without_a_time_is_timed_by_the_gateway_clock() -> None:
    now = [T0]
    stream = GpsStream("gps0", REPLAY, clock=lambda: now[0])
    out: list[Draft] = []
    for k in range(5):
        now[0] = T0 + k * 1_000
        out += stream.observe(NoFix(None))
    assert [(d.body["event"], d.t_ms, d.body["since_ms"]) for d in out] == [
        ("gnssLost", T0 + 3_000, T0)]


# --- receiver traces from the simulator -------------------------------------------------------

ROUTE = Route([(-56.2, -34.9), (-56.2, -34.8)], 10.0)  # 11 km north at 10 m/s


def _trace(conditions: Conditions, rate_hz: float, seconds: float,
           noise: PositionNoise | None = None) -> list[GpsFix | NoFix]:
    """What the agent's decoder makes of the simulated receiver's sentences."""
    model = FixModel(Motion(ROUTE), noise, conditions, seed=3)
    dec = NmeaDecoder()
    out: list[GpsFix | NoFix] = []
    for k in range(round(seconds * rate_hz) + 1):
        t_ms = round(k * 1000 / rate_hz)
        for line in epoch_bytes(model.fix(t_ms / 1000, T0 + t_ms)).splitlines():
            out += dec.feed(line)
    out += dec.flush()
    assert dec.counts["internal_error"] == 0
    return out


def _run(obs: list[GpsFix | NoFix], health: HealthParams | None = None) -> list[Draft]:
    stream = GpsStream("gps0", REPLAY, health, clock=lambda: T0)
    return [d for o in obs for d in stream.observe(o)]


def _statuses(drafts: list[Draft]) -> list[tuple[str, int]]:
    return [(d.body["event"], d.t_ms - T0) for d in drafts if d.kind == "status"]


def test_simulated_60s_tunnel() -> None:
    obs = _trace(Conditions(dropouts=(Window(20.0, 60.0),)), 1.0, 120.0)
    # the receiver keeps talking in the tunnel: 60 no-fix epochs at 20..79 s, with times
    nofix = [o for o in obs if isinstance(o, NoFix)]
    assert [o.t_ms for o in nofix] == [T0 + s * 1000 for s in range(20, 80)]
    drafts = _run(obs)
    assert _statuses(drafts) == [("gnssLost", 23_000), ("gnssRestored", 80_000)]
    lost, restored = (d for d in drafts if d.kind == "status")
    assert lost.body["since_ms"] == T0 + 20_000
    assert lost.body["last_fix"]["t_ms"] == T0 + 19_000 and lost.body["sudden"] is True
    assert restored.body == {"event": "gnssRestored", "since_ms": T0 + 20_000,
                             "outage_ms": 60_000}
    # restored right before the reading of the fix that ended the outage
    i = drafts.index(restored)
    assert drafts[i + 1].kind == "gps" and drafts[i + 1].t_ms == T0 + 80_000
    # every fix outside the tunnel is a reading (0..19 s and 80..120 s)
    assert [d.t_ms - T0 for d in drafts if d.kind == "gps"] == [
        s * 1000 for s in [*range(20), *range(80, 121)]]


def test_simulated_jamming_seen_as_a_satellite_collapse() -> None:
    # 40 s episode from 20 s: 10 s ramp (satellites 12 -> 4), 20 s no fix, 10 s recovery.
    # No position noise, so the GST errors stay small (<= 21 x 0.3 m): only satellites tell.
    obs = _trace(Conditions(jamming=(Jamming(Window(20.0, 40.0), 10.0),)), 2.0, 100.0)
    drafts = _run(obs)
    assert _statuses(drafts) == [
        # at 29.5 s the ramp is at 0.95: round(12 - 0.95 * 8) = 4 satellites, 12 at 20.0 s
        ("jammingSuspected", 29_500),
        # no fix from 30.0 s (ramp complete) to 50.0 s (10 s left: still severity 1)
        ("gnssLost", 33_000),
        ("gnssRestored", 50_500),
        # healthy from 50.5 s: the satellites climb back, which is no collapse
        ("jammingCleared", 80_500),
    ]
    suspected = next(d for d in drafts if d.body.get("event") == "jammingSuspected")
    assert suspected.body["indicators"] == ["satellites_collapse"]
    assert (suspected.body["sats"], suspected.body["sats_before"]) == (4, 12)
    restored = next(d for d in drafts if d.body.get("event") == "gnssRestored")
    assert restored.body["outage_ms"] == 20_500
    cleared = next(d for d in drafts if d.body.get("event") == "jammingCleared")
    assert cleared.body["since_ms"] == T0 + 29_500


def test_simulated_jamming_seen_in_the_gst_error_estimates() -> None:
    # With 2.5 m of position noise the GST sigmas are 2.5 m x (1 + 20 s^2) at ramp level s.
    # Over 50 m horizontally (sigma > 35.36 m on each axis) needs s > 0.81: at 1 Hz the
    # first such epoch is 29 s (s = 0.9: 2.5 x 17.2 = 43.00 m, hypot = 6081 cm), when the
    # satellites are still round(12 - 7.2) = 5, so this indicator alone fires.
    obs = _trace(Conditions(jamming=(Jamming(Window(20.0, 40.0), 10.0),)), 1.0, 100.0,
                 PositionNoise(2.5, seed=5))
    drafts = _run(obs)
    assert _statuses(drafts) == [
        ("jammingSuspected", 29_000),
        ("gnssLost", 33_000),  # no fix from 30 s
        ("gnssRestored", 51_000),  # 50 s still has 10 s of episode left: severity 1
        # 51 s is at s = 0.9 again (error too high); 52 s at s = 0.8 (2.5 x 13.8 = 34.5 m,
        # 4879 cm) is the first healthy fix, so the all-clear is 30 s later
        ("jammingCleared", 82_000),
    ]
    suspected = next(d for d in drafts if d.body.get("event") == "jammingSuspected")
    assert suspected.body["indicators"] == ["error_estimate"]
    assert suspected.body["err_h_cm"] == 6_081


def test_gga_lost_to_line_noise_is_not_jamming() -> None:
    # A GGA + RMC receiver (the most common set-up); one GGA is hit by noise, so that epoch
    # is decoded from RMC alone, with no satellite count: unknown, which is neither a
    # collapse nor a reason to drop a fix the RMC vouches for.
    model = FixModel(Motion(ROUTE), None, Conditions(), seed=3)
    dec = NmeaDecoder()
    obs: list[GpsFix | NoFix] = []
    for k in range(30):
        text = epoch_bytes(model.fix(k, T0 + k * 1000), sentences=("GGA", "RMC"))
        gga, rmc = text.splitlines()
        if k == 15:
            gga = gga.replace(b"*", b"#")  # checksum gone: dropped
        obs += dec.feed(gga) + dec.feed(rmc)
    obs += dec.flush()
    blind = [o for o in obs if isinstance(o, GpsFix) and o.sats is None]
    assert [o.t_ms for o in blind] == [T0 + 15_000]
    stream = GpsStream("gps0", REPLAY, clock=lambda: T0)
    drafts = [d for o in obs for d in stream.observe(o)]
    assert _statuses(drafts) == []
    assert stream.counts == {}
    readings = [d for d in drafts if d.kind == "gps"]
    assert len(readings) == 30
    assert "sats" not in readings[15].body and "hdop_x10" not in readings[15].body
    assert readings[14].body["sats"] > 0
