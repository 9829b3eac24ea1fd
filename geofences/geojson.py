"""Strict readers for the GeoJSON (RFC 7946) and JSON pieces of zones, plans and fence bundles.

Customs writes these files by hand or exports them from a GIS; a mistake must come back as one
sentence naming the file, the feature and what is wrong, never as a stack trace or, worse, a zone
that silently covers the wrong place. Everything here raises ``GeofenceError`` with a message
*relative to the feature* (the callers prefix the source and the feature's name).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import shapely
from shapely import MultiPolygon, Polygon

from geofences.corridor import GeofenceError
from sealtrail import boundedjson

LonLat = tuple[float, float]


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def feature_label(feature: Any, index: int, what: str = "feature") -> str:
    """``zone 'gate-3' (#2)`` or ``feature #2``: how errors name a feature."""
    props = feature.get("properties") if isinstance(feature, dict) else None
    fid = props.get("id") if isinstance(props, dict) else None
    if fid is None and isinstance(feature, dict):
        fid = feature.get("id")
    usable = isinstance(fid, str) and fid.strip()
    if usable or (isinstance(fid, int) and not isinstance(fid, bool)):
        return f"{what} {fid!r} (#{index})"
    return f"feature #{index}"


def _reject_constant(token: str) -> Any:
    raise GeofenceError(f"{token} is not valid JSON (RFC 8259)")


MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
"""A plan or fence bundle is about ten levels deep (a MultiPolygon's coordinates are four)."""


def loads_strict(data: bytes | str, what: str) -> Any:
    """Parse JSON text; NaN/Infinity and duplicate object keys are refused.

    A duplicate key in a signed plan would let two readers see two different plans in the same
    signed bytes (Python keeps the last, other parsers the first), so it is an error.
    """

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise GeofenceError(f"duplicate key {k!r} in a JSON object")
            out[k] = v
        return out

    decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=no_dupes)
    try:  # bounded: a process that imported web3 segfaults on deep JSON (sealtrail.boundedjson)
        return boundedjson.loads(data, max_bytes=MAX_DOCUMENT_BYTES, max_depth=MAX_DEPTH,
                                 decoder=decoder)
    except boundedjson.JsonBoundError as exc:
        raise GeofenceError(f"{what} is not valid JSON: {_detail(exc)}") from None
    except GeofenceError as exc:
        raise GeofenceError(f"{what} is not valid JSON: {exc}") from None


def _detail(exc: boundedjson.JsonBoundError) -> str:
    return str(exc).removeprefix("not JSON: ")


def parse_time_ms(value: Any, field: str) -> int:
    """RFC 3339 date-time with an explicit offset (``Z`` or ``+hh:mm``) to Unix milliseconds."""
    if not isinstance(value, str):
        raise GeofenceError(f"{field} must be an RFC 3339 date-time string, got {value!r}")
    text = value.strip()
    if "T" not in text.upper() and " " not in text:
        raise GeofenceError(f"{field} {value!r} needs a time of day (RFC 3339 date-time)")
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise GeofenceError(f"{field} {value!r} is not an RFC 3339 date-time") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise GeofenceError(f"{field} {value!r} has no UTC offset (add 'Z' or '+hh:mm')")
    return round(dt.timestamp() * 1000)


def position(pos: Any, where: str) -> LonLat:
    """One GeoJSON position ``[lon, lat(, alt)]`` in range, as (lon, lat) degrees."""
    if not isinstance(pos, list) or not 2 <= len(pos) <= 3 or not all(map(is_number, pos)):
        raise GeofenceError(f"{where} must be [lon, lat] numbers, got {pos!r}")
    lon, lat = float(pos[0]), float(pos[1])
    if not -90.0 <= lat <= 90.0:
        hint = " (GeoJSON order is [lon, lat]; swapped?)" if -90 <= lon <= 90 else ""
        raise GeofenceError(f"{where}: latitude {lat} out of range [-90, 90]{hint}")
    if not -180.0 <= lon <= 180.0:
        raise GeofenceError(f"{where}: longitude {lon} out of range [-180, 180]")
    return lon, lat


def _ring(coords: Any, where: str) -> list[LonLat]:
    if not isinstance(coords, list):
        raise GeofenceError(f"{where} must be a list of positions")
    pts = [position(p, f"{where} position {i}") for i, p in enumerate(coords)]
    if len(pts) < 4:
        raise GeofenceError(f"{where} has {len(pts)} positions; a linear ring needs at least 4")
    if pts[0] != pts[-1]:
        raise GeofenceError(
            f"{where} is not closed: first position {list(pts[0])} differs from last "
            f"{list(pts[-1])} (RFC 7946 rings repeat the first position at the end)"
        )
    return pts


def _polygon(coords: Any, where: str) -> Polygon:
    if not isinstance(coords, list) or not coords:
        raise GeofenceError(f"{where} must be a non-empty list of linear rings")
    rings = [
        _ring(r, f"{where} {'exterior ring' if i == 0 else f'hole {i}'}")
        for i, r in enumerate(coords)
    ]
    return Polygon(rings[0], rings[1:])


def area_geometry(geom: dict[str, Any]) -> Polygon | MultiPolygon:
    """A Polygon or MultiPolygon geometry object in (lon, lat) degrees, checked for validity.

    Validity is OGC simple-features validity (shapely/GEOS ``is_valid``): no self-intersecting
    rings, holes inside their shell, parts of a MultiPolygon not overlapping. The reason GEOS
    gives (``explain_validity``) is passed on, with the place in degrees.
    """
    gtype, coords = geom.get("type"), geom.get("coordinates")
    if gtype == "Polygon":
        shape: Polygon | MultiPolygon = _polygon(coords, "polygon")
    else:
        if not isinstance(coords, list) or not coords:
            raise GeofenceError("MultiPolygon coordinates must be a non-empty list of polygons")
        shape = MultiPolygon([_polygon(c, f"polygon {i}") for i, c in enumerate(coords)])
    if not shape.is_valid:
        raise GeofenceError(f"invalid {gtype}: {shapely.is_valid_reason(shape)}")
    if shape.area == 0:
        raise GeofenceError(f"{gtype} has zero area")
    return shape
