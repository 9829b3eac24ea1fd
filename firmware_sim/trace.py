"""Device traces without ports: the exact bytes a receiver and a set of seals would send, in time
order, computed up front.

Rule tests need long, precisely shaped stories (a truck hugging its corridor's edge with noise, a
tunnel, a parked truck, seals opening at an office) replayed through the agent's real decoders,
faster than real time and without a pty per device. A trace is that story as a list of
``TraceItem``: one GNSS epoch (all its NMEA sentences) or one e-seal ``$PSTSL`` sentence, stamped
with the true time it leaves the device. The bytes are the ones ``GpsReceiver``/the fleet put on a
wire with the same settings (same ``FixModel``, same encoders), so what passes here passes there.

Geometry helpers build the routes such stories need: a line offset sideways from a corridor's
centre line, a point some distance along a line, a parked truck.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from firmware_sim.gnss import Conditions, FixModel
from firmware_sim.motion import Motion, Stop
from firmware_sim.nmea import SENTENCES, epoch_bytes
from firmware_sim.route import EARTH_RADIUS_M, LonLat, PositionNoise, Route, haversine_m
from firmware_sim.seal import Seal


@dataclass(frozen=True, slots=True)
class TraceItem:
    t_ms: int
    """True time the bytes leave the device (Unix ms)."""
    device: str
    kind: str
    """``"nmea"`` (one receiver epoch, CRLF-terminated sentences) or ``"seal"`` (one sentence)."""
    data: bytes

    def lines(self) -> list[bytes]:
        """The sentences without line endings, as a line reader hands them on."""
        return [line for line in self.data.split(b"\r\n") if line]


def gps_trace(
    motion: Motion,
    *,
    t0_ms: int,
    device: str = "gps0",
    rate_hz: float = 1.0,
    duration_s: float | None = None,
    noise: PositionNoise | None = None,
    conditions: Conditions | None = None,
    sats: int = 12,
    hdop: float = 0.8,
    seed: int | str | None = None,
    sentences: tuple[str, ...] = SENTENCES,
) -> list[TraceItem]:
    """Epoch ``k`` at ``t0_ms + round(k * 1000 / rate_hz)`` for ``duration_s`` (default: the
    drive, stops included, plus the final epoch). Conditions are on seconds since t0."""
    if not (math.isfinite(rate_hz) and 0 < rate_hz <= 100):
        raise ValueError(f"rate_hz must be in (0, 100], got {rate_hz!r}")
    total_s = motion.duration_s if duration_s is None else duration_s
    model = FixModel(motion, noise, conditions or Conditions(), sats=sats, hdop=hdop, seed=seed)
    items = []
    for k in range(math.floor(total_s * rate_hz + 1e-9) + 1):
        t_rel_ms = round(k * 1000 / rate_hz)  # as GpsReceiver's fast mode stamps epochs
        fix = model.fix(k / rate_hz, t0_ms + t_rel_ms)
        items.append(TraceItem(t0_ms + t_rel_ms, device, "nmea",
                               epoch_bytes(fix, "GN", 2, sentences)))
    return items


def seal_trace(
    seal: Seal,
    *,
    t0_ms: int,
    duration_s: float,
    device: str = "reader0",
    heartbeat_s: float = 60.0,
    phase_s: float = 0.0,
    events: Sequence[tuple[float, str]] = (),
    silent: Sequence[tuple[float, float]] = (),
) -> list[TraceItem]:
    """A seal's messages: heartbeats every ``heartbeat_s`` from ``phase_s``, and at each
    ``(t_s, state)`` event an immediate message in the new state. Messages inside a ``silent``
    window ``(start_s, duration_s)`` are generated (the counter moves, as in a seal out of radio
    range) but not delivered. Firmware order: every message takes the next counter."""
    if heartbeat_s <= 0 or duration_s <= 0:
        raise ValueError("heartbeat_s and duration_s must be > 0")
    due: list[tuple[int, int, str | None]] = []
    n = 0
    while (t := round((phase_s + n * heartbeat_s) * 1000)) <= duration_s * 1000:
        due.append((t, 1, None))
        n += 1
    due += [(round(t_s * 1000), 0, state) for t_s, state in events]
    items = []
    for t_rel_ms, _, state in sorted(due):
        if state is not None:
            seal.set_state(state)
        msg = seal.message(t0_ms + t_rel_ms)
        if any(start * 1000 <= t_rel_ms < (start + length) * 1000 for start, length in silent):
            continue
        items.append(TraceItem(t0_ms + t_rel_ms, device, "seal", msg.sentence()))
    return items


def merge(*traces: Iterable[TraceItem]) -> list[TraceItem]:
    """One time-ordered stream; equal times keep the order of the traces given."""
    return list(heapq.merge(*traces, key=lambda item: item.t_ms))


def drop_window(trace: Iterable[TraceItem], start_ms: int, end_ms: int) -> list[TraceItem]:
    """The trace without what was sent in ``[start_ms, end_ms)`` (a cut cable, a dead agent)."""
    return [item for item in trace if not start_ms <= item.t_ms < end_ms]


# -- geometry -----------------------------------------------------------------------------------


def _local(origin: LonLat) -> tuple[float, float]:
    """Metres per degree of (lon, lat) around ``origin``: a tangent plane, fine for a few km."""
    m_lat = math.pi * EARTH_RADIUS_M / 180.0
    return m_lat * math.cos(math.radians(origin[1])), m_lat


def offset_line(coords: Sequence[LonLat], offset_m: float) -> list[LonLat]:
    """The line ``offset_m`` to the left of ``coords`` (negative: right), mitred at vertices,
    so every point stays at that distance from the nearest segment of the original."""
    if len(coords) < 2:
        raise ValueError("offset_line needs at least two positions")
    mx, my = _local(coords[0])
    pts = [((lon - coords[0][0]) * mx, (lat - coords[0][1]) * my) for lon, lat in coords]
    normals = []
    for (x1, y1), (x2, y2) in itertools.pairwise(pts):
        length = math.hypot(x2 - x1, y2 - y1)
        if length == 0:
            raise ValueError("offset_line: repeated position")
        normals.append((-(y2 - y1) / length, (x2 - x1) / length))
    out = []
    for i, (x, y) in enumerate(pts):
        if i == 0:
            nx, ny = normals[0]
        elif i == len(pts) - 1:
            nx, ny = normals[-1]
        else:
            ax, ay = normals[i - 1]
            bx, by = normals[i]
            sx, sy = ax + bx, ay + by
            scale = 1.0 / max(1e-9, sx * ax + sy * ay)  # miter: (a + b) / (1 + a.b)
            nx, ny = sx * scale, sy * scale
        ox, oy = x + nx * offset_m, y + ny * offset_m
        out.append((coords[0][0] + ox / mx, coords[0][1] + oy / my))
    return out


def point_along(coords: Sequence[LonLat], distance_m: float, offset_m: float = 0.0) -> LonLat:
    """The point ``distance_m`` along the line (great-circle lengths), ``offset_m`` to its left."""
    point = Route(coords, 1.0).point_at_distance(distance_m, 1.0)
    if offset_m == 0:
        return (point.lon, point.lat)
    left = math.radians(point.course_deg - 90.0)
    mx, my = _local((point.lon, point.lat))
    return (point.lon + offset_m * math.sin(left) / mx,
            point.lat + offset_m * math.cos(left) / my)


def sub_line(coords: Sequence[LonLat], from_m: float, to_m: float) -> list[LonLat]:
    """The part of a line between two distances along it (great-circle lengths), with its
    vertices: for routes that follow a corridor for a while and then do something else."""
    route = Route(coords, 1.0)
    if not 0 <= from_m < to_m <= route.length_m + 1e-6:
        raise ValueError(f"sub_line needs 0 <= from_m < to_m <= {route.length_m:.1f}")
    out: list[LonLat] = [point_along(coords, from_m)]
    walked = 0.0
    for a, b in itertools.pairwise(coords):
        walked += haversine_m(a, b)
        if from_m < walked < to_m:
            out.append(b)
    end = point_along(coords, to_m)
    if end != out[-1]:
        out.append(end)
    return out


def parked(at: LonLat, duration_s: float) -> Motion:
    """A truck standing at ``at`` for ``duration_s`` (a ``Motion`` has a route; this one is 1 m
    long and is only driven after the stop)."""
    _, my = _local(at)
    route = Route([at, (at[0], at[1] + 1.0 / my)], 1.0)
    return Motion(route, stops=[Stop(0.0, duration_s)])
