"""Bad-fix filters: the first defence against false alarms, before anything is signed.

A customs alert built on a multipath jump or a receiver's cold-start garbage is worse than no
alert, so a fix must earn its place in the journal: a real fix type, enough satellites, a sane
HDOP, a time that is neither stale nor in the future, no teleporting, and no repeats. Every
dropped fix is counted by reason; nothing here raises. Pure logic: the gateway clock is passed in.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from edge_agent.sources.gps_fix import GpsFix

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class FixFilterParams:
    """Thresholds; ``None`` switches a check off (a replayed log has no "now" to compare to)."""

    rejected_qualities: frozenset[int] = field(default_factory=lambda: frozenset({7, 8}))
    """GGA quality 7 (manual input) and 8 (simulator mode) are not evidence of where a truck is."""
    min_sats: int = 4
    max_hdop_x10: int = 200
    max_age_ms: int | None = 30_000
    max_future_ms: int | None = 5_000
    max_speed_cmps: int | None = 7_000  # 252 km/h: nothing on a customs road goes faster
    jump_slack_m: float = 50.0
    """Allowance for position noise on top of max speed, so 10 Hz jitter is not a "jump"."""
    reanchor_after: int = 5
    """Consecutive rejected fixes that agree with each other after which we trust them, so one
    bad fix that slipped through cannot make every later good fix look like a jump, and a
    receiver whose clock stepped back (a restart, a leap second learnt late) is not dropped as
    ``time_regress`` for ever."""


def distance_m(lat1_e7: int, lon1_e7: int, lat2_e7: int, lon2_e7: int) -> float:
    """Equirectangular distance: within 0.1 % below 100 km, which is all a jump check needs."""
    lat1, lat2 = math.radians(lat1_e7 / 1e7), math.radians(lat2_e7 / 1e7)
    dlon = math.radians((lon2_e7 - lon1_e7) / 1e7)
    dlon = (dlon + math.pi) % (2 * math.pi) - math.pi  # across the antimeridian
    x = dlon * math.cos((lat1 + lat2) / 2)
    return EARTH_RADIUS_M * math.hypot(x, lat2 - lat1)


class FixFilter:
    """Stateful per-sensor filter: ``check`` returns None to keep a fix, else the reason."""

    def __init__(self, params: FixFilterParams | None = None):
        self.params = params or FixFilterParams()
        self.counts: Counter[str] = Counter()
        self._last: GpsFix | None = None
        self._candidate: GpsFix | None = None
        self._candidate_run = 0

    def check(self, fix: GpsFix, now_ms: int) -> str | None:
        reason = self._reason(fix, now_ms)
        if reason is None:
            self._last = fix
            self._candidate, self._candidate_run = None, 0
        else:
            self.counts[reason] += 1
        return reason

    def quality_reason(self, fix: GpsFix) -> str | None:
        """The checks that say the receiver has no trustworthy fix (vs. one bad sample)."""
        p = self.params
        if fix.fix_quality < 1 or fix.fix_quality in p.rejected_qualities:
            return "invalid"
        if fix.fix_mode is not None and fix.fix_mode < 2:
            return "invalid"
        # unknown (None) is not judged: an RMC-only receiver's fix is as good as its status
        if fix.sats is not None and fix.sats < p.min_sats:
            return "few_satellites"
        if fix.hdop_x10 is not None and fix.hdop_x10 > p.max_hdop_x10:
            return "high_hdop"
        return None

    def _reason(self, fix: GpsFix, now_ms: int) -> str | None:
        p = self.params
        reason = self.quality_reason(fix)
        if reason is not None:
            return reason
        if p.max_age_ms is not None and fix.t_ms < now_ms - p.max_age_ms:
            return "stale"
        if p.max_future_ms is not None and fix.t_ms > now_ms + p.max_future_ms:
            return "future"
        last = self._last
        if last is None:
            return None
        if fix.t_ms == last.t_ms:
            return "duplicate"
        if fix.t_ms < last.t_ms:
            return self._reanchor(fix, "time_regress")
        if not self._plausible(last, fix):
            return self._reanchor(fix, "speed_jump")
        return None

    def _reanchor(self, fix: GpsFix, reason: str) -> str | None:
        """``reason``, unless this is the ``reanchor_after``-th fix in a row that follows on
        from the one before it (later in time, within reach): then the receiver has moved on
        and ``fix`` is the new reference."""
        candidate = self._candidate
        agrees = candidate is not None and candidate.t_ms < fix.t_ms and \
            self._plausible(candidate, fix)
        self._candidate_run = self._candidate_run + 1 if agrees else 1
        self._candidate = fix
        if self._candidate_run >= self.params.reanchor_after:
            self.counts["reanchored" if reason == "speed_jump" else "reanchored_time"] += 1
            return None
        return reason

    def _plausible(self, a: GpsFix, b: GpsFix) -> bool:
        if self.params.max_speed_cmps is None:
            return True
        reach_m = self.params.max_speed_cmps / 100 * (b.t_ms - a.t_ms) / 1000
        return distance_m(a.lat_e7, a.lon_e7, b.lat_e7, b.lon_e7) <= reach_m + \
            self.params.jump_slack_m
