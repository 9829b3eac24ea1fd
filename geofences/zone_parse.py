"""Reading zone Features: strict checks in degrees first, projection once the extent is known.

A plan's projection is centred on the bounding box of its corridor *and* zones, which is known
only once every feature has been read; so features become ``ZoneDraft``s (validated, in degrees)
and are projected together by ``project_zone``. Errors name the feature (``zone 'id' (#i)``) and
the problem; the caller prefixes the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import Geometry, Point

from geofences.corridor import GeofenceError
from geofences.geojson import (
    LonLat,
    area_geometry,
    feature_label,
    is_number,
    parse_time_ms,
    position,
)
from geofences.projection import MAX_CORRIDOR_RADIUS_M, LocalProjection, great_circle_m
from geofences.zones import ROLES, Zone, ZoneIndex

_DENSIFY_DEG = 0.002
"""Longest polygon edge, in degrees, kept straight in the plane (≤ 222 m: bow < 0.5 mm)."""


@dataclass(frozen=True)
class ZoneDraft:
    """A zone parsed and checked in degrees, before projection (the projection depends on the
    whole plan's extent, which is known only once every feature has been read)."""

    zone_id: str
    role: str
    name: str | None
    valid_from_ms: int | None
    valid_until_ms: int | None
    shape: Geometry  # (lon, lat) degrees: Polygon | MultiPolygon | Point
    radius_m: float | None
    label: str

    def lonlat_points(self) -> list[LonLat]:
        """Points whose bounding box bounds the zone (circle: centre +- radius)."""
        if self.radius_m is None:
            return [(float(x), float(y)) for x, y in shapely.get_coordinates(self.shape)]
        lon, lat = self.shape.x, self.shape.y
        dlat = self.radius_m / 111_000.0
        dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
        return [(lon - dlon, lat - dlat), (lon + dlon, min(90.0, lat + dlat))]


def parse_zone_feature(feature: Any, index: int) -> ZoneDraft:
    """One zone Feature to a ``ZoneDraft``; errors name the feature and the problem."""
    label = feature_label(feature, index, "zone")
    try:
        return _parse_zone_feature(feature, label)
    except GeofenceError as exc:
        raise GeofenceError(f"{label}: {exc}") from None


def _parse_zone_feature(feature: Any, label: str) -> ZoneDraft:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise GeofenceError("not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise GeofenceError("missing properties object")
    kind = props.get("kind", "zone")
    if kind != "zone":
        raise GeofenceError(f"properties.kind is {kind!r}; only zones belong here")
    zid = props.get("id")
    if not isinstance(zid, str) or not zid.strip():
        raise GeofenceError(f"properties.id must be a non-empty string, got {zid!r}")
    role = props.get("role")
    if role not in ROLES:
        raise GeofenceError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    name = props.get("name")
    if name is not None and not isinstance(name, str):
        raise GeofenceError(f"properties.name must be a string, got {name!r}")
    vf = props.get("valid_from")
    vu = props.get("valid_until")
    vf_ms = None if vf is None else parse_time_ms(vf, "valid_from")
    vu_ms = None if vu is None else parse_time_ms(vu, "valid_until")
    if vf_ms is not None and vu_ms is not None and vu_ms <= vf_ms:
        raise GeofenceError(f"valid_until {vu!r} is not after valid_from {vf!r}")
    geom = feature.get("geometry")
    if not isinstance(geom, dict):
        raise GeofenceError("has no geometry")
    gtype = geom.get("type")
    radius = props.get("radius_m")
    if gtype == "Point":
        if radius is None:
            raise GeofenceError("a Point zone needs properties.radius_m (metres)")
        if not is_number(radius) or radius <= 0:
            raise GeofenceError(f"radius_m must be a number > 0 (metres), got {radius!r}")
        lon, lat = position(geom.get("coordinates"), "Point coordinates")
        shape: Geometry = Point(lon, lat)
        radius = float(radius)
    elif gtype in ("Polygon", "MultiPolygon"):
        if radius is not None:
            raise GeofenceError(f"radius_m applies to Point zones only, not a {gtype}")
        shape = area_geometry(geom)
    else:
        raise GeofenceError(
            f"geometry type {gtype!r} is not a zone (Polygon, MultiPolygon or Point + radius_m)"
        )
    return ZoneDraft(zid, role, name, vf_ms, vu_ms, shape, radius, label)


def parse_zone_collection(doc: Any) -> list[ZoneDraft]:
    """A FeatureCollection of zones; duplicate ids are refused, naming both features."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise GeofenceError("zones must be a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise GeofenceError("zones FeatureCollection has no 'features' list")
    drafts: list[ZoneDraft] = []
    seen: dict[str, str] = {}
    for i, f in enumerate(features):
        d = parse_zone_feature(f, i)
        if d.zone_id in seen:
            raise GeofenceError(f"{d.label}: duplicate id (also used by {seen[d.zone_id]})")
        seen[d.zone_id] = d.label
        drafts.append(d)
    return drafts


def project_zone(draft: ZoneDraft, proj: LocalProjection) -> Zone:
    """Project a draft with the shared projection; refuses zones outside its domain."""
    pts = draft.lonlat_points()
    far = max(great_circle_m(proj.lat0_deg, proj.lon0_deg, lat, lon) for lon, lat in pts)
    if far > MAX_CORRIDOR_RADIUS_M:
        raise GeofenceError(
            f"{draft.label}: lies {far / 1000:.0f} km from the plan's centre, more than the "
            f"{MAX_CORRIDOR_RADIUS_M / 1000:.0f} km the local projection allows"
        )

    def fwd(lonlat: np.ndarray) -> np.ndarray:
        x, y, _ = proj.forward_many(lonlat[:, 1], lonlat[:, 0])
        return np.column_stack((x, y))

    if draft.radius_m is not None:
        geom: Geometry = shapely.transform(draft.shape, fwd)
    else:
        dense = shapely.segmentize(draft.shape, _DENSIFY_DEG)
        geom = shapely.transform(dense, fwd)
        if not geom.is_valid:  # projection is conformal and smooth: only if degenerate
            raise GeofenceError(f"{draft.label}: {shapely.is_valid_reason(geom)} once projected")
    first = shapely.get_coordinates(draft.shape)[0]
    _, _, k = proj.forward_with_scale(float(first[1]), float(first[0]))
    return Zone(
        zone_id=draft.zone_id,
        role=draft.role,
        name=draft.name,
        valid_from_ms=draft.valid_from_ms,
        valid_until_ms=draft.valid_until_ms,
        geometry=geom,
        radius_m=draft.radius_m,
        anchor_deg=(float(first[0]), float(first[1])),
        scale=k,
    )


def zones_from_geojson(
    doc: Any, projection: LocalProjection | None = None, source: str = "<zones>"
) -> ZoneIndex:
    """Build a ``ZoneIndex`` from a zones FeatureCollection (already parsed JSON).

    Without a projection, one is centred on the zones' bounding box. Errors are
    ``GeofenceError("<source>: zone 'id' (#i): problem")``; nothing is half-built.
    """
    try:
        drafts = parse_zone_collection(doc)
        if projection is None:
            pts = [(lat, lon) for d in drafts for lon, lat in d.lonlat_points()]
            projection = LocalProjection.around(pts) if pts else LocalProjection(0.0, 0.0)
        return ZoneIndex([project_zone(d, projection) for d in drafts], projection)
    except GeofenceError as exc:
        raise GeofenceError(f"{source}: {exc}") from None
