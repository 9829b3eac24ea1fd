"""Restarts: the rules' per-asset state lives in the journal, so a power cut in the middle of
a deviation (or a GNSS outage, a missing seal, a stop) neither re-fires nor forgets anything.

Each test closes the real journal mid-story (everything in memory is lost: decoders, seal
authenticator, rules engine), reopens it and carries on, and compares with the same story told
without interruption.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.gnss import Conditions, Window
from firmware_sim.motion import Stop
from firmware_sim.route import PositionNoise, haversine_m
from firmware_sim.trace import TraceItem, gps_trace, merge, point_along, seal_trace
from tests.helpers.rules_rig import CORRIDOR, T0, Rig, plan_doc, seal, zone_points
from tests.test_rules_scenarios import detour, trip

DURATION_S = 660


def story() -> list[TraceItem]:
    """30 s at the departure office, out to the forbidden yard and back (off the corridor from
    ~113 s, routeDeviation ~173 s, back from ~194 s, routeReturn ~30 s later), seal B out of
    range from 20 s to 380 s (sealMissing ~305 s), parked at the destination from ~282 s with
    a 4-minute GNSS outage from 300 s (gnssLost at 480 s)."""
    yard = zone_points()["yard-x"]
    motion = trip(detour(600, yard), 8.0, [
        Stop(600 + haversine_m(point_along(CORRIDOR, 600), yard), 30)])
    gps = gps_trace(motion, t0_ms=T0, rate_hz=1.0, duration_s=DURATION_S, seed=8,
                    noise=PositionNoise(2.0, seed=8),
                    conditions=Conditions(dropouts=(Window(300, 240),)))
    seals = [seal_trace(seal("SEAL-A"), t0_ms=T0, duration_s=DURATION_S, heartbeat_s=30),
             seal_trace(seal("SEAL-B"), t0_ms=T0, duration_s=DURATION_S, heartbeat_s=30,
                        phase_s=5, silent=[(20.0, 360.0)])]
    return merge(gps, *seals)


def tell(rig: Rig, cuts: list[int], unsaved: list[int] | None = None) -> list[tuple[str, int]]:
    """Feed the story, restarting the agent after each seq count in ``cuts``; ``unsaved`` gets
    how many records each restart left for the rules to evaluate again."""
    items = story()
    start = 0
    for cut in [*cuts, len(items)]:
        rig.feed(items[start:cut])
        if cut < len(items):
            if unsaved is not None:
                unsaved.append(rig.journal.head()[0] - rig.journal.cursor("rules"))
            rig.restart()
        start = cut
    rig.idle(T0 + DURATION_S * 1000)
    return [(a["type"], a["t_ms"]) for a in rig.alerts()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int]]:
    rig = Rig(tmp_path_factory.mktemp("whole"))
    rig.load_plan(plan_doc(), t_ms=T0 - 1000)
    return tell(rig, [])


def test_the_story_raises_each_alert_once(uninterrupted: list[tuple[str, int]]) -> None:
    types = [t for t, _ in uninterrupted]
    assert types == ["geofenceEnter", "geofenceExit", "geofenceEnter", "routeDeviation",
                     "geofenceExit", "routeReturn", "geofenceEnter", "sealMissing", "sealFound",
                     "gnssLost", "gnssRestored"]


def index_at(t_s: float) -> int:
    return next(i for i, item in enumerate(story()) if item.t_ms >= T0 + t_s * 1000)


@pytest.mark.parametrize("cuts_s", [
    [120],            # leaving the corridor: deviation pending
    [180],            # off route: deviation raised, return not started
    [215],            # coming back: return pending
    [130, 360, 500],  # deviation pending, seal missing raised, GNSS lost raised
], ids=["leaving", "off-route", "returning", "three-restarts"])
@pytest.mark.parametrize("saves_only_alerts", [False, True], ids=["saved", "replayed"])
def test_a_restart_keeps_every_open_state(tmp_path: Path, uninterrupted: list[tuple[str, int]],
                                           cuts_s: list[float], saves_only_alerts: bool) -> None:
    """``replayed``: state was last saved with the last alert, so the restart re-evaluates
    every record since (the live engine between checkpoints) and must come out the same."""
    rig = Rig(tmp_path, saves_only_alerts=saves_only_alerts)
    rig.load_plan(plan_doc(), t_ms=T0 - 1000)
    unsaved: list[int] = []
    got = tell(rig, [index_at(t) for t in cuts_s], unsaved)
    assert got == uninterrupted
    if saves_only_alerts:  # each restart had records to evaluate again
        assert all(n > 0 for n in unsaved), unsaved
    else:
        assert unsaved == [0] * len(cuts_s)
    alerts = {a["type"]: a for a in rig.alerts()}
    assert alerts["routeReturn"]["details"]["closes"] == alerts["routeDeviation"]["alert_id"]
    assert alerts["gnssRestored"]["details"]["closes"] == alerts["gnssLost"]["alert_id"]
    # the plan came back from the journal: one planLoaded, every alert tied to it
    loaded = [s for s in rig.journal.read_after(0, 100_000) if s.src == "rules"
              and s.kind == "status"]
    assert len(loaded) == 1
    assert {a["details"]["plan_seq"] for a in rig.alerts()} == {loaded[0].seq}


def test_reloading_the_same_plan_after_a_restart_changes_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    doc = plan_doc()
    rig.load_plan(doc, t_ms=T0 - 1000)
    items = story()
    rig.feed(items[: index_at(180)])
    rig.restart()
    assert rig.engine.plan is not None and rig.engine.plan.plan_id == "plan-0001"
    head = rig.journal.head()[0]
    rig.load_plan(doc)  # the agent reads its plan file again at start
    assert rig.journal.head()[0] == head
    rig.feed(items[index_at(180):])
    types = [a["type"] for a in rig.alerts()]
    assert types.count("routeDeviation") == 1 and types.count("routeReturn") == 1
