"""Geofence evaluation speed: fixes per second against a 2,000-vertex corridor plus 100 and 1,000
zones, one fix at a time (the agent's path) and vectorised. Prints one JSON line.

The scene is synthetic but shaped like a real transit: a ~100 km road near Montevideo traced
every ~50 m, a 150 m corridor, zones strewn along it (offices, stops, forbidden areas: polygons of
6-16 vertices from 40 m to 1.5 km across, some with holes, and circles), and GPS fixes that
follow the road with metre-level noise, a tenth of them wandering up to 1.5 km off it.

Per fix, ``one_at_a_time_us`` is what the rules do for a reading: the corridor distance and the
zones containing the fix at its time (margin 0), plus ``zones_near_us`` with a 30 m margin (the
zone monitor's hysteresis query), and ``monitors_us`` running the full ``DeviationMonitor`` and
``ZoneMonitor`` state machines. ``vectorised_us`` is the same distance + containment for a whole
array of fixes through shapely 2's vectorised functions, per fix. Goal: one at a time < 20 µs.

    .venv/bin/python bench/fence_lookup.py [--fixes N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geofences import (
    Corridor,
    DeviationMonitor,
    LocalProjection,
    ZoneIndex,
    ZoneMonitor,
    zones_from_geojson,
)
from geofences.zones import ROLES

GOAL_US = 20.0
LAT0, LON0 = -34.9, -56.2
M_LAT = 111_000.0
M_LON = 111_000.0 * math.cos(math.radians(LAT0))
T0 = 1_767_225_600_000


def road(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """(lon, lat) of a winding road, a vertex every ~50 m."""
    pts, lon, lat, heading = [], LON0, LAT0, 0.3
    for _ in range(n):
        pts.append((lon, lat))
        heading += rng.gauss(0, 0.12)
        lon += 50 * math.cos(heading) / M_LON
        lat += 50 * math.sin(heading) / M_LAT
    return pts


def zones_along(rng: random.Random, line: list[tuple[float, float]], n: int) -> dict[str, Any]:
    feats = []
    for i in range(n):
        lon, lat = rng.choice(line)
        off = rng.uniform(-3000, 3000) if rng.random() < 0.6 else rng.uniform(-300, 300)
        ang = rng.uniform(0, 2 * math.pi)
        lon += off * math.cos(ang) / M_LON
        lat += off * math.sin(ang) / M_LAT
        size = 10 ** rng.uniform(math.log10(40), math.log10(1500))
        props: dict[str, Any] = {"id": f"z{i}", "role": rng.choice(ROLES)}
        if rng.random() < 0.3:
            props["radius_m"] = round(size / 2, 1)
            feats.append({"type": "Feature", "properties": props,
                          "geometry": {"type": "Point", "coordinates": [lon, lat]}})
            continue
        k = rng.randint(6, 16)
        ring = []
        for j in range(k):
            a = 2 * math.pi * j / k
            r = size / 2 * rng.uniform(0.5, 1.0)
            ring.append([lon + r * math.cos(a) / M_LON, lat + r * math.sin(a) / M_LAT])
        ring.append(ring[0])
        coords = [ring]
        if rng.random() < 0.15:
            h = size / 10
            coords.append([[lon - h / M_LON, lat - h / M_LAT], [lon - h / M_LON, lat + h / M_LAT],
                           [lon + h / M_LON, lat + h / M_LAT], [lon + h / M_LON, lat - h / M_LAT],
                           [lon - h / M_LON, lat - h / M_LAT]])
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Polygon", "coordinates": coords}})
    return {"type": "FeatureCollection", "features": feats}


def fixes_along(rng: random.Random, line: list[tuple[float, float]], n: int
                ) -> tuple[list[int], list[int]]:
    lats, lons = [], []
    for i in range(n):
        lon, lat = line[i * (len(line) - 1) // max(1, n - 1)]
        sigma = 1500.0 if rng.random() < 0.1 else 8.0
        lons.append(round((lon + rng.gauss(0, sigma) / M_LON) * 1e7))
        lats.append(round((lat + rng.gauss(0, sigma) / M_LAT) * 1e7))
    return lats, lons


Chunk = Callable[[list[int], list[int], int], None]


def per_fix_us(make: Callable[[], Chunk], lats: list[int], lons: list[int],
               repeat: int = 5, chunk: int = 500) -> float:
    """µs per fix: each 500-fix chunk timed ``repeat`` times, its best kept, summed.

    Gateways and CI runners are shared machines; the best of several runs of the same chunk is
    the figure least disturbed by whatever else was running (a fresh ``make()`` per repeat, so
    stateful monitors see the same sequence each time).
    """
    n = len(lats)
    starts = range(0, n, chunk)
    best = [math.inf] * len(starts)
    for _ in range(repeat):
        fn = make()
        for ci, s in enumerate(starts):
            t = time.perf_counter()
            fn(lats[s:s + chunk], lons[s:s + chunk], s)
            best[ci] = min(best[ci], time.perf_counter() - t)
    return sum(best) / n * 1e6


def _one(c: Corridor, z: ZoneIndex) -> Chunk:
    """What the rules do per reading: corridor distance + zones containing the fix."""
    dist, containing = c.distance_m, z.containing

    def chunk(lats: list[int], lons: list[int], _: int) -> None:
        for a, b in zip(lats, lons, strict=True):
            dist(a, b)
            containing(a, b, T0)
    return chunk


def _near(_: Corridor, z: ZoneIndex) -> Chunk:
    def chunk(lats: list[int], lons: list[int], __: int) -> None:
        for a, b in zip(lats, lons, strict=True):
            z.near(a, b, T0, 30.0)
    return chunk


def _monitors(c: Corridor, z: ZoneIndex) -> Chunk:
    dev, zon = DeviationMonitor(c), ZoneMonitor(z)

    def chunk(lats: list[int], lons: list[int], first: int) -> None:
        for i, (a, b) in enumerate(zip(lats, lons, strict=True), start=first):
            dev.update(i + 1, T0 + i * 1000, a, b)
            zon.update(i + 1, T0 + i * 1000, a, b)
    return chunk


def _vec(c: Corridor, z: ZoneIndex) -> Chunk:
    def chunk(lats: list[int], lons: list[int], _: int) -> None:
        a, b = np.asarray(lats), np.asarray(lons)
        c.distances_m(a, b)
        z.containing_many(a, b, T0)
    return chunk


def run(n_fixes: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    line = road(rng, 2000)
    lats, lons = fixes_along(rng, line, n_fixes)
    out: dict[str, Any] = {
        "bench": "geofences", "python": platform.python_version(),
        "machine": platform.machine(), "corridor_vertices": len(line), "fixes": n_fixes,
        "goal_one_at_a_time_us": GOAL_US,
    }
    for n_zones in (100, 1000):
        t = time.perf_counter()
        zdoc = zones_along(rng, line, n_zones)
        pts = [(la, lo) for lo, la in line]
        pts += [(la, lo) for f in zdoc["features"] for lo, la in _coords(f["geometry"])]
        proj = LocalProjection.around(pts)
        corridor = Corridor("bench", 150.0, tuple((round(la * 1e7), round(lo * 1e7))
                                                  for lo, la in line), proj)
        zones: ZoneIndex = zones_from_geojson(zdoc, proj)
        build_ms = (time.perf_counter() - t) * 1e3

        one, near, monitors, vec = (partial(f, corridor, zones) for f in
                                    (_one, _near, _monitors, _vec))
        hits = zones.containing_many(np.asarray(lats), np.asarray(lons), T0)
        one_us = per_fix_us(one, lats, lons)
        vec_us = per_fix_us(vec, lats, lons, chunk=5000)
        out[f"zones_{n_zones}"] = {
            "build_ms": round(build_ms, 1),
            "one_at_a_time_us": round(one_us, 2),
            "one_at_a_time_fixes_per_s": round(1e6 / one_us),
            "zones_near_30m_us": round(per_fix_us(near, lats, lons), 2),
            "monitors_us": round(per_fix_us(monitors, lats, lons, 3), 2),
            "vectorised_us": round(vec_us, 3),
            "vectorised_fixes_per_s": round(1e6 / vec_us),
            "vectorised_speedup": round(one_us / vec_us, 1),
            "fixes_in_a_zone": round(len(set(hits.fix_index.tolist())) / n_fixes, 3),
            "meets_goal": one_us < GOAL_US,
        }
    return out


def _coords(geom: dict[str, Any]) -> list[tuple[float, float]]:
    if geom["type"] == "Point":
        return [tuple(geom["coordinates"])]  # type: ignore[list-item]
    return [tuple(p) for ring in geom["coordinates"] for p in ring]  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixes", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(json.dumps(run(args.fixes, args.seed), separators=(",", ":")))


if __name__ == "__main__":
    main()
