"""GNSS health of one receiver: no-fix periods and jamming indicators, as status events.

The rules decide what customs hears (a 60 s tunnel is not an alert; an hour without a fix is),
but only the gateway sees the receiver's raw behaviour, so it records the facts as signed status
records: when a no-fix period began and ended, and when the receiver's own figures look like
interference. Jamming rarely kills a fix at once: the receiver's error estimates (GST) climb and
the satellites it uses fall away while it still reports positions. Those two indicators are
what we watch; a sudden loss with a strong fix just before is noted as supporting evidence only,
because a tunnel looks the same.

Times are the receiver's when it gives one (deterministic for replayed and simulated data),
else the gateway clock. Pure logic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from edge_agent.sources.gps_fix import GpsFix


@dataclass(frozen=True, slots=True)
class HealthParams:
    lost_after_ms: int = 3_000
    """No usable fix for this long while the receiver talks: a no-fix period has begun."""
    jam_err_cm: int = 5_000
    """Horizontal 1-sigma error (GST) above which a fix that passes the quality filters is
    suspect (a fix that fails them has poor geometry to explain its error)."""
    jam_sats_before: int = 8
    jam_sats_after: int = 4
    jam_window_ms: int = 10_000
    """Satellites in use falling from >= before to <= after within the window, while fixes
    continue: open sky does not lose half its satellites in seconds, a jammer does."""
    clear_after_ms: int = 30_000
    """Healthy fixes for this long clear a jamming suspicion (hysteresis, so it cannot flap)."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    t_ms: int
    body: dict[str, Any]


class GnssHealth:
    def __init__(self, params: HealthParams | None = None):
        self.params = params or HealthParams()
        self._last_good: GpsFix | None = None
        self._no_fix_since: int | None = None
        self._lost = False
        self._jammed_since: int | None = None
        self._healthy_since: int | None = None
        self._sats: deque[tuple[int, int]] = deque()  # (t_ms, sats), sats decreasing

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def jamming(self) -> bool:
        return self._jammed_since is not None

    def no_fix(self, t_ms: int) -> list[StatusEvent]:
        """The receiver reported no fix (or only fixes too poor to use) at t_ms."""
        if self._no_fix_since is None:
            self._no_fix_since = t_ms
        self._healthy_since = None
        if self._lost or t_ms - self._no_fix_since < self.params.lost_after_ms:
            return []
        self._lost = True
        body: dict[str, Any] = {"event": "gnssLost", "since_ms": self._no_fix_since}
        last = self._last_good
        if last is not None:
            last_fix = {"t_ms": last.t_ms, "lat_e7": last.lat_e7, "lon_e7": last.lon_e7}
            if last.sats is not None:
                last_fix["sats"] = last.sats
            if last.hdop_x10 is not None:
                last_fix["hdop_x10"] = last.hdop_x10
            body["last_fix"] = last_fix
            strong = last.sats is not None and last.sats >= self.params.jam_sats_before and \
                self._no_fix_since - last.t_ms <= 2_000
            body["sudden"] = strong
        return [StatusEvent(t_ms, body)]

    def fix(self, fix: GpsFix, usable: bool) -> list[StatusEvent]:
        """A decoded fix; ``usable`` says whether it passed the quality filters."""
        events = self._jamming(fix, usable)
        if not usable:
            return events + self.no_fix(fix.t_ms)
        if self._lost and self._no_fix_since is not None:
            events.append(StatusEvent(fix.t_ms, {
                "event": "gnssRestored", "since_ms": self._no_fix_since,
                "outage_ms": fix.t_ms - self._no_fix_since}))
        self._lost = False
        self._no_fix_since = None
        self._last_good = fix
        return events

    def _jamming(self, fix: GpsFix, usable: bool) -> list[StatusEvent]:
        p = self.params
        # A fix without a satellite count (RMC alone because line noise took its GGA, or gpsd
        # before its first SKY) says nothing about satellites: as "0" it would look like a
        # collapse and raise a jamming suspicion from one damaged line.
        sats = fix.sats
        if sats is not None:  # a monotonic deque: its head is the window's maximum, O(1) per fix
            while self._sats and self._sats[-1][1] <= sats:
                self._sats.pop()
            self._sats.append((fix.t_ms, sats))
        while self._sats and self._sats[0][0] < fix.t_ms - p.jam_window_ms:
            self._sats.popleft()
        indicators: list[str] = []
        err_h_cm = None
        if fix.err_lat_cm is not None and fix.err_lon_cm is not None:
            err_h_cm = round(math.hypot(fix.err_lat_cm, fix.err_lon_cm))
            # Only on a fix good enough to use: a 3-satellite 2D fix with HDOP 10 has an error
            # of hundreds of metres from its geometry alone, jammer or not.
            if usable and err_h_cm > p.jam_err_cm:
                indicators.append("error_estimate")
        most = self._sats[0][1] if self._sats else 0
        if sats is not None and most >= p.jam_sats_before and sats <= p.jam_sats_after:
            indicators.append("satellites_collapse")
        if indicators:
            self._healthy_since = None
            if self._jammed_since is not None:
                return []
            self._jammed_since = fix.t_ms
            body: dict[str, Any] = {"event": "jammingSuspected", "indicators": indicators,
                                    "sats_before": most}
            if sats is not None:
                body["sats"] = sats
            if fix.hdop_x10 is not None:
                body["hdop_x10"] = fix.hdop_x10
            if err_h_cm is not None:
                body["err_h_cm"] = err_h_cm
            return [StatusEvent(fix.t_ms, body)]
        if self._jammed_since is None:
            return []
        if self._healthy_since is None:
            self._healthy_since = fix.t_ms
        if fix.t_ms - self._healthy_since < p.clear_after_ms:
            return []
        since, self._jammed_since, self._healthy_since = self._jammed_since, None, None
        return [StatusEvent(fix.t_ms, {"event": "jammingCleared", "since_ms": since,
                                       "duration_ms": fix.t_ms - since})]
