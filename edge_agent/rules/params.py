"""Thresholds of every rule, with the reason for each default, and a plan's overrides.

All times are milliseconds of record time (``t_ms``), never the wall clock, so replaying a
journal gives the same alerts as living through it. A plan may override some of them in its
``limits`` (customs set the speed limit and the allowed stop for a given road); the override
keys are listed in ``LIMIT_KEYS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geofences import DeviationParams


class RuleParamsError(ValueError):
    """A threshold or a plan limit is not usable (names the field and the value)."""


@dataclass(frozen=True, slots=True)
class RuleParams:
    # -- route corridor: geofences.DeviationParams (hysteresis, minimum duration, sparse fixes)
    deviation: DeviationParams = dataclasses.field(default_factory=DeviationParams)
    # -- zones
    zone_margin_m: int = 30
    """Hysteresis for zones: the distance beyond a zone's edge needed to leave it (the zone
    monitor), and how close a fix must be to count as in a zone when placing a seal opening or
    a stop. Consumer GNSS wanders 5-30 m near buildings, cranes and container stacks."""
    zone_min_duration_ms: int = 10_000
    """Agreeing fixes needed before geofenceEnter (or Exit): multipath spikes last seconds; a
    drive through a zone's corner does not count."""
    # -- motion
    max_speed_kmh: int = 90
    """Default truck limit on Mercosur highways; plans override it per road."""
    overspeed_min_ms: int = 30_000
    """Overtaking briefly above the limit is not worth a customs alert; half a minute is."""
    overspeed_margin_kmh: int = 10
    overspeed_rearm_ms: int = 30_000
    """After an overspeed alert, speed must stay below limit - margin this long to re-arm."""
    stop_speed_cmps: int = 139
    """5 km/h: below it the truck may be stopping. A parked receiver's Doppler jitter is a few
    cm/s, far below."""
    move_speed_cmps: int = 300
    """11 km/h: above it the truck is moving again (hysteresis against a creeping queue)."""
    stop_radius_m: int = 50
    """A stop ends when a fix is this far from where it began *and* not slow (position noise of
    a parked receiver comes with near-zero Doppler speed, a truck driving off does not)."""
    max_stop_ms: int = 600_000
    """Ten minutes outside an authorized stop; plans override it (``max_stop_s``)."""
    # -- seals
    seal_missing_ms: int = 300_000
    """Five missed 60 s heartbeats: radio fading for one or two is normal."""
    low_battery_pct: int = 20
    low_battery_rearm_pct: int = 30
    """A battery must climb back to this (replaced) before a new low-battery alert."""
    position_max_age_ms: int = 60_000
    """A vehicle fix older than this does not say where a seal event happened."""
    # -- the gateway's own sensors
    gnss_lost_ms: int = 180_000
    """Tunnels and multi-storey parks black out GNSS for a minute or two; three is not normal."""
    comm_loss_ms: int = 120_000
    """A USB reset or a reader re-plugged comes back in seconds; two minutes is a real loss."""
    blackout_ms: int = 60_000
    """A jump in record time longer than this means the agent itself was not running (the
    heartbeat writes a record every few seconds while it is): timers then restart from the
    first record after the gap, so nobody is blamed for the agent's own silence."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name == "deviation":
                continue
            value = getattr(self, f.name)
            if type(value) is not int or value < 0:
                raise RuleParamsError(f"RuleParams.{f.name} must be an int >= 0, got {value!r}")
        if self.move_speed_cmps < self.stop_speed_cmps:
            raise RuleParamsError("RuleParams.move_speed_cmps must be >= stop_speed_cmps")
        if self.low_battery_rearm_pct < self.low_battery_pct:
            raise RuleParamsError("RuleParams.low_battery_rearm_pct must be >= low_battery_pct")

    @property
    def max_speed_cmps(self) -> int:
        return kmh_to_cmps(self.max_speed_kmh)

    def with_limits(self, limits: Mapping[str, Any] | None) -> RuleParams:
        """These parameters with a plan's ``limits`` applied (unknown keys are ignored: a plan
        may carry limits for other systems)."""
        if not limits:
            return self
        changes: dict[str, Any] = {}
        dev: dict[str, int] = {}
        for key, value in limits.items():
            target = LIMIT_KEYS.get(key)
            if target is None:
                continue
            if type(value) is not int or value < 0:
                raise RuleParamsError(f"plan limits.{key} must be an int >= 0, got {value!r}")
            name, scale = target
            if name.startswith("deviation."):
                dev[name.removeprefix("deviation.")] = value * scale
            else:
                changes[name] = value * scale
        if dev:
            changes["deviation"] = dataclasses.replace(self.deviation, **dev)
        return dataclasses.replace(self, **changes)


LIMIT_KEYS: dict[str, tuple[str, int]] = {
    "max_speed_kmh": ("max_speed_kmh", 1),
    "max_stop_s": ("max_stop_ms", 1000),
    "seal_missing_s": ("seal_missing_ms", 1000),
    "deviation_min_s": ("deviation.min_duration_ms", 1000),
    "return_min_s": ("deviation.return_min_duration_ms", 1000),
    "return_margin_m": ("deviation.return_margin_m", 1),
}
"""Plan ``limits`` keys understood by the rules -> (parameter, multiplier)."""


def kmh_to_cmps(kmh: int) -> int:
    return round(kmh * 100_000 / 3600)
