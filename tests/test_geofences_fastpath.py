"""The per-fix fast paths (segment grid, corridor ``prepare``, scalar projection) agree with
plain shapely / the vectorised code on random fixes, near the route and far from it."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences import Corridor, LocalProjection, corridor_from_degrees
from geofences.segment_grid import BRUTE_MAX_SEGMENTS


def winding_road(seed: int, n: int, lat0: float, lon0: float, step_m: float
                 ) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    m_lon = 111_320 * math.cos(math.radians(lat0))
    pts, lon, lat, heading = [], lon0, lat0, rng.uniform(0, 2 * math.pi)
    for _ in range(n):
        pts.append((lon, lat))
        heading += rng.gauss(0, 0.35)  # sharp bends: the nearest segment changes often
        lon += step_m * rng.uniform(0.2, 1.5) * math.cos(heading) / m_lon
        lat += step_m * rng.uniform(0.2, 1.5) * math.sin(heading) / 111_000
    return pts


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), width=st.sampled_from([8.0, 60.0, 500.0]),
       lat0=st.sampled_from([-34.9, 0.0, 59.9]), step=st.sampled_from([15.0, 80.0, 600.0]))
def test_segment_grid_matches_shapely(seed: int, width: float, lat0: float, step: float) -> None:
    road = winding_road(seed, 300, lat0, 20.0, step)
    c = corridor_from_degrees("r", width, road)
    grid = c.prepare()
    assert not grid.brute and grid.cells
    rng = random.Random(seed)
    xy = np.array(shapely.get_coordinates(c.line))
    pts = []
    for _ in range(1500):
        x, y = xy[rng.randrange(len(xy))]
        r = rng.choice([width / 4, width, 3 * width, grid.reach, 5_000.0])
        pts.append((x + rng.uniform(-r, r), y + rng.uniform(-r, r)))
    answered = 0
    for x, y in pts:
        ref = shapely.distance(c.line, shapely.Point(x, y))
        got = grid.distance(x, y)
        if got is None:
            assert ref > grid.reach - grid.size  # only far points may be left to the tree
        else:
            answered += 1
            assert got == pytest.approx(ref, abs=1e-6)
    assert answered > 1000


def test_prepared_corridor_distance_equals_unprepared() -> None:
    road = winding_road(5, 400, -34.9, -56.2, 50.0)
    fresh = corridor_from_degrees("r", 150, road)
    prepared = corridor_from_degrees("r", 150, road)
    prepared.prepare()
    rng = random.Random(5)
    for lon, lat in rng.sample(road, 200):
        for _ in range(5):
            fix = (round((lat + rng.gauss(0, 0.01)) * 1e7), round((lon + rng.gauss(0, 0.01)) * 1e7))
            assert prepared.distance_m(*fix) == pytest.approx(fresh._plane_distance(
                *fresh.projection.forward_e7(*fix)) / fresh.projection.scale_factor(
                    fix[0] / 1e7, fix[1] / 1e7), abs=1e-6)
    lat = np.array([round(la * 1e7) for _, la in road[::7]])
    lon = np.array([round(lo * 1e7) for lo, _ in road[::7]])
    vec = prepared.distances_m(lat + 5000, lon - 3000)
    one = [prepared.distance_m(int(a), int(b)) for a, b in zip(lat + 5000, lon - 3000,
                                                                 strict=True)]
    assert np.allclose(vec, one, atol=1e-6)


def test_grid_is_built_lazily_for_long_corridors_and_never_for_short_ones() -> None:
    long = corridor_from_degrees("l", 100, winding_road(1, 100, 0.0, 0.0, 50.0))
    assert long._grid is None
    for i in range(300):
        long.distance_m(i * 10, 0)
    assert long._grid is not None and not long._grid.brute
    short = corridor_from_degrees("s", 100, winding_road(1, BRUTE_MAX_SEGMENTS + 1, 0, 0, 50))
    assert short._grid is not None and short._grid.brute


@pytest.mark.parametrize("lat0", [-89.9, -60.0, -34.9, 0.0, 45.0, 89.9])
def test_scalar_and_vectorised_projection_agree(lat0: float) -> None:
    p = LocalProjection(lat0, 100.0)
    rng = np.random.default_rng(1)
    lat = np.clip(lat0 + rng.uniform(-5, 5, 200), -90, 90)
    lon = 100.0 + rng.uniform(-10, 10, 200)
    x, y, k = p.forward_many(lat, lon)
    for i in range(200):
        xs, ys, ks = p.forward_with_scale(float(lat[i]), float(lon[i]))
        assert (xs, ys) == (pytest.approx(x[i], abs=1e-6), pytest.approx(y[i], abs=1e-6))
        assert ks == pytest.approx(k[i], rel=1e-12)
    assert p.forward_e7_with_scale(10, 20) == p.forward_e7_with_scale(10, 20)  # memo hit


def test_shared_projection_is_used() -> None:
    proj = LocalProjection(-34.0, -56.0)
    c = Corridor("c", 50.0, ((-349_000_000, -562_000_000), (-349_100_000, -562_100_000)), proj)
    assert c.projection is proj
