"""Zones: loading and validation errors, metric accuracy against an independent geodesic, and the
grid / STR-tree / vectorised queries against a brute-force shapely check on random points."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from test_geofences import e7, north_of, vincenty_direct, vincenty_inverse

from geofences import (
    GeofenceError,
    LocalProjection,
    Zone,
    ZoneIndex,
    zones_from_geojson,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def feature(zid: str, geometry: dict[str, Any], role: str = "forbidden", **props: Any) -> dict:
    return {"type": "Feature", "properties": {"id": zid, "role": role, **props},
            "geometry": geometry}


def square(lon: float, lat: float, half_deg: float) -> dict[str, Any]:
    h = half_deg
    ring = [[lon - h, lat - h], [lon + h, lat - h], [lon + h, lat + h], [lon - h, lat + h],
            [lon - h, lat - h]]
    return {"type": "Polygon", "coordinates": [ring]}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


# ------------------------------------------------------------------------------------------
# Accuracy against Vincenty


@pytest.mark.parametrize("lat", [-34.9, 0.0, 45.0, 60.0])
@pytest.mark.parametrize("offset", [5.0, 120.0, 2_000.0])
def test_circle_distance_matches_geodesic(lat: float, offset: float) -> None:
    """A Point + radius zone is an exact circle: distance = geodesic to the centre - radius."""
    idx = zones_from_geojson(collection(feature("c", point(10.0, lat), radius_m=300)))
    for az in (0.0, 45.0, 90.0, 200.0):
        la, lo = vincenty_direct(lat, 10.0, az, 300.0 + offset)
        got = idx.distance_m("c", *e7(la, lo))
        ref = vincenty_inverse(lat, 10.0, *_deg(e7(la, lo))) - 300.0
        assert got == pytest.approx(ref, abs=0.01)
        la, lo = vincenty_direct(lat, 10.0, az, 300.0 - min(offset, 290.0))
        assert idx.distance_m("c", *e7(la, lo)) == 0.0
        assert [z.zone_id for z in idx.containing(*e7(la, lo), T0)] == ["c"]


def _deg(fix: tuple[int, int]) -> tuple[float, float]:
    return fix[0] / 1e7, fix[1] / 1e7


def test_long_edge_follows_the_parallel_not_the_projected_chord() -> None:
    """RFC 7946 edges are straight in lon/lat; a 40 km edge along 45°N must stay on 45°N.

    Projected without densifying, the edge would bow ~30 m off the parallel at its middle.
    """
    ring = [[0.0, 45.0], [0.5, 45.0], [0.5, 45.2], [0.0, 45.2], [0.0, 45.0]]
    idx = zones_from_geojson(
        collection(feature("big", {"type": "Polygon", "coordinates": [ring]}))
    )
    for metres in (3.0, 20.0):
        inside = north_of(45.0, 0.25, metres)
        outside = north_of(45.0, 0.25, -metres)
        assert idx.distance_m("big", *e7(*inside)) == 0.0
        d = idx.distance_m("big", *e7(*outside))
        assert d == pytest.approx(vincenty_inverse(45.0, 0.25, *_deg(e7(*outside))), abs=0.02)


def test_validity_windows_are_half_open() -> None:
    idx = zones_from_geojson(collection(feature(
        "w", square(0, 0, 0.01), valid_from="2026-01-01T00:00:00Z",
        valid_until="2026-01-02T00:00:00+00:00")))
    z = idx["w"]
    assert (z.valid_from_ms, z.valid_until_ms) == (T0, T0 + 86_400_000)
    assert not z.active_at(T0 - 1) and z.active_at(T0) and not z.active_at(T0 + 86_400_000)
    assert z.active_at(None)
    assert idx.containing(0, 0, T0 - 1) == [] and idx.containing(0, 0, None) == [z]
    hits = idx.containing_many([0, 0, 0], [0, 0, 0], [T0 - 1, T0, T0 + 86_400_000])
    assert hits.fix_index.tolist() == [1]


def test_lookup_helpers() -> None:
    idx = zones_from_geojson(collection(
        feature("a", square(0, 0, 0.01), role="port_area", name="Quay 1"),
        feature("b", point(0.1, 0), role="authorized_stop", radius_m=50)))
    assert len(idx) == 2 and "a" in idx and "zz" not in idx and idx.get("zz") is None
    assert [z.zone_id for z in idx.by_role("authorized_stop")] == ["b"]
    assert idx["a"].name == "Quay 1" and idx["b"].is_circle and not idx["a"].is_circle
    with pytest.raises(KeyError, match="zz"):
        idx["zz"]
    assert idx.near(*e7(0, 0.0105)) == []
    near = idx.near(*e7(0, 0.0105), within_m=100)
    assert [z.zone_id for z, _ in near] == ["a"] and 50 < near[0][1] < 60
    with pytest.raises(GeofenceError, match=">= 0"):
        idx.containing(0, 0, None, margin_m=-1)
    with pytest.raises(GeofenceError, match="lat_e7"):
        idx.containing(91 * 10**7, 0)


# ------------------------------------------------------------------------------------------
# Index vs brute force


def _random_zones(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Polygons (convex, star-shaped, with holes, multi), circles; 10 m to 5 km; some windows."""
    feats = []
    for i in range(n):
        lon, lat = -56.2 + rng.uniform(-0.15, 0.15), -34.9 + rng.uniform(-0.1, 0.1)
        size = 10 ** rng.uniform(1, 3.7)  # metres
        deg = size / 111_000
        props: dict[str, Any] = {}
        if rng.random() < 0.2:
            props["valid_from"] = "2026-01-01T00:00:00Z"
            props["valid_until"] = "2026-01-01T01:00:00Z"
        kind = rng.random()
        if kind < 0.3:
            feats.append(feature(f"z{i}", point(lon, lat), radius_m=round(size, 1), **props))
            continue
        k = rng.randint(5, 12)
        ring = []
        for j in range(k):
            ang = 2 * math.pi * j / k
            r = deg * rng.uniform(0.4, 1.0)
            ring.append([lon + r * math.cos(ang) / 0.82, lat + r * math.sin(ang)])
        ring.append(ring[0])
        coords: list[Any] = [ring]
        if kind < 0.5:  # a hole
            h = deg * 0.2
            coords.append([[lon - h, lat - h], [lon - h, lat + h], [lon + h, lat + h],
                           [lon + h, lat - h], [lon - h, lat - h]])
            geom = {"type": "Polygon", "coordinates": coords}
        elif kind < 0.6:
            far = [[p[0] + 3 * deg / 0.82, p[1]] for p in ring]
            geom = {"type": "MultiPolygon", "coordinates": [[ring], [far]]}
        else:
            geom = {"type": "Polygon", "coordinates": coords}
        feats.append(feature(f"z{i}", geom, **props))
    return feats


def _brute(index: ZoneIndex, lat_e7: int, lon_e7: int, t_ms: int | None, margin: float
           ) -> list[str]:
    """Every zone, no index: shapely on the projected geometry, exact circle test."""
    x, y, k = index.projection.forward_with_scale(lat_e7 / 1e7, lon_e7 / 1e7)
    pt = shapely.Point(x, y)
    out = []
    for z in index.zones:
        if not z.active_at(t_ms):
            continue
        if z.radius_m is not None:
            hit = math.hypot(x - z.geometry.x, y - z.geometry.y) <= (z.radius_m + margin) * k
        else:
            hit = shapely.distance(z.geometry, pt) <= margin * k
        if hit:
            out.append(z.zone_id)
    return out


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), margin=st.sampled_from([0.0, 7.5, 60.0, 400.0]))
def test_containing_matches_brute_force(seed: int, margin: float) -> None:
    """Random zones, random points clustered on their outlines (where the grid's boundary cells
    and the margins matter) and scattered around; scalar, vectorised and brute force agree.
    400 m is beyond the grid's pad, so the STR-tree fallback is checked too."""
    rng = random.Random(seed)
    idx = zones_from_geojson(collection(*_random_zones(rng, 60)))
    pts: list[tuple[int, int]] = []
    for z in rng.sample(idx.zones, 25):
        lon, lat = z.anchor_deg
        for _ in range(12):
            pts.append(e7(lat + rng.gauss(0, 0.0008), lon + rng.gauss(0, 0.0008)))
    pts += [e7(-34.9 + rng.uniform(-0.12, 0.12), -56.2 + rng.uniform(-0.18, 0.18))
            for _ in range(200)]
    times = [rng.choice([None, T0 - 1, T0 + 1000]) for _ in pts]
    t_arr = np.array([T0 + 1000] * len(pts))
    hits = idx.containing_many([p[0] for p in pts], [p[1] for p in pts], t_arr, margin)
    vec: dict[int, list[str]] = {}
    for f, zi in zip(hits.fix_index.tolist(), hits.zone_index.tolist(), strict=True):
        vec.setdefault(f, []).append(idx.zones[zi].zone_id)
    n_hit = 0
    for i, ((la, lo), t) in enumerate(zip(pts, times, strict=True)):
        expect = _brute(idx, la, lo, t, margin)
        got = [z.zone_id for z in idx.containing(la, lo, t, margin)]
        assert got == expect, (i, la, lo, t)
        assert vec.get(i, []) == _brute(idx, la, lo, T0 + 1000, margin), (i, la, lo)
        n_hit += bool(expect)
    assert n_hit > 20  # the sample really exercised zones, not only empty space


def test_grid_inside_cells_are_really_inside() -> None:
    """A big zone is mostly "inside" grid cells, answered without a geometric test: every fix
    in it must still come out at distance 0, and every fix just outside must not."""
    idx = zones_from_geojson(collection(
        feature("big", square(-56.2, -34.9, 0.05)),
        feature("round", point(-56.0, -34.9, ), radius_m=4_000)))
    rng = random.Random(3)
    for _ in range(2000):
        la, lo = -34.9 + rng.uniform(-0.06, 0.06), -56.2 + rng.uniform(-0.06, 0.06)
        inside = abs(la + 34.9) <= 0.05 and abs(lo + 56.2) <= 0.05
        got = idx.near(*e7(la, lo), None, 0.0)
        assert bool(got) == inside
        la, lo = -34.9 + rng.uniform(-0.05, 0.05), -56.0 + rng.uniform(-0.05, 0.05)
        ref = vincenty_inverse(-34.9, -56.0, la, lo)
        if abs(ref - 4000) > 0.05:
            assert bool(idx.containing(*e7(la, lo))) == (ref < 4000)


def test_empty_index_and_far_fixes() -> None:
    empty = ZoneIndex([], LocalProjection(0, 0))
    assert empty.containing(0, 0) == [] and empty.containing_many([0], [0]).fix_index.size == 0
    idx = zones_from_geojson(collection(feature("a", square(0, 0, 0.01))))
    far = e7(60.0, 120.0)  # outside the projection's domain
    assert idx.containing(*far) == []
    assert idx.containing_many([far[0]], [far[1]], None, 1e6).fix_index.size == 0
    assert idx.distance_m("a", *far) > 1e7


# ------------------------------------------------------------------------------------------
# Loading errors: each names the source, the feature and the problem


GOOD = collection(
    feature("office", square(-56.2, -34.9, 0.001), role="customs_office", name="Office"),
    feature("stop", point(-56.19, -34.9), role="authorized_stop", radius_m=40),
)


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
F0, F1 = ["features", 0], ["features", 1]
BOWTIE = [[[0, 0], [0.01, 0.01], [0.01, 0], [0, 0.01], [0, 0]]]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ([*F1, "properties", "id"], "office", r"zone 'office' \(#1\): duplicate id .*#0"),
        ([*F0, "properties", "role"], "customs", r"zone 'office' \(#0\): unknown role 'customs'"),
        ([*F0, "properties", "role"], _DELETE, r"'office' \(#0\): unknown role None"),
        ([*F0, "properties", "id"], "", r"feature #0: properties.id must be a non-empty"),
        ([*F1, "geometry", "coordinates"], [-56.19, -95.0],
         r"'stop' \(#1\): Point coordinates: latitude -95.0 out of range"),
        ([*F1, "geometry", "coordinates"], [34.9, 136.19], r"latitude 136.19 .*swapped"),
        ([*F1, "geometry", "coordinates"], [200.0, 0.0], r"longitude 200.0 out of range"),
        ([*F0, "geometry", "coordinates", 0, 4], [-56.0, -34.0],
         r"'office' \(#0\): polygon exterior ring is not closed"),
        ([*F0, "geometry", "coordinates", 0], [[0, 0], [1, 0], [0, 0]],
         r"exterior ring has 3 positions"),
        ([*F0, "geometry", "coordinates"], BOWTIE,
         r"'office' \(#0\): invalid Polygon: Self-intersection"),
        ([*F0, "geometry", "coordinates", 0, 2], ["x", 1], r"position 2 must be \[lon, lat\]"),
        ([*F1, "properties", "radius_m"], 0, r"'stop' \(#1\): radius_m must be a number > 0"),
        ([*F1, "properties", "radius_m"], -5, r"radius_m must be a number > 0 \(metres\), got -5"),
        ([*F1, "properties", "radius_m"], _DELETE, r"'stop' \(#1\): a Point zone needs .*radius_m"),
        ([*F0, "properties", "radius_m"], 10, r"radius_m applies to Point zones only"),
        ([*F0, "properties", "valid_from"], "2026-02-01T00:00:00Z", None),
        ([*F0, "properties", "valid_until"], "2026-01-01T00:00:00Z", None),
        ([*F0, "properties", "valid_from"], "2026-01-01", r"needs a time of day"),
        ([*F0, "properties", "valid_from"], "2026-01-01T00:00:00", r"has no UTC offset"),
        ([*F0, "properties", "valid_from"], "yesterday", r"not an RFC 3339"),
        ([*F0, "geometry"], {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
         r"geometry type 'LineString' is not a zone"),
        ([*F0, "geometry"], _DELETE, r"'office' \(#0\): has no geometry"),
        ([*F0, "properties", "kind"], "corridor", r"kind is 'corridor'"),
        (["features"], "nope", r"no 'features' list"),
    ],
)
def test_zone_errors(path: list[Any], value: Any, message: str | None) -> None:
    doc = _mutate(path, value)
    if message is None:  # the window pair: only wrong together
        doc["features"][0]["properties"].update(
            valid_from="2026-02-01T00:00:00Z", valid_until="2026-01-01T00:00:00Z")
        message = r"'office' \(#0\): valid_until '2026-01-01T00:00:00Z' is not after valid_from"
    with pytest.raises(GeofenceError, match=r"^zones\.geojson: .*" + message):
        zones_from_geojson(doc, source="zones.geojson")


def test_multipolygon_overlap_and_hole_outside_are_invalid() -> None:
    a = square(0, 0, 0.01)["coordinates"]
    b = square(0.005, 0, 0.01)["coordinates"]
    with pytest.raises(GeofenceError, match=r"'m' \(#0\): invalid MultiPolygon"):
        zones_from_geojson(collection(feature("m", {"type": "MultiPolygon",
                                                    "coordinates": [a, b]})))
    hole_out = [a[0], square(1, 1, 0.001)["coordinates"][0]]
    with pytest.raises(GeofenceError, match=r"'h' \(#0\): invalid Polygon: Hole lies outside"):
        zones_from_geojson(collection(feature("h", {"type": "Polygon", "coordinates": hole_out})))


def test_zone_geometry_is_projected_metres() -> None:
    idx = zones_from_geojson(GOOD)
    office: Zone = idx["office"]
    # 0.002° x 0.002° at 34.9°S: ~182.6 m east-west by ~221.8 m north-south.
    minx, miny, maxx, maxy = office.geometry.bounds
    assert maxx - minx == pytest.approx(182.6, abs=0.5)
    assert maxy - miny == pytest.approx(221.8, abs=0.5)
    assert idx.projection.lat0_deg == pytest.approx(-34.9)
