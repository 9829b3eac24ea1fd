"""One GPS sensor's path from decoded observations to drafts: filters, then health events.

Both GPS sources (serial NMEA and gpsd) decode to GpsFix / NoFix and hand them here, so the
rules downstream see the same readings and the same status events whatever the receiver is
plugged into. The output is in order: a "gnssRestored" status comes before the fix that ended
the outage, so evidence seqs read naturally.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from edge_agent.journal import Draft
from edge_agent.sources.gnss_health import GnssHealth, HealthParams
from edge_agent.sources.gps_filter import FixFilter, FixFilterParams
from edge_agent.sources.gps_fix import GpsFix, NoFix


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class GpsStream:
    """Filters (invalid/stale/future/speed-jump/duplicate) + GNSS health for one GPS sensor."""

    def __init__(self, sensor_id: str, filters: FixFilterParams | None = None,
                 health: HealthParams | None = None, clock: Callable[[], int] | None = None):
        self.sensor_id = sensor_id
        self.filter = FixFilter(filters)
        self.health = GnssHealth(health)
        self.clock = clock or wall_ms
        self.accepted = 0

    @property
    def counts(self) -> Counter[str]:
        """Dropped fixes by reason (``dropped_<reason>``): every filter count is a drop."""
        return Counter({f"dropped_{k}": v for k, v in self.filter.counts.items()})

    def observe(self, obs: GpsFix | NoFix) -> list[Draft]:
        """Drafts to emit for one observation, in order (possibly none)."""
        now = self.clock()
        if isinstance(obs, NoFix):
            events = self.health.no_fix(obs.t_ms if obs.t_ms is not None else now)
            return [self._status(e.t_ms, e.body) for e in events]
        usable = self.filter.quality_reason(obs) is None
        drafts = [self._status(e.t_ms, e.body) for e in self.health.fix(obs, usable)]
        if self.filter.check(obs, now) is None:
            self.accepted += 1
            drafts.append(Draft(obs.t_ms, "gps", self.sensor_id, obs.body()))
        return drafts

    def _status(self, t_ms: int, body: dict[str, object]) -> Draft:
        return Draft(t_ms, "status", self.sensor_id, dict(body))
