"""Did the straight chord between two sparse fixes cross a zone, and could the vehicle have gone
around it instead?

Between two fixes far apart in time (a GNSS outage, a jammed stretch, a slow uplink) a vehicle
may have crossed a small zone without any fix landing in it. The chord alone proves nothing (the
road may bend around the zone), so a crossing carries ``detour_m``: the length of the shortest way
from the first fix to the second that avoids the zone. For a polygon the chord passes through,
that is the taut string around it on one side or the other, which follows the polygon's convex
hull (a concavity never shortens it; holes are enclosed). If even that detour needs more than a
plausible speed in the time between the fixes, the vehicle must have passed through
(``ZoneMonitor`` then reports an enter/exit pair with basis "segment"). For a MultiPolygon a
vehicle may slip between the parts, so each part the chord crosses is taken alone and the
largest detour kept: "could not have gone round part i" is what proves a crossing. A chord end
inside a part's hull but outside the zone (in a bay) gives ``detour_m`` = chord length, which
never proves a crossing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import shapely
from shapely import LineString, MultiPoint, Point

from geofences.corridor import Fix, _check_fix

if TYPE_CHECKING:
    from geofences.zones import Zone, ZoneIndex

_CIRCLE_QUAD_SEGS = 32
"""Circles become 128-gons (inscribed: a detour around it is a hair short, so conservative)."""


class Crossing(NamedTuple):
    """How a chord meets one zone; fractions are along the chord (0 = first fix, 1 = second)."""

    zone: Zone
    enter_fraction: float
    exit_fraction: float
    inside_fraction: float
    chord_m: float
    detour_m: float


def _shape(zone: Zone) -> shapely.Geometry:
    if zone.radius_m is None:
        return zone.geometry
    return zone.geometry.buffer(zone.radius_m * zone.scale, quad_segs=_CIRCLE_QUAD_SEGS)


def _detour(hull: shapely.Geometry, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Plane length of the shortest path a -> b outside ``hull`` (convex), or the chord length."""
    chord = math.dist(a, b)
    if hull.geom_type != "Polygon" or hull.covers(Point(a)) or hull.covers(Point(b)):
        return chord
    ring = shapely.get_coordinates(
        MultiPoint([*shapely.get_coordinates(hull).tolist(), a, b]).convex_hull.exterior
    ).tolist()[:-1]
    try:
        ia, ib = ring.index(list(a)), ring.index(list(b))
    except ValueError:  # an end lies on the hull's extension: the chord grazes it
        return chord
    n = len(ring)
    steps = [math.dist(ring[i], ring[(i + 1) % n]) for i in range(n)]
    lo, hi = min(ia, ib), max(ia, ib)
    one_way = sum(steps[lo:hi])
    return min(one_way, sum(steps) - one_way)


def chord_crossings(index: ZoneIndex, a: Fix, b: Fix, t_ms: int | None) -> list[Crossing]:
    """Zones active at ``t_ms`` whose interior the chord a -> b passes through, in zone order."""
    lat_a, lon_a = _check_fix(*a)
    lat_b, lon_b = _check_fix(*b)
    proj = index.projection
    if not (proj.covers(lat_a, lon_a) and proj.covers(lat_b, lon_b)) or not len(index):
        return []
    xa, ya, ka = proj.forward_with_scale(lat_a, lon_a)
    xb, yb, kb = proj.forward_with_scale(lat_b, lon_b)
    k = (ka + kb) / 2
    if (xa, ya) == (xb, yb):
        return []
    chord = LineString([(xa, ya), (xb, yb)])
    out: list[Crossing] = []
    for i in sorted(index.query_bbox(chord)):
        zone = index.zones[i]
        if not zone.active_at(t_ms):
            continue
        shape = _shape(zone)
        inside = chord.intersection(shape)
        if inside.is_empty or inside.length == 0:
            continue
        fr = [chord.project(Point(c), normalized=True) for c in shapely.get_coordinates(inside)]
        parts = shapely.get_parts(shape)
        detour = max(
            _detour(part.convex_hull, (xa, ya), (xb, yb))
            for part in parts
            if chord.intersection(part).length > 0
        )
        out.append(
            Crossing(zone, min(fr), max(fr), inside.length / chord.length,
                     chord.length / k, detour / k)
        )
    return out
