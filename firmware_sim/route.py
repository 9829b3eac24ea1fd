"""Where the simulated vehicle is at time t: constant-speed travel along a GeoJSON LineString.

Geometry is done on the sphere (haversine lengths, great-circle interpolation and bearings) so
the simulator is an independent reference for the agent, which works in a local metric
projection: if both used the same planar shortcut, a projection bug would cancel out.
Coordinates follow RFC 7946: positions are ``(lon, lat)``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealtrail import boundedjson

EARTH_RADIUS_M = 6_371_008.8
"""IUGG mean Earth radius; the same constant the tests' independent haversine uses."""

LonLat = tuple[float, float]


@dataclass(frozen=True, slots=True)
class RoutePoint:
    """Truth at one instant: position, course over ground, speed and progress along the route."""

    lon: float
    lat: float
    course_deg: float
    speed_mps: float
    distance_m: float
    finished: bool


def haversine_m(a: LonLat, b: LonLat) -> float:
    """Great-circle distance in metres between two ``(lon, lat)`` positions."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def initial_bearing_deg(a: LonLat, b: LonLat) -> float:
    """Initial great-circle bearing from ``a`` to ``b``, degrees clockwise from true north."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    dlon = lon2 - lon1
    y = math.sin(dlon) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


def _to_xyz(p: LonLat) -> tuple[float, float, float]:
    lon, lat = map(math.radians, p)
    return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))


def interpolate(a: LonLat, b: LonLat, fraction: float) -> LonLat:
    """Point at ``fraction`` (0..1) of the great-circle arc from ``a`` to ``b`` (slerp)."""
    if fraction <= 0.0:
        return a  # exact vertices: scenario authors compare against the file's numbers
    if fraction >= 1.0:
        return b
    delta = haversine_m(a, b) / EARTH_RADIUS_M
    if delta < 1e-12:
        return a
    wa = math.sin((1 - fraction) * delta) / math.sin(delta)
    wb = math.sin(fraction * delta) / math.sin(delta)
    xa, ya, za = _to_xyz(a)
    xb, yb, zb = _to_xyz(b)
    x, y, z = wa * xa + wb * xb, wa * ya + wb * yb, wa * za + wb * zb
    lat = math.degrees(math.atan2(z, math.hypot(x, y)))
    lon = math.degrees(math.atan2(y, x))
    return (lon, lat)


def _validate(coords: Sequence[Sequence[float]]) -> list[LonLat]:
    """Check positions and drop consecutive duplicates (zero-length segments have no course)."""
    out: list[LonLat] = []
    for pos in coords:
        if len(pos) < 2:
            raise ValueError(f"position needs lon and lat: {pos!r}")
        lon, lat = float(pos[0]), float(pos[1])
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise ValueError(f"non-finite position: {pos!r}")
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"position out of range (GeoJSON order is lon, lat): {pos!r}")
        if not out or out[-1] != (lon, lat):
            out.append((lon, lat))
    if len(out) < 2:
        raise ValueError("a route needs at least two distinct positions")
    return out


class Route:
    """A LineString driven at constant speed from its first to its last vertex.

    Precomputes cumulative segment lengths so ``position_at`` is O(log n) per epoch.
    """

    def __init__(self, coords: Sequence[Sequence[float]], speed_mps: float) -> None:
        if not (math.isfinite(speed_mps) and speed_mps > 0):
            raise ValueError(f"speed must be a positive number of m/s, got {speed_mps!r}")
        self.coords: list[LonLat] = _validate(coords)
        self.speed_mps = float(speed_mps)
        self._cum: list[float] = [0.0]
        for a, b in itertools.pairwise(self.coords):
            self._cum.append(self._cum[-1] + haversine_m(a, b))

    @classmethod
    def from_geojson_file(cls, path: str | Path, speed_mps: float) -> Route:
        """Load the single LineString of a GeoJSON file (see ``load_linestring``)."""
        return cls(load_linestring(path), speed_mps)

    @property
    def length_m(self) -> float:
        """Total great-circle length in metres."""
        return self._cum[-1]

    @property
    def duration_s(self) -> float:
        """Time to drive the whole route at ``speed_mps``."""
        return self.length_m / self.speed_mps

    def position_at(self, t_s: float) -> RoutePoint:
        """Exact position after ``t_s`` seconds; clamps to the start before 0 and the end after.

        After the end the vehicle is parked on the last vertex with speed 0 and the course of
        the last segment, which is what a receiver on a stopped truck would keep reporting.
        """
        return self.point_at_distance(self.speed_mps * max(0.0, t_s), self.speed_mps)

    def point_at_distance(self, dist: float, speed_mps: float) -> RoutePoint:
        """The point ``dist`` metres along the route, moving at ``speed_mps``.

        Separate from time so a speed profile (``motion.Motion``) can map time to distance
        its own way; past the end the speed is 0 and ``finished`` is set.
        """
        dist = max(0.0, dist)
        if dist >= self.length_m:
            a, b = self.coords[-2], self.coords[-1]
            course = (initial_bearing_deg(b, a) + 180.0) % 360.0
            return RoutePoint(b[0], b[1], course, 0.0, self.length_m, True)
        i = bisect.bisect_right(self._cum, dist) - 1
        a, b = self.coords[i], self.coords[i + 1]
        seg = self._cum[i + 1] - self._cum[i]
        fraction = (dist - self._cum[i]) / seg
        lon, lat = interpolate(a, b, fraction)
        if seg - (dist - self._cum[i]) > 1e-3:
            course = initial_bearing_deg((lon, lat), b)
        else:  # numerically at the vertex: use the final bearing of the arc
            course = (initial_bearing_deg(b, a) + 180.0) % 360.0
        return RoutePoint(lon, lat, course, speed_mps, dist, False)


class PositionNoise:
    """Seeded isotropic Gaussian position error, in metres, as a receiver's scatter.

    Separate from ``Route`` so the route stays a pure function of time and tests can compare
    noisy output against the exact track.
    """

    def __init__(self, sigma_m: float, seed: int | None = None) -> None:
        if not (math.isfinite(sigma_m) and sigma_m >= 0):
            raise ValueError(f"noise sigma must be >= 0 metres, got {sigma_m!r}")
        self.sigma_m = float(sigma_m)
        self._rng = random.Random(seed)

    def apply(self, point: RoutePoint, scale: float = 1.0) -> RoutePoint:
        """Return ``point`` displaced by N(0, sigma * scale) metres north and east.

        ``scale`` lets a degraded signal (jamming) scatter more than the receiver's nominal.
        """
        sigma = self.sigma_m * scale
        if sigma == 0:
            return point
        north = self._rng.gauss(0.0, sigma)
        east = self._rng.gauss(0.0, sigma)
        dlat = math.degrees(north / EARTH_RADIUS_M)
        coslat = max(1e-9, math.cos(math.radians(point.lat)))
        dlon = math.degrees(east / (EARTH_RADIUS_M * coslat))
        lat = max(-90.0, min(90.0, point.lat + dlat))
        lon = (point.lon + dlon + 180.0) % 360.0 - 180.0
        return RoutePoint(
            lon, lat, point.course_deg, point.speed_mps, point.distance_m, point.finished
        )


def _linestrings(obj: Any) -> list[list[list[float]]]:
    if not isinstance(obj, dict):
        return []
    kind = obj.get("type")
    if kind == "FeatureCollection":
        found: list[list[list[float]]] = []
        for feature in obj.get("features") or []:
            found += _linestrings(feature)
        return found
    if kind == "Feature":
        return _linestrings(obj.get("geometry"))
    if kind == "LineString":
        return [obj.get("coordinates") or []]
    return []


MAX_ROUTE_BYTES = 64 * 1024 * 1024


def load_linestring(path: str | Path) -> list[LonLat]:
    """Read a GeoJSON Feature, FeatureCollection or geometry holding exactly one LineString.

    Exactly one, because a route with two candidate tracks is ambiguous and a silent pick
    would make a scenario test something other than what its author drew.
    """
    try:  # bounded: deep JSON segfaults a process that imported web3 (sealtrail.boundedjson)
        doc = boundedjson.loads(Path(path).read_bytes(), max_bytes=MAX_ROUTE_BYTES)
    except boundedjson.JsonBoundError as exc:
        raise ValueError(f"{path}: {exc}") from None
    lines = _linestrings(doc)
    if len(lines) != 1:
        raise ValueError(f"{path}: expected exactly one LineString, found {len(lines)}")
    return _validate(lines[0])
