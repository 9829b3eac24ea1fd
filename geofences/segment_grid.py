"""A uniform grid of candidate segments around a corridor's centre line, for the per-fix path.

A scalar shapely nearest-neighbour query costs ~15-20 µs here (Point construction, tree walk,
numpy scalar plumbing), most of the per-fix budget. Near the route the answer is always one of a
handful of segments, known in advance per grid cell, and the point-to-segment distance over
those few is a few hundred nanoseconds each in plain Python.

Candidate rule (exact, not a heuristic): with ``c`` a cell's centre, ``h`` half its diagonal and
``D = min_s dist(c, s)``, every point ``p`` of the cell has its nearest segment among
``{s : dist(c, s) <= D + 2h}``, since dist(p, s*) <= dist(p, s_c) <= D + h and
dist(c, s*) <= dist(p, s*) + h. Cells are kept where ``D <= reach``, so every point within
``reach - h`` of the line is answered here; ``lookup`` returns None elsewhere and the caller
asks the STR-tree (a fix that far out is already off route). The cell size grows for long
corridors so the grid stays under ``MAX_CELLS`` cells (bounded memory on a 1 GB gateway).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import STRtree

MAX_CELLS = 60_000
"""Cap on stored cells (each a tuple of shared segment tuples): a few MB at most."""
MIN_CELL_M = 10.0
BRUTE_MAX_SEGMENTS = 16
"""Lines this short skip the grid: every segment is tried (exact at any distance, ~0.3 µs each)."""

Segment = tuple[float, float, float, float, float]
"""(x0, y0, dx, dy, 1 / (dx² + dy²)) of one centre-line segment, plane metres."""


class SegmentGrid:
    """Cell -> candidate segments (see module docstring). Immutable after construction."""

    def __init__(self, xy: np.ndarray, width_m: float) -> None:
        self.reach = max(3.0 * width_m, width_m + 300.0)
        seg_d = np.diff(xy, axis=0)
        inv = 1.0 / np.maximum((seg_d**2).sum(axis=1), 1e-18)
        self.segments: list[Segment] = [
            (float(a), float(b), float(c), float(d), float(e))
            for a, b, c, d, e in zip(xy[:-1, 0], xy[:-1, 1], seg_d[:, 0], seg_d[:, 1], inv,
                                     strict=True)
        ]
        self.cells: dict[int, tuple[Segment, ...]] = {}
        self.brute = len(self.segments) <= BRUTE_MAX_SEGMENTS
        self.size, self.x0, self.y0, self._ncol = 1.0, 0.0, 0.0, 1
        if not self.brute:
            self._build(xy, seg_d, width_m)

    def _build(self, xy: np.ndarray, seg_d: np.ndarray, width_m: float) -> None:
        reach = self.reach
        length = float(np.hypot(seg_d[:, 0], seg_d[:, 1]).sum())
        size = max(MIN_CELL_M, min(width_m / 2, 100.0))
        size = max(size, math.sqrt(length * 2 * reach / MAX_CELLS))
        self.size = size
        pad = reach + 3 * size
        self.x0 = float(xy[:, 0].min()) - pad
        self.y0 = float(xy[:, 1].min()) - pad
        self._ncol = int((float(xy[:, 0].max()) + pad - self.x0) // size) + 2
        lines = shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1))
        tree = STRtree(lines)
        # Candidate cells: a disk of cells around samples of the line at most `size` apart. A
        # cell centre within `reach` of the line is within reach + size/2 of a sample, hence
        # within reach + 1.21 * size of the sample's cell centre: the disk below covers it.
        seg_len = np.hypot(seg_d[:, 0], seg_d[:, 1])
        n = np.maximum(1, np.ceil(seg_len / size)).astype(np.int64)
        k = np.repeat(np.arange(len(n)), n)
        t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        sx = np.r_[xy[:-1, 0][k] + t * seg_d[:, 0][k], xy[-1, 0]]
        sy = np.r_[xy[:-1, 1][k] + t * seg_d[:, 1][k], xy[-1, 1]]
        m = math.ceil(reach / size + 1.25)
        oi, oj = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1))
        disk = np.hypot(oi, oj) * size <= reach + 1.25 * size
        oi, oj = oi[disk], oj[disk]
        si = ((sx - self.x0) // size).astype(np.int64)
        sj = ((sy - self.y0) // size).astype(np.int64)
        ids = np.unique((sj[:, None] + oj[None, :]) * self._ncol + si[:, None] + oi[None, :])
        cx = self.x0 + (ids % self._ncol + 0.5) * size
        cy = self.y0 + (ids // self._ncol + 0.5) * size
        centres = shapely.points(cx, cy)
        _, dmin = tree.query_nearest(centres, return_distance=True, all_matches=False)
        keep = dmin <= reach
        ids, centres, dmin = ids[keep], centres[keep], dmin[keep]
        diag = size * math.sqrt(2.0)
        ci, si = tree.query(centres, predicate="dwithin", distance=dmin + diag + 1e-6)
        order = np.lexsort((si, ci))
        ci, si = ci[order], si[order]
        starts = np.flatnonzero(np.r_[True, ci[1:] != ci[:-1]])
        ends = np.r_[starts[1:], len(ci)]
        segs = self.segments
        si_list = si.tolist()
        for c, s, e in zip(ci[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            self.cells[int(ids[c])] = tuple(segs[k] for k in si_list[s:e])

    def distance(self, x: float, y: float) -> float | None:
        """Plane distance from (x, y) to the centre line, or None outside the grid's reach."""
        if self.brute:
            cands: tuple[Segment, ...] | list[Segment] | None = self.segments
        else:
            i = (x - self.x0) // self.size
            j = (y - self.y0) // self.size
            if i < 0 or j < 0 or i >= self._ncol:
                return None
            cands = self.cells.get(int(j) * self._ncol + int(i))
            if cands is None:
                return None
        best = math.inf
        for x0, y0, dx, dy, inv in cands:
            px, py = x - x0, y - y0
            t = (px * dx + py * dy) * inv
            if t < 0.0:
                t = 0.0
            elif t > 1.0:
                t = 1.0
            ex, ey = px - t * dx, py - t * dy
            d2 = ex * ex + ey * ey
            if d2 < best:
                best = d2
        return math.sqrt(best)
