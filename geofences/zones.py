"""Zones: customs offices, authorized stops, forbidden areas and port areas, evaluated in metres.

A zone is a GeoJSON Feature (RFC 7946, [lon, lat]) with a Polygon or MultiPolygon geometry, or a
Point with ``radius_m`` (an exact circle: distance to the centre is tested, nothing is buffered),
a ``role`` and an optional validity window. Zones are projected once, with the ``LocalProjection``
their plan or bundle shares with its corridor, and evaluated there:

* **Edges.** RFC 7946 edges are straight in lon/lat. ``zone_parse`` densifies them to at most
  0.002° before projection so the projected polygon follows them; without it a 50 km east-west
  edge at 35° would bow ~30 m (a parallel is curved in transverse Mercator).
* **Distances** are plane distances divided by the point scale ``k`` at the fix, as for corridors
  (error figures in ``projection``'s docstring and geofences/README.md).
* **Index.** ``ZoneIndex`` keeps the projected geometries prepared (GEOS prepared geometry) under
  an STR-tree for vectorised queries, plus a uniform grid (``zone_grid``) for the one-fix-at-a-time
  path, where shapely's per-call overhead would dominate. An index is immutable: new fences mean a
  new index, swapped in whole by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import shapely
from shapely import Geometry, Point, STRtree

from geofences.corridor import GeofenceError, _check_fix
from geofences.geojson import (
    LonLat,
    is_number,
)
from geofences.projection import LocalProjection, great_circle_m
from geofences.zone_grid import ZoneGrid

CUSTOMS_OFFICE = "customs_office"
AUTHORIZED_STOP = "authorized_stop"
FORBIDDEN = "forbidden"
PORT_AREA = "port_area"
ROLES = (CUSTOMS_OFFICE, AUTHORIZED_STOP, FORBIDDEN, PORT_AREA)

_NO_TIME = (-(2**62), 2**62)


@dataclass(frozen=True, eq=False)
class Zone:
    """One zone, its geometry in the plan's projected metres.

    ``geometry`` is a Polygon or MultiPolygon, or for a circle zone the centre Point with
    ``radius_m`` (ground metres) set. ``valid_until_ms`` is exclusive: the zone is active for
    ``valid_from_ms <= t_ms < valid_until_ms``; a missing bound is open.
    """

    zone_id: str
    role: str
    name: str | None
    valid_from_ms: int | None
    valid_until_ms: int | None
    geometry: Geometry
    radius_m: float | None = None
    anchor_deg: LonLat = (0.0, 0.0)
    """A (lon, lat) point of the zone (centre or first vertex), for far-away estimates."""
    scale: float = 1.0
    """Projection point scale k at the anchor: a circle's plane radius is ``radius_m * scale``."""

    @property
    def is_circle(self) -> bool:
        return self.radius_m is not None

    def active_at(self, t_ms: int | None) -> bool:
        """True if the zone is in force at ``t_ms`` (None: ignore validity windows)."""
        if t_ms is None:
            return True
        if self.valid_from_ms is not None and t_ms < self.valid_from_ms:
            return False
        return self.valid_until_ms is None or t_ms < self.valid_until_ms

    def plane_distance(self, x: float, y: float, k: float) -> float:
        """Ground metres from projected (x, y) with point scale k; 0 inside (boundary included)."""
        g = self.geometry
        if self.radius_m is not None:
            return max(0.0, math.hypot(x - g.x, y - g.y) / k - self.radius_m)
        if shapely.intersects_xy(g, x, y):
            return 0.0
        return float(g.distance(Point(x, y))) / k


class ZoneHits(NamedTuple):
    """Pairs from ``containing_many``: fix ``fix_index[i]`` is in zone ``zone_index[i]``.

    Indices are into the input arrays and ``ZoneIndex.zones``; sorted by fix, then zone.
    """

    fix_index: np.ndarray
    zone_index: np.ndarray


class ZoneIndex:
    """An immutable, indexed set of zones sharing one projection (see module docstring)."""

    def __init__(self, zones: Sequence[Zone], projection: LocalProjection) -> None:
        self.zones: tuple[Zone, ...] = tuple(zones)
        self.projection = projection
        self._by_id: dict[str, int] = {}
        for i, z in enumerate(self.zones):
            if z.zone_id in self._by_id:
                raise GeofenceError(f"zone {z.zone_id!r}: duplicate id")
            self._by_id[z.zone_id] = i
        for z in self.zones:
            shapely.prepare(z.geometry)
        self._circle = np.array([z.is_circle for z in self.zones], dtype=bool)
        self._radius = np.array([z.radius_m or 0.0 for z in self.zones], dtype=float)
        self._cx = np.array([z.geometry.x if z.is_circle else 0.0 for z in self.zones])
        self._cy = np.array([z.geometry.y if z.is_circle else 0.0 for z in self.zones])
        self._from = np.array(
            [_NO_TIME[0] if z.valid_from_ms is None else z.valid_from_ms for z in self.zones],
            dtype=np.int64,
        )
        self._until = np.array(
            [_NO_TIME[1] if z.valid_until_ms is None else z.valid_until_ms for z in self.zones],
            dtype=np.int64,
        )
        # Tree geometries: the polygons themselves, circles as their bounding boxes (exact test
        # afterwards; plane radius is radius * k, and k varies by < 1 % across a zone).
        self._tree_geoms = np.array(
            [_circle_box(z) if z.radius_m is not None else z.geometry for z in self.zones],
            dtype=object,
        )
        self._tree = STRtree(self._tree_geoms)
        self._grid = ZoneGrid(self.zones)

    # -- lookup ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.zones)

    def __iter__(self) -> Iterator[Zone]:
        return iter(self.zones)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._by_id

    def __getitem__(self, zone_id: str) -> Zone:
        try:
            return self.zones[self._by_id[zone_id]]
        except KeyError:
            raise KeyError(f"no zone {zone_id!r}") from None

    def index_of(self, zone_id: str) -> int:
        """Position of the zone in ``zones`` (file order); KeyError if absent."""
        return self._by_id[zone_id]

    def get(self, zone_id: str) -> Zone | None:
        i = self._by_id.get(zone_id)
        return None if i is None else self.zones[i]

    def by_role(self, role: str) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if z.role == role)

    def query_bbox(self, geom: Geometry) -> np.ndarray:
        """Indices of zones whose bounding box meets ``geom``'s (projected metres)."""
        return np.asarray(self._tree.query(geom))

    # -- one fix at a time (the agent's path) -----------------------------------------------

    def near(
        self, lat_e7: int, lon_e7: int, t_ms: int | None = None, within_m: float = 0.0
    ) -> list[tuple[Zone, float]]:
        """Zones active at ``t_ms`` within ``within_m`` ground metres, with their distance.

        Distance is 0 inside (boundary included). In zone order. Fixes outside the projection's
        domain (thousands of km away) are near nothing.
        """
        if not (is_number(within_m) and within_m >= 0):
            raise GeofenceError(f"within_m/margin_m must be a number >= 0, got {within_m!r}")
        lat, lon = _check_fix(lat_e7, lon_e7)
        proj = self.projection
        if not self.zones or not proj.covers(lat, lon):
            return []
        x, y, k = proj.forward_e7_with_scale(lat_e7, lon_e7)
        pad = within_m * k
        if pad <= self._grid.pad:
            entries: Sequence[tuple[int, float]] = self._grid.lookup(x, y)
        else:
            box = shapely.box(x - pad, y - pad, x + pad, y + pad)
            entries = [(int(i), 0.0) for i in sorted(self.query_bbox(box))]
        out: list[tuple[Zone, float]] = []
        zones = self.zones
        for i, lower in entries:
            if lower > pad:
                continue  # the whole grid cell is further than the margin from this zone
            zone = zones[i]
            if t_ms is not None and not zone.active_at(t_ms):
                continue
            if lower < 0:  # the whole cell is inside the zone
                d = 0.0
            elif zone.radius_m is not None:
                g = zone.geometry
                d = max(0.0, math.hypot(x - g.x, y - g.y) / k - zone.radius_m)
            elif shapely.intersects_xy(zone.geometry, x, y):
                d = 0.0
            elif within_m == 0:
                continue
            else:
                d = float(zone.geometry.distance(Point(x, y))) / k
            if d <= within_m:
                out.append((zone, d))
        return out

    def containing(
        self, lat_e7: int, lon_e7: int, t_ms: int | None = None, margin_m: float = 0.0
    ) -> list[Zone]:
        """Zones active at ``t_ms`` (None: any time) within ``margin_m`` of the fix."""
        return [z for z, _ in self.near(lat_e7, lon_e7, t_ms, margin_m)]

    def distance_m(self, zone_id: str, lat_e7: int, lon_e7: int) -> float:
        """Ground metres from the fix to zone ``zone_id``; 0 inside. Ignores validity windows.

        A fix outside the projection's domain gets a coarse great-circle estimate to the zone's
        anchor point: it is thousands of km away, and the figure only needs to say so.
        """
        zone = self[zone_id]
        lat, lon = _check_fix(lat_e7, lon_e7)
        if not self.projection.covers(lat, lon):
            return great_circle_m(lat, lon, zone.anchor_deg[1], zone.anchor_deg[0])
        x, y, k = self.projection.forward_e7_with_scale(lat_e7, lon_e7)
        return zone.plane_distance(x, y, k)

    # -- vectorised --------------------------------------------------------------------------

    def containing_many(
        self,
        lat_e7: Sequence[int] | np.ndarray,
        lon_e7: Sequence[int] | np.ndarray,
        t_ms: int | Sequence[int] | np.ndarray | None = None,
        margin_m: float = 0.0,
    ) -> ZoneHits:
        """``containing`` for many fixes at once (shapely 2 vectorised, STR-tree, prepared).

        ``t_ms`` is one time for all fixes, one per fix, or None. Fixes outside the projection
        domain hit nothing. Returns index pairs (``ZoneHits``), not Zone lists, so a million
        fixes cost arrays, not Python objects.
        """
        if not (is_number(margin_m) and margin_m >= 0):
            raise GeofenceError(f"margin_m must be a number >= 0, got {margin_m!r}")
        la = np.asarray(lat_e7, dtype=np.int64)
        lo = np.asarray(lon_e7, dtype=np.int64)
        if la.shape != lo.shape or la.ndim != 1:
            raise GeofenceError("lat_e7 and lon_e7 must be 1-D arrays of the same length")
        if la.size and (np.abs(la).max() > 900_000_000 or np.abs(lo).max() > 1_800_000_000):
            raise GeofenceError("lat_e7/lon_e7 out of range")
        empty = ZoneHits(np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp))
        if not self.zones or not la.size:
            return empty
        lat, lon = la / 1e7, lo / 1e7
        proj = self.projection
        ok = proj.covers_many(lat, lon)
        x, y, k = proj.forward_many(lat, lon)
        pad = margin_m * k
        # Candidates by bounding box (points, or squares of the margin), then exact tests:
        # prepared polygons through shapely's vectorised predicates, circles by centre distance.
        probe = shapely.points(x, y) if margin_m == 0 else shapely.box(
            x - pad * 1.01, y - pad * 1.01, x + pad * 1.01, y + pad * 1.01)
        fi, zi = self._tree.query(probe)
        keep = ok[fi]
        if t_ms is not None:
            t = np.broadcast_to(np.asarray(t_ms, dtype=np.int64), la.shape)[fi]
            keep &= (self._from[zi] <= t) & (t < self._until[zi])
        circ = self._circle[zi]
        c = np.nonzero(keep & circ)[0]
        dc = np.hypot(x[fi[c]] - self._cx[zi[c]], y[fi[c]] - self._cy[zi[c]]) / k[fi[c]]
        keep[c] = dc <= self._radius[zi[c]] + margin_m
        sel = np.nonzero(keep & ~circ)[0]
        if sel.size:
            pts = shapely.points(x[fi[sel]], y[fi[sel]])
            geoms = self._tree_geoms[zi[sel]]
            if margin_m == 0:
                keep[sel] = shapely.intersects(geoms, pts)
            else:
                keep[sel] = shapely.dwithin(geoms, pts, pad[fi[sel]])
        fi, zi = fi[keep], zi[keep]
        order = np.lexsort((zi, fi))
        return ZoneHits(fi[order], zi[order])


def _circle_box(z: Zone) -> Geometry:
    r = (z.radius_m or 0.0) * z.scale * 1.01
    return shapely.box(z.geometry.x - r, z.geometry.y - r, z.geometry.x + r, z.geometry.y + r)


ZoneSet = ZoneIndex
"""Alias: the session spec calls it either name."""
