"""Speed profile along a route: speed zones by distance and timed stops at route positions.

A truck in a transit does not drive at one speed: it slows in a port area and it stops (at a
customs office, a fuel station, somewhere it should not). The agent's stop and overspeed rules
need exactly that, so the simulator turns a profile into a time -> distance function made of
pieces of constant speed (a stop is a piece of speed 0). Pieces are precomputed, so a lookup is
a bisection, and the function is pure: the same profile always gives the same track.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from firmware_sim.route import Route, RoutePoint


@dataclass(frozen=True, slots=True)
class Stop:
    """Stand still ``duration_s`` seconds once ``at_m`` metres along the route are reached."""

    at_m: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class SpeedZone:
    """Drive at ``speed_mps`` between ``from_m`` and ``to_m`` metres along the route."""

    from_m: float
    to_m: float
    speed_mps: float


@dataclass(frozen=True, slots=True)
class _Piece:
    t0: float
    d0: float
    speed: float


class Motion:
    """Time -> position on ``route`` for a default speed, speed zones and stops.

    After the last vertex the vehicle is parked there (``finished``), like ``Route``.
    """

    def __init__(
        self,
        route: Route,
        speed_mps: float | None = None,
        zones: Sequence[SpeedZone] = (),
        stops: Sequence[Stop] = (),
    ) -> None:
        self.route = route
        default = route.speed_mps if speed_mps is None else speed_mps
        _check_speed(default, "speed_mps")
        for z in zones:
            _check_speed(z.speed_mps, "zone speed_mps")
            if not 0 <= z.from_m < z.to_m:
                raise ValueError(f"speed zone needs 0 <= from_m < to_m, got {z}")
        for s in stops:
            if not (math.isfinite(s.at_m) and 0 <= s.at_m <= route.length_m):
                raise ValueError(
                    f"stop at_m must be within the route (0..{route.length_m:.0f} m), got {s.at_m}"
                )
            if not (math.isfinite(s.duration_s) and s.duration_s > 0):
                raise ValueError(f"stop duration_s must be > 0, got {s.duration_s}")
        self.zones = tuple(zones)
        self.stops = tuple(sorted(stops, key=lambda s: s.at_m))
        self._pieces = self._build(default)
        self._starts = [p.t0 for p in self._pieces]

    def _speed_at(self, dist: float, default: float) -> float:
        """Speed for the stretch starting at ``dist``; the last zone listed wins an overlap."""
        speed = default
        for z in self.zones:
            if z.from_m <= dist < z.to_m:
                speed = z.speed_mps
        return speed

    def _build(self, default: float) -> list[_Piece]:
        length = self.route.length_m
        marks = {0.0, length}
        marks.update(min(length, z.from_m) for z in self.zones)
        marks.update(min(length, z.to_m) for z in self.zones)
        marks.update(s.at_m for s in self.stops)
        ordered = sorted(marks)
        pieces: list[_Piece] = []
        t = 0.0
        for i, d in enumerate(ordered):
            for stop in self.stops:
                if stop.at_m == d:
                    pieces.append(_Piece(t, d, 0.0))
                    t += stop.duration_s
            if i + 1 < len(ordered):
                speed = self._speed_at(d, default)
                pieces.append(_Piece(t, d, speed))
                t += (ordered[i + 1] - d) / speed
        pieces.append(_Piece(t, length, 0.0))  # parked at the end
        return pieces

    @property
    def duration_s(self) -> float:
        """Time from the start to arriving at the last vertex, stops included."""
        return self._pieces[-1].t0

    def at(self, t_s: float) -> RoutePoint:
        """Exact (noise-free) position and speed after ``t_s`` seconds."""
        t_s = max(0.0, t_s)
        piece = self._pieces[bisect.bisect_right(self._starts, t_s) - 1]
        dist = piece.d0 + piece.speed * (t_s - piece.t0)
        point = self.route.point_at_distance(dist, piece.speed)
        if piece.speed == 0.0 and not point.finished:
            # A stop: keep the course the truck arrived with, report speed 0.
            point = RoutePoint(
                point.lon, point.lat, point.course_deg, 0.0, point.distance_m, False
            )
        return point

    def stopped(self, t_s: float) -> bool:
        """True while standing still (a stop or parked after the end)."""
        return self.at(t_s).speed_mps == 0.0


def _check_speed(value: float, name: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of m/s, got {value!r}")
