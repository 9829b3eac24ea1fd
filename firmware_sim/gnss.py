"""What the receiver reports at an instant: truth from the motion, plus the receiver's troubles.

The agent's gnssLost and jamming rules look for specific signatures, so each condition here
reproduces what a u-blox-class receiver really shows:

* **Dropout** (tunnel, parking garage): an abrupt loss of fix. The receiver keeps sending
  every sentence with the time (it has a clock once it had a fix) and empty positions.
* **Jamming**: a ramp down where fewer satellites are used and HDOP and the GST standard
  deviations grow (real scatter grows with them), then no fix, then the mirror-image recovery.
* **Clock skew**: the receiver's UTC is off by a constant, e.g. after a bad leap-second table.
* **Parked jitter**: a stopped truck with position noise reports small random speeds, which
  a naive stop detector mistakes for driving.

Everything random comes from seeded generators, drawn in a fixed order, so a receiver's output
is a pure function of its seed and the epoch times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from firmware_sim.motion import Motion
from firmware_sim.nmea import SimFix
from firmware_sim.route import PositionNoise

MIN_SATS_JAMMED = 4
"""Satellites still used at the worst moment of a jamming ramp, just before the fix is lost."""

PARKED_SPEED_SIGMA_MPS = 0.08
"""Spread of the speed a stopped receiver with position noise reports (about 0.15 kn)."""


@dataclass(frozen=True, slots=True)
class Window:
    """``[start_s, start_s + duration_s)`` in seconds since the receiver started."""

    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"start_s must be >= 0, got {self.start_s!r}")
        if not (self.duration_s > 0):
            raise ValueError(f"duration_s must be > 0, got {self.duration_s!r}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(frozen=True, slots=True)
class Jamming:
    """A jamming episode: ``ramp_s`` of degradation, no fix, then ``ramp_s`` of recovery."""

    window: Window
    ramp_s: float = 10.0

    def __post_init__(self) -> None:
        if not (self.ramp_s >= 0 and 2 * self.ramp_s < self.window.duration_s):
            raise ValueError(
                f"ramp_s must be >= 0 and leave a no-fix middle (2 * ramp_s < duration_s), "
                f"got ramp_s={self.ramp_s!r}, duration_s={self.window.duration_s!r}"
            )

    def severity(self, t_s: float) -> float:
        """0 outside, rising to 1 over the first ramp, 1 (no fix) in the middle, then back."""
        w = self.window
        if not w.contains(t_s):
            return 0.0
        into, left = t_s - w.start_s, w.end_s - t_s
        if into < self.ramp_s:
            return into / self.ramp_s
        if left <= self.ramp_s:
            return left / self.ramp_s
        return 1.0


@dataclass(frozen=True, slots=True)
class ClockSkew:
    """The receiver's clock is ``skew_ms`` off during ``window`` (its whole life if None)."""

    skew_ms: int
    window: Window | None = None

    def active(self, t_s: float) -> bool:
        return self.window is None or self.window.contains(t_s)


@dataclass(frozen=True, slots=True)
class Conditions:
    """Everything that can go wrong with a receiver, on its own clock (seconds since start)."""

    dropouts: tuple[Window, ...] = ()
    jamming: tuple[Jamming, ...] = ()
    skews: tuple[ClockSkew, ...] = ()

    def severity(self, t_s: float) -> float:
        """0 = nominal signal, 1 = no fix; in between, a degraded (jammed) fix."""
        if any(w.contains(t_s) for w in self.dropouts):
            return 1.0
        return max((j.severity(t_s) for j in self.jamming), default=0.0)

    def skew_ms(self, t_s: float) -> int:
        return sum(s.skew_ms for s in self.skews if s.active(t_s))


@dataclass
class FixModel:
    """Produces the ``SimFix`` a receiver would report, epoch after epoch.

    Stateful on purpose: it remembers whether it has had a fix (before that, no time is sent)
    and its random generators advance one epoch at a time. Call ``fix`` in time order.
    """

    motion: Motion
    noise: PositionNoise | None = None
    conditions: Conditions = field(default_factory=Conditions)
    sats: int = 12
    hdop: float = 0.8
    alt_m: float = 30.0
    seed: int | str | None = None
    _rng: random.Random = field(init=False, repr=False)
    _prns: tuple[int, ...] = field(init=False, repr=False)
    _orientation: float = field(init=False, repr=False)
    had_fix: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if not 1 <= self.sats <= 32:
            raise ValueError(f"sats must be 1..32, got {self.sats}")
        self._rng = random.Random(f"gnss:{self.seed}")
        self._prns = tuple(self._rng.sample(range(1, 33), 12))
        self._orientation = round(self._rng.uniform(0.0, 180.0), 1)

    @property
    def sigma_m(self) -> float:
        return self.noise.sigma_m if self.noise is not None else 0.0

    def fix(self, t_s: float, t_ms: int, route_t_s: float | None = None) -> SimFix:
        """The fix at ``t_s`` seconds since start, stamped ``t_ms`` (before clock skew).

        ``route_t_s`` is the time along the route when it differs from ``t_s`` (a receiver
        that loops over its route); conditions always follow ``t_s``.
        """
        severity = self.conditions.severity(t_s)
        t_ms += self.conditions.skew_ms(t_s)
        if severity >= 1.0:
            return SimFix(t_ms=t_ms, lat=0.0, lon=0.0, quality=0, sats=0, time_valid=self.had_fix)
        self.had_fix = True
        point = self.motion.at(t_s if route_t_s is None else route_t_s)
        scale = 1.0 + 20.0 * severity**2
        if self.noise is not None:
            point = self.noise.apply(point, scale)
        speed = point.speed_mps
        if speed == 0.0 and self.sigma_m > 0:
            speed = abs(self._rng.gauss(0.0, PARKED_SPEED_SIGMA_MPS))
        sats = round(self.sats - severity * (self.sats - min(self.sats, MIN_SATS_JAMMED)))
        hdop = self.hdop * (1.0 + 12.0 * severity**2)
        sd = max(self.sigma_m, 0.3) * scale
        return SimFix(
            t_ms=t_ms,
            lat=point.lat,
            lon=point.lon,
            alt_m=self.alt_m,
            speed_mps=speed,
            course_deg=point.course_deg,
            sats=sats,
            hdop=hdop,
            pdop=hdop * 1.75,
            vdop=hdop * 1.4,
            prns=tuple(sorted(self._prns[: min(sats, 12)])),
            std_lat_m=sd,
            std_lon_m=sd,
            std_alt_m=1.6 * sd,
            rms_m=1.2 * sd,
            semi_major_m=1.1 * sd,
            semi_minor_m=0.9 * sd,
            orientation_deg=self._orientation,
        )


def windows(pairs: Sequence[tuple[float, float]]) -> tuple[Window, ...]:
    """``[(start_s, duration_s), ...]`` as windows, for callers holding plain numbers."""
    return tuple(Window(start, duration) for start, duration in pairs)
