"""Route corridors: a centre line plus an allowed distance from it, evaluated in metres.

A corridor is the route a customs transit plan allows, given as a GeoJSON LineString (RFC 7946,
[lon, lat] order) and ``width_m``: the largest distance, in metres, a vehicle may be from the
centre line and still be on route. It is the buffer *radius*, measured to either side; the
corridor is ``2 * width_m`` wide in total.

The line is projected once (``LocalProjection`` centred on it, or the plan's) and kept as a
shapely geometry; for long routes its segments also go under an STR-tree so a vectorised or
far-away distance query costs O(log n) rather than a scan of every vertex. Single
fixes near the route are answered from a grid of candidate segments (``segment_grid``) in plain
Python, without shapely's per-call overhead. Segments
between vertices are straight in that projection; routes traced from roads have vertices every few
tens of metres, where this is the same as the geodesic to well under a millimetre.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import shapely
from shapely import LineString, STRtree

from geofences.projection import (
    E7,
    MAX_CORRIDOR_RADIUS_M,
    LocalProjection,
    great_circle_m,
)
from geofences.segment_grid import BRUTE_MAX_SEGMENTS, SegmentGrid
from sealtrail import boundedjson
from sealtrail.errors import EXIT_USAGE, SealTrailError

_TREE_MIN_VERTICES = 32
"""Lines with more vertices get an STR-tree of their segments; shorter ones are scanned."""
_SAMPLE_STEP_MAX_M = 25.0
"""Upper bound of the spacing of chord samples in ``check_segment``."""
_GRID_AFTER_CALLS = 256
"""Single-fix queries after which a long corridor builds its segment grid (``prepare``)."""
_MAX_SAMPLES = 4096
"""Cap on chord samples; a longer chord is sampled more coarsely (step reported in the result)."""

Fix = tuple[int, int]
"""A position on the wire: (lat_e7, lon_e7), degrees x 1e7."""


class GeofenceError(SealTrailError, ValueError):
    """A geofence definition (or persisted geofence state) is unusable; the message says why.

    Met by a command it is bad input (exit 2): a plan, bundle or keys file that cannot be used."""

    exit_code = EXIT_USAGE


class SegmentCheck(NamedTuple):
    """How the straight chord between two fixes relates to the corridor.

    ``max_distance_m`` is the largest sampled distance from the centre line along the chord; it is
    at most ``step_m / 2`` below the true maximum (distance is 1-Lipschitz along the chord).
    ``outside_fraction`` is the share of the chord further than the limit asked for, and
    ``first_exit_fraction`` where along the chord (0 = first fix, 1 = second) it first is, or None.
    """

    max_distance_m: float
    outside_fraction: float
    first_exit_fraction: float | None
    step_m: float


def _check_fix(lat_e7: int, lon_e7: int) -> tuple[float, float]:
    """Validate wire integers and return degrees; a bad fix must not reach the geometry code."""
    if type(lat_e7) is not int or type(lon_e7) is not int:
        raise GeofenceError(f"fix must be integer lat_e7/lon_e7, got {lat_e7!r}, {lon_e7!r}")
    if not -90 * E7 <= lat_e7 <= 90 * E7:
        raise GeofenceError(f"lat_e7 {lat_e7} out of range [-900000000, 900000000]")
    if not -180 * E7 <= lon_e7 <= 180 * E7:
        raise GeofenceError(f"lon_e7 {lon_e7} out of range [-1800000000, 1800000000]")
    return lat_e7 / E7, lon_e7 / E7


@dataclass(frozen=True)
class Corridor:
    """A route corridor: ``vertices_e7`` is the centre line as (lat_e7, lon_e7) pairs.

    ``width_m`` is the allowed distance from the centre line (buffer radius), not the full width.
    Construction validates everything and raises ``GeofenceError``; consecutive duplicate vertices
    are dropped. Instances are immutable and safe to share between assets' monitors.
    ``projection`` defaults to a transverse Mercator centred on the route; a transit plan passes
    the one it shares with its zones (centred on the whole plan) so a fix is projected once.
    """

    corridor_id: str
    width_m: float
    vertices_e7: tuple[Fix, ...]
    projection: LocalProjection = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    line: LineString = field(init=False, repr=False, compare=False)
    _tree: STRtree | None = field(init=False, repr=False, compare=False)
    _grid: SegmentGrid | None = field(init=False, repr=False, compare=False)
    _scalar_calls: int = field(init=False, repr=False, compare=False, default=0)
    _xy: np.ndarray = field(init=False, repr=False, compare=False)
    _vertex_along: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = f"corridor {self.corridor_id!r}"
        if not isinstance(self.corridor_id, str) or not self.corridor_id.strip():
            raise GeofenceError(f"{name}: id must be a non-empty string")
        w = self.width_m
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
            raise GeofenceError(f"{name}: width_m must be a positive number of metres, got {w!r}")
        if not isinstance(self.vertices_e7, Sequence):
            raise GeofenceError(f"{name}: vertices_e7 must be a sequence of (lat_e7, lon_e7)")
        verts: list[Fix] = []
        for i, v in enumerate(self.vertices_e7):
            try:
                lat_e7, lon_e7 = v
                _check_fix(lat_e7, lon_e7)
            except (TypeError, ValueError) as exc:
                raise GeofenceError(f"{name}: vertex {i}: {exc}") from None
            if not verts or verts[-1] != (lat_e7, lon_e7):
                verts.append((lat_e7, lon_e7))
        if len(verts) < 2:
            raise GeofenceError(
                f"{name}: centre line needs at least 2 distinct points, got {len(verts)}"
            )
        deg = [(la / E7, lo / E7) for la, lo in verts]
        proj = self.projection if self.projection is not None else LocalProjection.around(deg)
        if not isinstance(proj, LocalProjection):
            raise GeofenceError(f"{name}: projection must be a LocalProjection")
        far = max(great_circle_m(proj.lat0_deg, proj.lon0_deg, la, lo) for la, lo in deg)
        if far > MAX_CORRIDOR_RADIUS_M:
            raise GeofenceError(
                f"{name}: extends {far / 1000:.0f} km from its centre, more than the "
                f"{MAX_CORRIDOR_RADIUS_M / 1000:.0f} km the local projection allows (split the "
                "route; corridors crossing the antimeridian are not supported)"
            )
        px, py, _ = proj.forward_many(
            np.array([d[0] for d in deg]), np.array([d[1] for d in deg])
        )
        xy = np.column_stack((px, py))
        line = LineString(xy)
        shapely.prepare(line)
        tree: STRtree | None = None
        if len(xy) > _TREE_MIN_VERTICES:
            tree = STRtree(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1)))
        seg = np.hypot(np.diff(xy[:, 0]), np.diff(xy[:, 1]))
        object.__setattr__(self, "width_m", float(w))
        object.__setattr__(self, "vertices_e7", tuple(verts))
        object.__setattr__(self, "projection", proj)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_xy", xy)
        short = len(xy) - 1 <= BRUTE_MAX_SEGMENTS
        object.__setattr__(self, "_grid", SegmentGrid(xy, float(w)) if short else None)
        object.__setattr__(self, "_vertex_along", np.concatenate(([0.0], np.cumsum(seg))))

    @property
    def length_m(self) -> float:
        """Centre-line length in plane metres (within the projection's scale error)."""
        return float(self._vertex_along[-1])

    def _plane_distances(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Plane distances from points to the centre line (vectorised, indexed when long)."""
        pts = shapely.points(xs, ys)
        if self._tree is None:
            return np.asarray(shapely.distance(self.line, pts), dtype=float)
        idx, dist = self._tree.query_nearest(pts, return_distance=True)
        out = np.full(len(xs), np.inf)
        np.minimum.at(out, idx[0], dist)
        return out

    def _plane_distance(self, x: float, y: float) -> float:
        """Scalar form of ``_plane_distances``: the per-fix hot path, without array overhead."""
        pt = shapely.Point(x, y)
        if self._tree is None:
            return float(self.line.distance(pt))
        return float(self._tree.query_nearest(pt, return_distance=True)[1].min())

    def _far_distance_m(self, lat: float, lon: float) -> float:
        """Great-circle distance to the nearest vertex, for points outside the projection domain.

        Such a point is at least 1,500 km outside the corridor; the figure is an upper bound on the
        true distance, good to a fraction of a percent at that range, and never near ``width_m``.
        """
        return min(great_circle_m(lat, lon, la / E7, lo / E7) for la, lo in self.vertices_e7)

    def distance_m(self, lat_e7: int, lon_e7: int) -> float:
        """Ground distance in metres from the fix to the nearest point of the centre line.

        The plane distance is divided by the projection's point scale at the fix, which removes
        the transverse Mercator scale error for offsets up to several km (see ``projection``).
        """
        lat, lon = _check_fix(lat_e7, lon_e7)
        proj = self.projection
        if not proj.covers(lat, lon):
            return self._far_distance_m(lat, lon)
        x, y, k = proj.forward_e7_with_scale(lat_e7, lon_e7)
        grid = self._grid
        if grid is None:
            calls = self._scalar_calls + 1
            object.__setattr__(self, "_scalar_calls", calls)
            if calls < _GRID_AFTER_CALLS:
                return self._plane_distance(x, y) / k
            grid = self.prepare()
        d = grid.distance(x, y)
        if d is None:  # beyond the grid's reach: far off the route
            d = self._plane_distance(x, y)
        return d / k

    def prepare(self) -> SegmentGrid:
        """Build the per-fix fast path now (idempotent); returns it.

        Otherwise it is built on the ``_GRID_AFTER_CALLS``-th single-fix query: a corridor asked
        about a handful of fixes (tools, tests) never pays the 0.1-0.3 s it takes for a
        2,000-vertex route. A transit plan prepares its corridor when it is loaded.
        """
        grid = self._grid
        if grid is None:
            grid = SegmentGrid(self._xy, self.width_m)
            object.__setattr__(self, "_grid", grid)
        return grid

    def distances_m(
        self, lat_e7: Sequence[int] | np.ndarray, lon_e7: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Vectorised ``distance_m`` for arrays of fixes (bulk replay, reports, benchmarks)."""
        la = np.asarray(lat_e7, dtype=np.int64)
        lo = np.asarray(lon_e7, dtype=np.int64)
        if la.shape != lo.shape or la.ndim != 1:
            raise GeofenceError("lat_e7 and lon_e7 must be 1-D arrays of the same length")
        if la.size and (np.abs(la).max() > 90 * E7 or np.abs(lo).max() > 180 * E7):
            raise GeofenceError("lat_e7/lon_e7 out of range")
        lat, lon = la / E7, lo / E7
        proj = self.projection
        ok = proj.covers_many(lat, lon)
        out = np.empty(la.shape, dtype=float)
        if ok.any():
            x, y, k = proj.forward_many(lat[ok], lon[ok])
            out[ok] = self._plane_distances(x, y) / k
        for i in np.flatnonzero(~ok):
            out[i] = self._far_distance_m(float(lat[i]), float(lon[i]))
        return out

    def contains(self, lat_e7: int, lon_e7: int, margin_m: float = 0.0) -> bool:
        """True if the fix is within ``width_m + margin_m`` of the centre line (boundary included).

        A negative margin shrinks the corridor: ``contains(..., margin_m=-50)`` is the "clearly
        back on route" test the deviation monitor's hysteresis uses.
        """
        return self.distance_m(lat_e7, lon_e7) <= self.width_m + margin_m

    def along_m(self, lat_e7: int, lon_e7: int) -> float:
        """Distance along the centre line, from its first vertex, of the point nearest the fix.

        Plane metres. Where the route passes near itself (a loop, an out-and-back) the nearest
        point may be on the other pass; callers must treat a large jump as "possibly", not proof.
        """
        lat, lon = _check_fix(lat_e7, lon_e7)
        if not self.projection.covers(lat, lon):
            d = [great_circle_m(lat, lon, la / E7, lo / E7) for la, lo in self.vertices_e7]
            return float(self._vertex_along[int(np.argmin(d))])
        x, y = self.projection.forward(lat, lon)
        return float(self.line.project(shapely.Point(x, y)))

    def check_segment(self, a: Fix, b: Fix, limit_m: float | None = None) -> SegmentCheck:
        """Sample the straight chord between fixes ``a`` and ``b`` against ``limit_m``.

        ``limit_m`` defaults to ``width_m``. Samples are at most ``min(25 m, width_m / 4)`` apart
        (coarser only for chords over ~100 km), so an excursion the chord makes is not missed and
        the answer is consistent with ``distance_m`` at every sample.
        """
        limit = self.width_m if limit_m is None else float(limit_m)
        (lat_a, lon_a), (lat_b, lon_b) = _check_fix(*a), _check_fix(*b)
        proj = self.projection
        if not (proj.covers(lat_a, lon_a) and proj.covers(lat_b, lon_b)):
            da, db = self.distance_m(*a), self.distance_m(*b)
            outside = [da > limit, db > limit]
            first = 0.0 if outside[0] else (1.0 if outside[1] else None)
            return SegmentCheck(max(da, db), sum(outside) / 2, first, math.inf)
        xa, ya, ka = proj.forward_with_scale(lat_a, lon_a)
        xb, yb, kb = proj.forward_with_scale(lat_b, lon_b)
        length = math.hypot(xb - xa, yb - ya)
        step = max(1.0, min(_SAMPLE_STEP_MAX_M, self.width_m / 4))
        n = max(1, min(_MAX_SAMPLES, math.ceil(length / step)))
        s = np.linspace(0.0, 1.0, n + 1)
        d = self._plane_distances(xa + s * (xb - xa), ya + s * (yb - ya)) / ((ka + kb) / 2)
        beyond = d > limit
        first = float(s[int(np.argmax(beyond))]) if beyond.any() else None
        return SegmentCheck(float(d.max()), float(beyond.mean()), first, length / n)

    def segment_distance_m(self, a: Fix, b: Fix) -> float:
        """Largest distance from the centre line along the straight chord between two fixes.

        Both fixes can be inside while the chord is not: a shortcut across a bend between sparse
        fixes. The deviation monitor uses ``check_segment`` for that; this is its headline figure.
        """
        return self.check_segment(a, b).max_distance_m


# ---------------------------------------------------------------------------------------------
# Loading from GeoJSON


def _feature_name(feature: Any, index: int | None = None) -> str:
    props = feature.get("properties") if isinstance(feature, dict) else None
    fid = props.get("id") if isinstance(props, dict) else None
    if fid is None and isinstance(feature, dict):
        fid = feature.get("id")
    if fid is not None:
        return f"corridor {fid!r}"
    return "corridor feature" + (f" #{index}" if index is not None else "")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positions_e7(coords: Any, name: str) -> list[Fix]:
    """GeoJSON [lon, lat(, alt)] positions to (lat_e7, lon_e7), with precise complaints."""
    if not isinstance(coords, list):
        raise GeofenceError(f"{name}: geometry.coordinates must be a list of positions")
    if len(coords) < 2:
        raise GeofenceError(
            f"{name}: LineString has {len(coords)} point(s), a corridor needs at least 2"
        )
    out: list[Fix] = []
    for i, pos in enumerate(coords):
        if not isinstance(pos, list) or not 2 <= len(pos) <= 3 or not all(map(_is_number, pos)):
            raise GeofenceError(f"{name}: position {i} must be [lon, lat] numbers, got {pos!r}")
        lon, lat = pos[0], pos[1]
        if not -90.0 <= lat <= 90.0:
            hint = " (GeoJSON order is [lon, lat]; swapped?)" if -90 <= lon <= 90 else ""
            raise GeofenceError(
                f"{name}: position {i}: latitude {lat} out of range [-90, 90]{hint}"
            )
        if not -180.0 <= lon <= 180.0:
            raise GeofenceError(f"{name}: position {i}: longitude {lon} out of range [-180, 180]")
        out.append((round(lat * E7), round(lon * E7)))
    return out


def _corridor_from_feature(
    feature: Any, name: str, projection: LocalProjection | None = None
) -> Corridor:
    fid, width, verts = _corridor_parts(feature, name)
    return Corridor(corridor_id=fid, width_m=width, vertices_e7=tuple(verts), projection=projection)


def _corridor_parts(feature: Any, name: str) -> tuple[str, float, list[Fix]]:
    """Validated (id, width_m, vertices) of a corridor Feature, before any projection."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise GeofenceError(f"{name}: not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise GeofenceError(f"{name}: missing properties object")
    kind = props.get("kind", "corridor")
    if kind != "corridor":
        raise GeofenceError(f"{name}: properties.kind is {kind!r}, expected 'corridor'")
    fid = props.get("id")
    if not isinstance(fid, str) or not fid.strip():
        raise GeofenceError(f"{name}: properties.id must be a non-empty string, got {fid!r}")
    if "width_m" not in props:
        raise GeofenceError(f"{name}: missing properties.width_m")
    width = props["width_m"]
    if not _is_number(width) or width <= 0:
        raise GeofenceError(
            f"{name}: properties.width_m must be a positive number of metres, got {width!r}"
        )
    geom = feature.get("geometry")
    if not isinstance(geom, dict):
        raise GeofenceError(f"{name}: has no geometry")
    if geom.get("type") != "LineString":
        raise GeofenceError(
            f"{name}: geometry type is {geom.get('type')!r}, a corridor must be a 'LineString'"
        )
    return fid, width, _positions_e7(geom.get("coordinates"), name)


def _reject_constant(token: str) -> Any:
    raise GeofenceError(f"{token} is not valid JSON (RFC 8259) and not allowed in a geofence")


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeofenceError(f"{path}: cannot read: {exc}") from exc
    try:  # bounded: a process that imported web3 segfaults on deep JSON (sealtrail.boundedjson)
        return boundedjson.loads(text, max_bytes=64 * 1024 * 1024, max_depth=64,
                                 decoder=_DECODER)
    except boundedjson.JsonBoundError as exc:
        raise GeofenceError(f"{path}: invalid JSON: {str(exc).removeprefix('not JSON: ')}") \
            from None
    except GeofenceError as exc:
        raise GeofenceError(f"{path}: invalid JSON: {exc}") from exc


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_corridor(source: str | Path | Mapping[str, Any]) -> Corridor:
    """Load one corridor from a GeoJSON file path or an already parsed GeoJSON object.

    Accepts a Feature with LineString geometry and properties ``id`` and ``width_m`` (``kind``,
    if present, must be ``"corridor"``), or a FeatureCollection holding exactly one feature with
    ``properties.kind == "corridor"`` (other kinds, such as zones, are ignored). Any problem raises
    ``GeofenceError`` naming the source, the feature and what is wrong; nothing is half-loaded.
    A ``str`` is always a path, never JSON text.
    """
    if isinstance(source, Mapping):
        where, doc = "<geojson>", dict(source)
    else:
        path = Path(source)
        where, doc = str(path), _read_json(path)
    try:
        if not isinstance(doc, dict):
            raise GeofenceError(f"expected a GeoJSON object, got {type(doc).__name__}")
        gtype = doc.get("type")
        if gtype == "FeatureCollection":
            features = doc.get("features")
            if not isinstance(features, list):
                raise GeofenceError("FeatureCollection has no 'features' list")
            hits = [
                (i, f)
                for i, f in enumerate(features)
                if isinstance(f, dict)
                and isinstance(f.get("properties"), dict)
                and f["properties"].get("kind") == "corridor"
            ]
            if len(hits) != 1:
                names = ", ".join(_feature_name(f, i) for i, f in hits) or "none"
                raise GeofenceError(
                    "FeatureCollection must hold exactly one feature with properties.kind == "
                    f"'corridor', found {len(hits)} ({names})"
                )
            i, feature = hits[0]
            return _corridor_from_feature(feature, _feature_name(feature, i))
        if gtype == "Feature":
            return _corridor_from_feature(doc, _feature_name(doc))
        raise GeofenceError(f"expected a GeoJSON Feature or FeatureCollection, got type {gtype!r}")
    except GeofenceError as exc:
        raise GeofenceError(f"{where}: {exc}") from None


def corridor_from_degrees(
    corridor_id: str, width_m: float, lonlat: Sequence[tuple[float, float]]
) -> Corridor:
    """Build a corridor from GeoJSON-order (lon, lat) degree pairs; for code and tests."""
    verts = tuple((round(lat * E7), round(lon * E7)) for lon, lat in lonlat)
    return Corridor(corridor_id=corridor_id, width_m=width_m, vertices_e7=verts)
