"""Stops and speed of one vehicle, from its GPS fixes: unauthorizedStop and overspeed.

Both are judged on fix time and built to ignore what a receiver does when nothing happens:

* **Stops.** A stop begins at a fix slower than ``stop_speed_cmps`` and lasts until a fix is
  faster than ``move_speed_cmps``, or both further than ``stop_radius_m`` from where it began
  and faster than ``stop_speed_cmps``. A parked receiver's position noise (5-20 m, with
  multipath outliers beyond 50 m) comes with Doppler jitter of cm/s, so it can neither end a
  stop nor start a new one; a truck driving off does both at once. A stop keeps counting
  through a GNSS outage (the next fix decides). Once a
  stop has lasted the allowed time, ``StopMonitor.update`` hands it to the caller once, which
  decides whether the place authorizes it.
* **Overspeed.** Every fix above the limit for ``overspeed_min_ms`` (one fix at or below it
  cancels a pending episode, so an overtaking manoeuvre is not an alert); after an alert the
  speed must stay ``overspeed_margin_kmh`` below the limit for ``overspeed_rearm_ms`` before
  another can fire, so hovering around the limit gives one alert, not one a minute. Speed is the
  receiver's Doppler speed (``speed_cmps``), not differences of positions, which noise inflates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.rules.alerts import Alert, Evidence
from edge_agent.rules.context import Fix, distance_m
from edge_agent.rules.params import RuleParams, kmh_to_cmps


@dataclass(frozen=True, slots=True)
class LongStop:
    """A stop that has just lasted ``duration_ms`` (>= the limit), at ``anchor``."""

    anchor: Fix
    since_ms: int
    duration_ms: int
    evidence: tuple[int, ...]
    evidence_count: int


class StopMonitor:
    def __init__(self) -> None:
        self.anchor: Fix | None = None
        self.evidence = Evidence()
        self.reported = False

    def update(self, fix: Fix, params: RuleParams, max_stop_ms: int) -> LongStop | None:
        anchor = self.anchor
        speed = fix.speed_cmps  # None: the receiver reports no speed; position decides alone
        if anchor is not None:
            moved = distance_m(anchor.lat_e7, anchor.lon_e7, fix.lat_e7, fix.lon_e7)
            if (speed is not None and speed > params.move_speed_cmps) or (
                    moved > params.stop_radius_m
                    and (speed is None or speed > params.stop_speed_cmps)):
                self.anchor, anchor = None, None  # driving again
        if anchor is None:
            if speed is not None and speed > params.stop_speed_cmps:
                return None
            self.anchor, self.evidence, self.reported = fix, Evidence(), False
            self.evidence.push(fix.seq)
            anchor = fix
        else:
            self.evidence.push(fix.seq)
        duration = fix.t_ms - anchor.t_ms
        if self.reported or duration < max_stop_ms:
            return None
        self.reported = True
        return LongStop(anchor, anchor.t_ms, duration, tuple(self.evidence.seqs),
                        self.evidence.count)

    @property
    def stopped(self) -> bool:
        return self.anchor is not None

    def to_dict(self) -> dict[str, Any]:
        if self.anchor is None:
            return {}
        return {"anchor": self.anchor.to_list(), "evidence": self.evidence.to_dict(),
                "reported": self.reported}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StopMonitor:
        m = cls()
        m.anchor = Fix.from_list(d.get("anchor"))
        m.evidence = Evidence.from_dict(d.get("evidence"))
        m.reported = bool(d.get("reported", False))
        return m


class SpeedMonitor:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.over = Evidence()
        self.over_since_ms: int | None = None
        self.max_cmps = 0
        self.alerted = False
        self.under_since_ms: int | None = None

    def update(self, fix: Fix, params: RuleParams, key: str) -> Alert | None:
        """Overspeed needs a measured speed: a fix without one leaves the monitor as it was."""
        limit = params.max_speed_cmps
        if fix.speed_cmps is None:
            return None
        if fix.speed_cmps > limit:
            self.under_since_ms = None
            if self.over_since_ms is None:
                self.over_since_ms, self.over, self.max_cmps = fix.t_ms, Evidence(), 0
            self.over.push(fix.seq)
            self.max_cmps = max(self.max_cmps, fix.speed_cmps)
            if self.alerted or fix.t_ms - self.over_since_ms < params.overspeed_min_ms:
                return None
            self.alerted = True
            return Alert("overspeed", key, fix.seq, fix.t_ms, tuple(self.over.seqs), {
                "limit_kmh": params.max_speed_kmh,
                "speed_kmh": _kmh(fix.speed_cmps),
                "max_speed_kmh": _kmh(self.max_cmps),
                "over_since_ms": self.over_since_ms,
                "duration_ms": fix.t_ms - self.over_since_ms,
                "evidence_count": self.over.count,
            }, gps=key)
        if not self.alerted:
            self.over_since_ms = None  # a pending episode needs every fix over the limit
            return None
        rearm_below = limit - kmh_to_cmps(params.overspeed_margin_kmh)
        if fix.speed_cmps > rearm_below:
            self.under_since_ms = None
            return None
        if self.under_since_ms is None:
            self.under_since_ms = fix.t_ms
        if fix.t_ms - self.under_since_ms >= params.overspeed_rearm_ms:
            self._reset()  # back to a clean, armed monitor
        return None

    def to_dict(self) -> dict[str, Any]:
        if self.over_since_ms is None and not self.alerted:
            return {}
        return {"over": self.over.to_dict(), "over_since_ms": self.over_since_ms,
                "max_cmps": self.max_cmps, "alerted": self.alerted,
                "under_since_ms": self.under_since_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeedMonitor:
        m = cls()
        m.over = Evidence.from_dict(d.get("over"))
        m.over_since_ms = d.get("over_since_ms")
        m.max_cmps = int(d.get("max_cmps", 0))
        m.alerted = bool(d.get("alerted", False))
        m.under_since_ms = d.get("under_since_ms")
        return m


def _kmh(cmps: int) -> int:
    return round(cmps * 36 / 1000)
