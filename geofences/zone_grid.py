"""A uniform grid over projected zones, for the one-fix-at-a-time path.

Why not just the STR-tree: a scalar shapely query costs a Point construction plus a tree query,
~7 µs here before any zone is tested, which is most of the per-fix budget. A dict lookup on the
fix's cell costs well under a microsecond and answers the common cases outright: a cell that no
zone comes near (most of a route) has no entry, and a cell wholly inside a zone says so, so only
fixes in cells straddling a zone boundary pay for an exact test.

Each entry of a cell is ``(zone_index, lower_bound)``. A zone is listed in every cell its
outline, grown by ``pad`` plane metres, touches; ``lower_bound`` is the plane distance from the
cell to the zone (0 if they meet), so a query with a smaller margin skips the zone without a
test, and -1 means the whole closed cell is inside the zone (distance 0 for any fix there).
Queries for a margin larger than ``pad`` must use another path
(``ZoneIndex`` falls back to its STR-tree). The cell size adapts so the grid holds about
``TARGET_CELLS`` cells whatever the zones' sizes (bounded memory on a 1 GB gateway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:
    from geofences.zones import Zone

TARGET_CELLS = 40_000
"""About how many (cell, zone) entries the grid aims for; ~4-6 MB of Python objects."""
MIN_CELL_M = 20.0
GRID_PAD_M = 250.0
"""Largest margin (plane metres) the grid answers; beyond it the STR-tree is asked."""
_EMPTY: tuple[tuple[int, float], ...] = ()


class ZoneGrid:
    """Cell -> zones near it (see module docstring). Immutable after construction."""

    def __init__(self, zones: Sequence[Zone], pad: float = GRID_PAD_M) -> None:
        self.pad = pad
        self.cells: dict[int, tuple[tuple[int, float], ...]] = {}
        self.size = 1.0
        self.x0 = self.y0 = 0.0
        self._ncol = 1
        if not zones:
            return
        bounds = np.array([_bounds(z) for z in zones]) + np.array([-pad, -pad, pad, pad])
        area = float(np.sum((bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])))
        self.size = size = max(MIN_CELL_M, math.sqrt(area / TARGET_CELLS))
        self.x0, self.y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
        self._ncol = int((bounds[:, 2].max() - self.x0) // size) + 2
        pair_cell: list[np.ndarray] = []
        pair_zone: list[np.ndarray] = []
        for zi, (bx0, by0, bx1, by1) in enumerate(bounds):
            i0, i1 = int((bx0 - self.x0) // size), int((bx1 - self.x0) // size)
            j0, j1 = int((by0 - self.y0) // size), int((by1 - self.y0) // size)
            ii, jj = np.meshgrid(np.arange(i0, i1 + 1), np.arange(j0, j1 + 1))
            pair_cell.append((jj * self._ncol + ii).ravel())
            pair_zone.append(np.full(ii.size, zi))
        cell = np.concatenate(pair_cell)
        zone = np.concatenate(pair_zone)
        ci, cj = cell % self._ncol, cell // self._ncol
        bx, by = self.x0 + ci * size, self.y0 + cj * size
        boxes = shapely.box(bx, by, bx + size, by + size)
        lower = np.zeros(len(cell), dtype=float)
        inside = np.zeros(len(cell), dtype=bool)
        circ = np.array([z.radius_m is not None for z in zones])[zone]
        # Circles: nearest/farthest point of the box from the centre, against the plane radius
        # (radius * k at the centre; k varies by far less than 1e-3 across a zone).
        cx = np.array([z.geometry.x if z.radius_m is not None else 0.0 for z in zones])[zone]
        cy = np.array([z.geometry.y if z.radius_m is not None else 0.0 for z in zones])[zone]
        r = np.array([(z.radius_m or 0.0) * z.scale for z in zones])[zone]
        dx_near = np.maximum(np.maximum(bx - cx, cx - (bx + size)), 0.0)
        dy_near = np.maximum(np.maximum(by - cy, cy - (by + size)), 0.0)
        dx_far = np.maximum(np.abs(bx - cx), np.abs(bx + size - cx))
        dy_far = np.maximum(np.abs(by - cy), np.abs(by + size - cy))
        lower[circ] = np.maximum(0.0, np.hypot(dx_near, dy_near) - r * 1.01)[circ]
        inside[circ] = (np.hypot(dx_far, dy_far) <= r * 0.99)[circ]
        poly = np.nonzero(~circ)[0]
        if poly.size:
            geoms = np.array([z.geometry for z in zones], dtype=object)[zone[poly]]
            # Slightly under the true distance, so float error never skips a zone wrongly.
            lower[poly] = np.maximum(0.0, shapely.distance(geoms, boxes[poly]) * 0.999 - 1e-6)
            inside[poly] = shapely.covers(geoms, boxes[poly])
        keep = np.nonzero(lower <= pad)[0]
        lower = np.where(inside, -1.0, lower)
        order = np.lexsort((zone[keep], cell[keep]))
        cells_sorted, zone_sorted = cell[keep][order], zone[keep][order].tolist()
        lower_sorted = lower[keep][order].tolist()
        starts = np.flatnonzero(np.r_[True, cells_sorted[1:] != cells_sorted[:-1]])
        ends = np.r_[starts[1:], len(cells_sorted)]
        for c, s, e in zip(cells_sorted[starts].tolist(), starts.tolist(), ends.tolist(),
                           strict=True):
            self.cells[c] = tuple(zip(zone_sorted[s:e], lower_sorted[s:e], strict=True))

    def lookup(self, x: float, y: float) -> tuple[tuple[int, float], ...]:
        """Entries ``(zone index, lower bound or -1 inside)`` of the cell holding (x, y)."""
        i = (x - self.x0) // self.size
        j = (y - self.y0) // self.size
        if i < 0 or j < 0 or i >= self._ncol:
            return _EMPTY
        return self.cells.get(int(j) * self._ncol + int(i), _EMPTY)


def _bounds(zone: Zone) -> tuple[float, float, float, float]:
    g = zone.geometry
    if zone.radius_m is not None:
        r = zone.radius_m * zone.scale * 1.01
        return g.x - r, g.y - r, g.x + r, g.y + r
    b = g.bounds
    return b[0], b[1], b[2], b[3]
