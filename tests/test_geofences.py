"""Tests for the pure geofences package: projection accuracy, corridor distance, loader errors,
and the route deviation state machine.

Expected distances come from an independent Vincenty (WGS 84) implementation below, never from
the code under test.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences import (
    LEAVING,
    OFF_ROUTE,
    ON_ROUTE,
    ROUTE_DEVIATION,
    ROUTE_RETURN,
    Corridor,
    DeviationEvent,
    DeviationMonitor,
    DeviationParams,
    GeofenceError,
    LocalProjection,
    corridor_from_degrees,
    load_corridor,
)

# ------------------------------------------------------------------------------------------
# Independent geodesic reference: Vincenty (1975) on WGS 84.

A, F = 6378137.0, 1 / 298.257223563
B = A * (1 - F)


def _ab(u2: float) -> tuple[float, float]:
    a = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    b = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    return a, b


def _dsigma(b: float, sin_s: float, cos_s: float, c2m: float) -> float:
    return (
        b
        * sin_s
        * (
            c2m
            + b
            / 4
            * (cos_s * (-1 + 2 * c2m**2) - b / 6 * c2m * (-3 + 4 * sin_s**2) * (-3 + 4 * c2m**2))
        )
    )


def vincenty_inverse(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ellipsoidal distance in metres (converges for all but near-antipodal points)."""
    u1, u2_ = math.atan((1 - F) * math.tan(math.radians(lat1))), math.atan(
        (1 - F) * math.tan(math.radians(lat2))
    )
    big_l = math.radians(lon2 - lon1)
    lam = big_l
    su1, cu1, su2, cu2 = math.sin(u1), math.cos(u1), math.sin(u2_), math.cos(u2_)
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        sin_s = math.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        if sin_s == 0:
            return 0.0
        cos_s = su1 * su2 + cu1 * cu2 * cl
        sigma = math.atan2(sin_s, cos_s)
        sin_a = cu1 * cu2 * sl / sin_s
        cos2a = 1 - sin_a**2
        c2m = cos_s - 2 * su1 * su2 / cos2a if cos2a else 0.0
        c = F / 16 * cos2a * (4 + F * (4 - 3 * cos2a))
        lam_new = big_l + (1 - c) * F * sin_a * (
            sigma + c * sin_s * (c2m + c * cos_s * (-1 + 2 * c2m**2))
        )
        if abs(lam_new - lam) < 1e-13:
            lam = lam_new
            break
        lam = lam_new
    a_, b_ = _ab(cos2a * (A**2 - B**2) / B**2)
    return B * a_ * (sigma - _dsigma(b_, sin_s, cos_s, c2m))


def vincenty_direct(lat1: float, lon1: float, az_deg: float, s: float) -> tuple[float, float]:
    """Point reached from (lat1, lon1) going ``s`` metres at initial azimuth ``az_deg``."""
    a1 = math.radians(az_deg)
    u1 = math.atan((1 - F) * math.tan(math.radians(lat1)))
    su1, cu1 = math.sin(u1), math.cos(u1)
    sigma1 = math.atan2(math.tan(u1), math.cos(a1))
    sin_a = cu1 * math.sin(a1)
    cos2a = 1 - sin_a**2
    a_, b_ = _ab(cos2a * (A**2 - B**2) / B**2)
    sigma = s / (B * a_)
    for _ in range(200):
        c2m = math.cos(2 * sigma1 + sigma)
        new = s / (B * a_) + _dsigma(b_, math.sin(sigma), math.cos(sigma), c2m)
        if abs(new - sigma) < 1e-14:
            sigma = new
            break
        sigma = new
    c2m = math.cos(2 * sigma1 + sigma)
    ss, cs = math.sin(sigma), math.cos(sigma)
    lat2 = math.atan2(
        su1 * cs + cu1 * ss * math.cos(a1),
        (1 - F) * math.hypot(sin_a, su1 * ss - cu1 * cs * math.cos(a1)),
    )
    lam = math.atan2(ss * math.sin(a1), cu1 * cs - su1 * ss * math.cos(a1))
    c = F / 16 * cos2a * (4 + F * (4 - 3 * cos2a))
    big_l = lam - (1 - c) * F * sin_a * (sigma + c * ss * (c2m + c * cs * (-1 + 2 * c2m**2)))
    return math.degrees(lat2), lon1 + math.degrees(big_l)


def e7(lat: float, lon: float) -> tuple[int, int]:
    return round(lat * 1e7), round(lon * 1e7)


def north_of(lat: float, lon: float, metres: float) -> tuple[float, float]:
    """``metres`` due north (negative: south) along the meridian, a geodesic."""
    return vincenty_direct(lat, lon, 0.0 if metres >= 0 else 180.0, abs(metres))


def parallel_corridor(lat: float, lon_a: float, lon_b: float, width: float, step: float = 0.001):
    n = round((lon_b - lon_a) / step)
    return corridor_from_degrees("par", width, [(lon_a + i * step, lat) for i in range(n + 1)])


def test_vincenty_reference_self_check() -> None:
    # 1 degree of latitude at the equator and a published long line (Flinders Peak - Buninyong).
    assert vincenty_inverse(0, 0, 1, 0) == pytest.approx(110574.389, abs=0.01)
    s = vincenty_inverse(-37.95103342, 144.42486789, -37.65282114, 143.92649554)
    assert s == pytest.approx(54972.271, abs=0.001)
    lat, lon = vincenty_direct(-37.95103342, 144.42486789, 306.86815920, 54972.271)
    assert lat == pytest.approx(-37.65282114, abs=1e-8)
    assert lon == pytest.approx(143.92649554, abs=1e-8)


# ------------------------------------------------------------------------------------------
# Projection


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-80, 80), st.floats(-179, 179), st.floats(-10, 10), st.floats(-15, 15)
)
def test_projection_round_trip(lat0: float, lon0: float, dlat: float, dlon: float) -> None:
    p = LocalProjection(lat0, lon0)
    lat, lon = max(-89.0, min(89.0, lat0 + dlat)), lon0 + dlon
    lat2, lon2 = p.inverse(*p.forward(lat, lon))
    assert lat2 == pytest.approx(lat, abs=1e-9)
    assert (lon2 - lon + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)


def test_projection_origin_and_scale() -> None:
    p = LocalProjection(-33.9, 18.4)  # southern hemisphere
    assert p.forward(-33.9, 18.4) == (pytest.approx(0, abs=1e-6), pytest.approx(0, abs=1e-6))
    assert p.scale_factor(-30.0, 18.4) == pytest.approx(1.0, abs=1e-12)
    x, _ = p.forward(-33.9, 18.4 + 250_000 / 92_500)
    assert p.scale_factor(-33.9, 18.4 + 250_000 / 92_500) == pytest.approx(
        1 + x * x / (2 * 6371e3**2), rel=5e-6
    )


def projection_error_figures(lat0: float, extent_m: float, seed: int = 7) -> dict[str, float]:
    """Worst errors over an east-west extent (the orientation with the largest scale error)."""
    rng = random.Random(seed)
    half_lon = extent_m / 2 / (111_320 * math.cos(math.radians(lat0)))
    half_lat = extent_m / 2 / 111_000
    p = LocalProjection(lat0, 10.0)
    pair_rel = 0.0
    for _ in range(400):
        pts = [
            (lat0 + rng.uniform(-half_lat, half_lat), 10.0 + rng.uniform(-half_lon, half_lon))
            for _ in range(2)
        ]
        ref = vincenty_inverse(*pts[0], *pts[1])
        if ref < 100:
            continue
        (x1, y1), (x2, y2) = p.forward(*pts[0]), p.forward(*pts[1])
        pair_rel = max(pair_rel, abs(math.hypot(x2 - x1, y2 - y1) - ref) / ref)
    # Offsets from a route along the parallel: the meridian through a vertex is perpendicular.
    step = 0.002
    n = round(2 * half_lon / step)
    verts = [(lat0, 10.0 - half_lon + i * step) for i in range(n + 1)]
    line = shapely.LineString([p.forward(*v) for v in verts])
    off_raw = off_corr = 0.0
    for _ in range(300):
        vlat, vlon = verts[rng.randrange(n + 1)]
        o = rng.uniform(-5000, 5000)
        lat, lon = north_of(vlat, vlon, o)
        x, y, k = p.forward_with_scale(lat, lon)
        plane = line.distance(shapely.Point(x, y))
        off_raw = max(off_raw, abs(plane - abs(o)))
        off_corr = max(off_corr, abs(plane / k - abs(o)))
    return {"pair_rel": pair_rel, "offset_raw_m": off_raw, "offset_corrected_m": off_corr}


@pytest.mark.parametrize("lat0", [45.0, -33.9, 0.0, 60.0])
@pytest.mark.parametrize(
    ("extent_m", "pair_rel_max", "corrected_max_m"), [(50_000, 1e-5, 1e-3), (500_000, 1e-3, 1e-2)]
)
def test_projection_error_figures(
    lat0: float, extent_m: float, pair_rel_max: float, corrected_max_m: float
) -> None:
    """The figures quoted in projection.py and README.md."""
    fig = projection_error_figures(lat0, extent_m)
    assert fig["pair_rel"] <= pair_rel_max, fig
    assert fig["offset_corrected_m"] <= corrected_max_m, fig


# ------------------------------------------------------------------------------------------
# Corridor geometry


@pytest.mark.parametrize("lat", [45.0, -45.0])
@pytest.mark.parametrize("offset", [300.0, -300.0, 3000.0])
def test_point_north_of_east_west_line(lat: float, offset: float) -> None:
    c = parallel_corridor(lat, 10.0, 10.2, width=500)
    plat, plon = north_of(lat, 10.1, offset)
    assert c.distance_m(*e7(plat, plon)) == pytest.approx(abs(offset), abs=0.05)
    assert c.contains(*e7(plat, plon)) == (abs(offset) <= 500)


def test_far_end_of_long_corridor_is_scale_corrected() -> None:
    """190 km from the central meridian the raw plane figure would be ~1.3 m long on 3 km."""
    c = parallel_corridor(45.0, 5.0, 10.0, width=500, step=0.002)
    plat, plon = north_of(45.0, 9.9, 3000.0)
    assert c.distance_m(*e7(plat, plon)) == pytest.approx(3000.0, abs=0.05)


def test_meridian_corridor_two_points_east_offset() -> None:
    c = corridor_from_degrees("m", 1000, [(-60.5, -31.0), (-60.5, -30.0)])  # meridian, south
    plat, plon = vincenty_direct(-30.5, -60.5, 90.0, 750.0)
    assert c.distance_m(*e7(plat, plon)) == pytest.approx(750.0, abs=0.02)
    assert c.contains(*e7(plat, plon))
    assert not c.contains(*e7(plat, plon), margin_m=-300)
    assert c.contains(*e7(*vincenty_direct(-30.5, -60.5, 90.0, 1020.0)), margin_m=30)


def test_far_point_and_bad_fix() -> None:
    c = corridor_from_degrees("asia", 500, [(100.0, 13.0), (100.5, 13.5)])
    assert c.distance_m(0, 0) > 10_000_000  # null island: far, finite, no exception
    assert c.distance_m(0, -1_000_000_000) > 10_000_000
    with pytest.raises(GeofenceError, match="lat_e7"):
        c.distance_m(910_000_000, 0)
    with pytest.raises(GeofenceError, match="integer"):
        c.distance_m(13.0, 100.0)  # type: ignore[arg-type]


def u_corridor(width: float = 500) -> Corridor:
    """Up 20 km along lon -79.9, across 10 km, down 20 km along lon -79.81 (Panama-ish)."""
    up = [(-79.9, 8.5 + i * 0.002) for i in range(91)]
    across = [(-79.9 + i * 0.002, 8.68) for i in range(1, 45)]
    down = [(-79.81, 8.68 - i * 0.002) for i in range(91)]
    return corridor_from_degrees("u", width, up + across + down)


def test_segment_across_a_bend() -> None:
    c = u_corridor()
    a, b = e7(8.5, -79.9), e7(8.5, -79.81)
    mid = (8.5, (-79.9 - 79.81) / 2)
    expected = vincenty_inverse(*mid, 8.5, -79.9)  # nearest: either arm, same latitude
    assert c.distance_m(*a) < 1 and c.distance_m(*b) < 1
    assert c.segment_distance_m(a, b) == pytest.approx(expected, abs=15)
    chk = c.check_segment(a, b)
    assert chk.first_exit_fraction == pytest.approx(500 / 9900, abs=0.01)
    assert chk.outside_fraction == pytest.approx(1 - 1000 / 9900, abs=0.01)
    # Along one arm, the chord stays on the line.
    assert c.segment_distance_m(e7(8.5, -79.9), e7(8.6, -79.9)) < 1
    assert c.along_m(*b) == pytest.approx(c.length_m, abs=1)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-70, 70),
    st.floats(-170, 170),
    st.floats(0, 360),
    st.floats(5, 50_000),
)
def test_distance_symmetric_and_matches_reference(
    lat: float, lon: float, az: float, s: float
) -> None:
    """dist(P, corridor at Q) ≈ dist(Q, corridor at P) ≈ Vincenty(P, Q)."""
    p = (lat, lon)
    q = vincenty_direct(lat, lon, az, s)
    p2, q2 = vincenty_direct(*p, az + 90, 0.5), vincenty_direct(*q, az + 90, 0.5)
    c_q = corridor_from_degrees("q", 10, [(q[1], q[0]), (q2[1], q2[0])])
    c_p = corridor_from_degrees("p", 10, [(p[1], p[0]), (p2[1], p2[0])])
    d_pq, d_qp = c_q.distance_m(*e7(*p)), c_p.distance_m(*e7(*q))
    ref = vincenty_inverse(*p, *q)
    assert d_pq >= 0 and d_qp >= 0
    tol = 0.6 + 1e-5 * ref  # 0.5 m stub segment + e7 rounding + projection
    assert abs(d_pq - ref) <= tol and abs(d_qp - ref) <= tol
    assert c_q.contains(*e7(*p)) == (d_pq <= 10)


# ------------------------------------------------------------------------------------------
# Loader

GOOD: dict[str, Any] = {
    "type": "Feature",
    "properties": {"id": "route-7", "kind": "corridor", "width_m": 400},
    "geometry": {"type": "LineString", "coordinates": [[-79.9, 8.5], [-79.8, 8.6, 12.0]]},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()


def test_load_good_feature_and_collection(tmp_path: Path) -> None:
    c = load_corridor(GOOD)
    assert (c.corridor_id, c.width_m) == ("route-7", 400.0)
    assert c.vertices_e7 == ((85_000_000, -799_000_000), (86_000_000, -798_000_000))
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": "z", "kind": "zone"}, "geometry": None},
            GOOD,
        ],
    }
    f = tmp_path / "plan.geojson"
    f.write_text(json.dumps(fc))
    for src in (f, str(f), fc):
        assert load_corridor(src) == c


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with("properties.width_m", _DELETE), "'route-7': missing properties.width_m"),
        (_with("properties.width_m", "400"), "'route-7': properties.width_m must be a positive"),
        (_with("properties.width_m", -5), "must be a positive number of metres, got -5"),
        (_with("properties.width_m", 0), "must be a positive number"),
        (_with("properties.width_m", True), "must be a positive number"),
        (_with("properties.id", _DELETE), "properties.id must be a non-empty string"),
        (_with("properties.kind", "zone"), "properties.kind is 'zone', expected 'corridor'"),
        (_with("geometry.coordinates", [[-79.9, 8.5]]), "has 1 point(s), a corridor needs at"),
        (
            _with("geometry.coordinates", [[-79.9, 8.5], [-79.9, 8.5]]),
            "at least 2 distinct points, got 1",
        ),
        (
            _with("geometry.coordinates", [[-79.9, 8.5], [-79.8, 95.0]]),
            "position 1: latitude 95.0 out of range",
        ),
        (_with("geometry.coordinates", [[8.5, -79.9], [8.6, -179.8]]), "swapped?"),
        (
            _with("geometry.coordinates", [[-79.9, 8.5], [200.0, 8.6]]),
            "position 1: longitude 200.0 out of range",
        ),
        (_with("geometry.coordinates", [[-79.9, 8.5], ["x", 8.6]]), "position 1 must be"),
        (
            _with("geometry", {"type": "Polygon", "coordinates": []}),
            "geometry type is 'Polygon', a corridor must be a 'LineString'",
        ),
        (_with("geometry", None), "'route-7': has no geometry"),
        (_with("type", "Point"), "expected a GeoJSON Feature or FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "exactly one feature"),
        ({"type": "FeatureCollection", "features": [GOOD, GOOD]}, "found 2 (corridor 'route-7'"),
        (
            _with("geometry.coordinates", [[-79.9, 8.5], [0.0, 40.0]]),
            "more than the 1500 km the local projection allows",
        ),
        (_with("geometry.coordinates", [[179.9, 0.0], [-179.9, 0.0]]), "antimeridian"),
    ],
)
def test_load_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(GeofenceError) as exc:
        load_corridor(doc)
    assert message in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_load_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Feature", ')
    with pytest.raises(GeofenceError, match=r"bad\.geojson: invalid JSON"):
        load_corridor(bad)
    bad.write_text(json.dumps(GOOD).replace("400", "NaN"))
    with pytest.raises(GeofenceError, match="invalid JSON: NaN"):
        load_corridor(bad)
    with pytest.raises(GeofenceError, match="cannot read"):
        load_corridor(tmp_path / "missing.geojson")


# ------------------------------------------------------------------------------------------
# Deviation monitor

LAT = 45.0
WIDTH = 500


class Drive:
    """A truck driving east along the corridor at ~24 m/s, one fix a second by default."""

    def __init__(self, params: DeviationParams | None = None, width: float = WIDTH) -> None:
        self.corridor = parallel_corridor(LAT, 10.0, 10.5, width=width)
        self.monitor = DeviationMonitor(self.corridor, params)
        self.seq = 0
        self.t_ms = 1_700_000_000_000
        self.lon = 10.01
        self.events: list[DeviationEvent] = []

    def fix_at(self, north_m: float) -> tuple[int, int]:
        return e7(*north_of(LAT, self.lon, north_m))

    def go(
        self, north_m: float | list[float], n: int = 1, dt_ms: int = 1000
    ) -> list[DeviationEvent]:
        out: list[DeviationEvent] = []
        offsets = north_m if isinstance(north_m, list) else [north_m] * n
        for o in offsets:
            self.seq += 1
            self.t_ms += dt_ms
            self.lon += 0.0003 * dt_ms / 1000
            out += self.monitor.update(self.seq, self.t_ms, *self.fix_at(o))
        self.events += out
        return out


def test_straight_drive_inside_no_events() -> None:
    d = Drive()
    assert d.go(0.0, 300) == [] and d.go(-350.0, 300) == []
    assert d.monitor.state == ON_ROUTE


def test_gps_noise_near_edge_no_events() -> None:
    rng = random.Random(42)
    d = Drive()
    assert d.go([497 + rng.uniform(-5, 5) for _ in range(900)]) == []  # ~20 % of fixes > 500 m
    assert d.monitor.state in (ON_ROUTE, LEAVING)


def test_short_excursion_no_events() -> None:
    d = Drive()
    d.go(0.0, 30)
    assert d.go(800.0, 59) == []  # 58 s outside: below the 60 s minimum
    assert d.monitor.state == LEAVING
    assert d.go(0.0, 120) == [] and d.monitor.state == ON_ROUTE


def test_real_deviation_then_return_with_hysteresis() -> None:
    rng = random.Random(1)
    d = Drive()
    d.go(0.0, 30)
    first_out = d.seq + 1
    t_first_out = d.t_ms + 1000
    ev = d.go([800.0 + 10 * i for i in range(90)])
    assert [e.type for e in ev] == [ROUTE_DEVIATION]
    dev = ev[0]
    assert dev.seq == first_out + 60 and dev.t_ms - t_first_out == 60_000
    assert dev.off_route_since_ms == t_first_out
    assert dev.evidence_count == 61 and len(dev.evidence) == 32
    assert dev.evidence[:16] == tuple(range(first_out, first_out + 16))
    assert dev.evidence[16:] == tuple(range(dev.seq - 15, dev.seq + 1))
    assert dev.distance_m == 1400 and dev.max_distance_m == 1400
    assert dev.basis == "fixes" and dev.off_route_duration_ms is None
    assert d.monitor.state == OFF_ROUTE and d.monitor.is_off_route
    # In the hysteresis band (450..500 m), with noise: neither back nor a second deviation.
    assert d.go([475 + rng.uniform(-5, 5) for _ in range(300)]) == []
    assert d.monitor.state == OFF_ROUTE
    first_back, t_first_back = d.seq + 1, d.t_ms + 1000
    ev = d.go(100.0, 40)
    assert [e.type for e in ev] == [ROUTE_RETURN]
    ret = ev[0]
    assert ret.t_ms - t_first_back == 30_000 and ret.evidence_count == 31
    assert ret.evidence[0] == first_back and ret.evidence[-1] == ret.seq
    assert ret.max_distance_m == 1690 and ret.distance_m == 100
    assert ret.off_route_since_ms == t_first_out
    assert ret.off_route_duration_ms == t_first_back - t_first_out
    assert d.monitor.state == ON_ROUTE
    assert [e.type for e in d.events] == [ROUTE_DEVIATION, ROUTE_RETURN]
    wire = json.loads(json.dumps(ret.to_dict()))
    assert wire["off_route_duration_ms"] == ret.off_route_duration_ms and _json_safe(wire)


def test_zero_durations_fire_at_once() -> None:
    d = Drive(DeviationParams(min_duration_ms=0, return_min_duration_ms=0))
    d.go(0.0, 5)
    assert [e.type for e in d.go(700.0)] == [ROUTE_DEVIATION]
    assert d.go(460.0) == []  # band
    assert [e.type for e in d.go(0.0)] == [ROUTE_RETURN]


def test_narrow_corridor_margin_is_clamped() -> None:
    d = Drive(DeviationParams(return_min_duration_ms=0), width=40)
    assert d.monitor.return_m == 20
    d.go(100.0, 61)
    assert [e.type for e in d.go(10.0)] == [ROUTE_RETURN]


def test_out_of_order_and_invalid_fixes_are_ignored() -> None:
    d = Drive()
    d.go(0.0, 10)
    m, last_t = d.monitor, d.t_ms
    far = d.fix_at(5000.0)
    assert m.update(999, last_t, *far) == [] and m.update(998, last_t - 5000, *far) == []
    assert m.ignored_out_of_order == 2 and m.state == ON_ROUTE
    assert m.update(997, last_t + 1, 950_000_000, 0) == [] and m.ignored_invalid == 1
    d.go(900.0, 30)
    for _ in range(5):  # stale fixes inside do not cancel the pending deviation
        assert m.update(1, last_t, *d.fix_at(0.0)) == []
    assert m.state == LEAVING and m.ignored_out_of_order == 7
    assert [e.type for e in d.go(900.0, 31)] == [ROUTE_DEVIATION]


def _json_safe(v: Any) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_safe(x) for k, x in v.items())
    if isinstance(v, list):
        return all(map(_json_safe, v))
    return type(v) in (int, str)


@pytest.mark.parametrize("split_after_s", [20, 90])  # pending (leaving), then raised (off route)
def test_restore_mid_deviation(split_after_s: int) -> None:
    d = Drive()
    d.go(0.0, 10)
    ev = d.go(900.0, split_after_s)
    saved = json.loads(json.dumps(d.monitor.to_dict()))
    assert _json_safe(saved)
    restored = DeviationMonitor.from_dict(d.corridor, DeviationParams(), saved)
    assert restored.to_dict() == saved
    d.monitor = restored
    ev += d.go(900.0, 120)
    assert [e.type for e in ev] == [ROUTE_DEVIATION]  # exactly once, across the restart
    back = d.go(0.0, 40)
    assert [e.type for e in back] == [ROUTE_RETURN]
    assert back[0].off_route_since_ms == ev[0].off_route_since_ms
    with pytest.raises(GeofenceError, match="corridor"):
        DeviationMonitor.from_dict(u_corridor(), None, saved)
    with pytest.raises(GeofenceError, match="state"):
        DeviationMonitor.from_dict(d.corridor, None, {**saved, "state": "lost"})


def test_sparse_fixes_shortcut_across_bend_is_caught() -> None:
    c = u_corridor()
    m = DeviationMonitor(c)
    t0 = 1_700_000_000_000
    assert m.update(1, t0, *e7(8.5, -79.9)) == []
    # 5 minutes later on the other arm: 50 km by road (600 km/h), 9.9 km straight across.
    ev = m.update(2, t0 + 300_000, *e7(8.5, -79.81))
    assert [e.type for e in ev] == [ROUTE_DEVIATION]
    assert ev[0].basis == "segment" and ev[0].evidence == (1, 2)
    assert ev[0].max_distance_m == pytest.approx(4950, abs=30)
    assert t0 < ev[0].off_route_since_ms < t0 + 30_000
    ev = m.update(3, t0 + 340_000, *e7(8.51, -79.81))
    assert [e.type for e in ev] == [ROUTE_RETURN]


def test_sparse_fixes_plausible_drive_around_bend_is_quiet() -> None:
    m = DeviationMonitor(u_corridor())
    t0 = 1_700_000_000_000
    m.update(1, t0, *e7(8.5, -79.9))
    assert m.update(2, t0 + 3_600_000, *e7(8.5, -79.81)) == []  # 50 km in an hour
    assert m.state == ON_ROUTE


_steps = st.lists(
    st.tuples(st.integers(1, 90_000), st.sampled_from([0, 200, 470, 520, 900, 2000])),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(_steps, st.integers(0, 80))
def test_restart_anywhere_changes_nothing(steps: list[tuple[int, int]], split: int) -> None:
    """Events alternate deviation/return, and a to_dict/from_dict anywhere is invisible."""
    corridor = parallel_corridor(0.0, 10.0, 10.5, width=WIDTH, step=0.01)
    params = DeviationParams(min_duration_ms=30_000, return_min_duration_ms=10_000)
    whole, parted = DeviationMonitor(corridor, params), DeviationMonitor(corridor, params)
    ev_whole: list[DeviationEvent] = []
    ev_parted: list[DeviationEvent] = []
    t, lon = 1_000_000, 10.1
    for i, (dt, north) in enumerate(steps):
        t += dt
        lon += 1e-6 * dt / 10
        fix = e7(north / 110_574, min(lon, 10.4))
        if i == split:
            saved = json.loads(json.dumps(parted.to_dict()))
            parted = DeviationMonitor.from_dict(corridor, params, saved)
        ev_whole += whole.update(i + 1, t, *fix)
        ev_parted += parted.update(i + 1, t, *fix)
    assert ev_whole == ev_parted
    types = [e.type for e in ev_whole]
    assert types == [ROUTE_DEVIATION, ROUTE_RETURN] * (len(types) // 2) + [ROUTE_DEVIATION] * (
        len(types) % 2
    )
    for e in ev_whole:
        assert e.distance_m >= 0 and e.max_distance_m >= e.distance_m
        assert 1 <= len(e.evidence) <= 32 and e.evidence_count >= len(e.evidence)


def test_params_are_validated() -> None:
    with pytest.raises(GeofenceError, match="min_duration_ms"):
        DeviationParams(min_duration_ms=-1)
    with pytest.raises(GeofenceError, match="evidence_cap"):
        DeviationParams(evidence_cap=1)
    assert np.isfinite(DeviationParams().return_margin_m)
