"""Route deviation state machine: one per (asset, corridor), fed one GPS fix at a time.

Customs wants two alerts from a corridor, ``routeDeviation`` and ``routeReturn``, and wants them
to be true: a GNSS jump in a port, a truck hugging the corridor edge, or a detour around a crash
must not page an officer, while a real departure must not be missed, even between sparse fixes or
across an agent restart. The rules, all measured on fix time (``t_ms``), never the wall clock:

* **Hysteresis.** A fix is *out* when its distance from the centre line exceeds ``width_m``. Once
  a deviation is raised, the truck is *back* only when its distance is below
  ``width_m - return_margin_m``; fixes in between change nothing, so noise at the edge cannot
  flap deviation/return pairs.
* **Minimum duration.** ``routeDeviation`` fires only when every fix since the first *out* fix has
  been *out* and ``t_ms - first_out_t_ms >= min_duration_ms``; a single fix back inside the
  corridor cancels the pending deviation silently. ``routeReturn`` likewise needs every fix *back*
  for ``return_min_duration_ms`` (0 = at the first such fix).
* **Sparse fixes.** Two fixes inside the corridor can hide an excursion (a shortcut across a
  bend, a loop around a border post). When the gap between them is at least ``min_duration_ms``,
  the straight chord between them is checked: if it leaves the corridor for an estimated
  ``outside_fraction * gap >= min_duration_ms`` *and* following the route between the two fixes
  would have needed more than ``max_route_speed_cmps``, the truck cannot have stayed on route and
  a ``routeDeviation`` with ``basis == "segment"`` fires at the second fix. The speed test is what
  keeps a winding mountain road after a GNSS outage (chord outside, road length plausible) quiet.
  A hidden excursion that leaves no such trace (out and back on the same side) cannot be seen.
* **Out-of-order fixes** (``t_ms`` not after the last accepted fix) are ignored and counted in
  ``ignored_out_of_order``; fixes with impossible coordinates in ``ignored_invalid``. Filtering
  bad fixes (stale, HDOP, impossible speed) is the caller's job; this is the last guard.
* **Initial state** is on route: a plan assumes the truck starts on its corridor, so a truck
  that never joins it raises a deviation after ``min_duration_ms``.
* **Persistence.** ``to_dict`` / ``from_dict`` carry the whole state (JSON-safe ints, strings and
  lists of them), so a restarted agent neither re-fires a raised deviation nor forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geofences.corridor import Corridor, GeofenceError
from geofences.projection import great_circle_m

ROUTE_DEVIATION = "routeDeviation"
ROUTE_RETURN = "routeReturn"

ON_ROUTE = "on_route"
LEAVING = "leaving"
"""Out of the corridor, deviation not yet confirmed by ``min_duration_ms``."""
OFF_ROUTE = "off_route"
RETURNING = "returning"
"""Deviation raised, back inside the return threshold, not yet for ``return_min_duration_ms``."""
STATES = (ON_ROUTE, LEAVING, OFF_ROUTE, RETURNING)

STATE_VERSION = 1


def _is_int(v: Any) -> bool:
    return type(v) is int


@dataclass(frozen=True)
class DeviationParams:
    """Tuning of the deviation monitor; integers so they can live in signed plan records.

    Defaults, and why:

    * ``return_margin_m = 50``: consumer GNSS is good to ~5-10 m in the open but multipath near
      containers, cranes and in cities gives 20-50 m errors; 50 m means noise alone cannot look
      like a return. Clamped to half the corridor width so a narrow corridor can be returned to.
    * ``min_duration_ms = 60_000``: multipath bursts and brief manoeuvres (a U-turn, a lay-by on
      the edge) last seconds; a minute of continuous fixes outside is strong evidence and still
      raises the alert long before a truck can unload anything.
    * ``return_min_duration_ms = 30_000``: shorter than the deviation's (a return is good news,
      less costly to get slightly wrong) but long enough that one lucky fix does not close it.
    * ``max_route_speed_cmps = 4_167`` (150 km/h): above any legal truck speed, so the sparse-fix
      test only fires when following the route in the time available was impossible.
    * ``evidence_cap = 32``: alert bodies stay small; the first and last halves are kept.
    """

    return_margin_m: int = 50
    min_duration_ms: int = 60_000
    return_min_duration_ms: int = 30_000
    max_route_speed_cmps: int = 4_167
    evidence_cap: int = 32

    def __post_init__(self) -> None:
        for name in ("return_margin_m", "min_duration_ms", "return_min_duration_ms"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise GeofenceError(f"DeviationParams.{name} must be an int >= 0, got {v!r}")
        if not _is_int(self.max_route_speed_cmps) or self.max_route_speed_cmps <= 0:
            raise GeofenceError(
                f"DeviationParams.max_route_speed_cmps must be an int > 0, "
                f"got {self.max_route_speed_cmps!r}"
            )
        if not _is_int(self.evidence_cap) or self.evidence_cap < 2:
            raise GeofenceError(
                f"DeviationParams.evidence_cap must be an int >= 2, got {self.evidence_cap!r}"
            )


@dataclass(frozen=True)
class DeviationEvent:
    """What the rules turn into a routeDeviation / routeReturn alert body.

    ``seq``/``t_ms`` are those of the fix that triggered the event; ``distance_m`` its distance
    from the centre line. ``evidence`` lists the seqs of the fixes that were out (deviation) or
    back (return) during the duration window, capped (first and last halves kept);
    ``evidence_count`` is the uncapped number. ``max_distance_m`` covers the deviation so far.
    ``off_route_since_ms`` is the first *out* fix's time (for ``basis == "segment"``, the estimated
    exit time on the chord). ``off_route_duration_ms`` (returns only) runs from then to the first
    fix back.
    """

    type: str
    corridor_id: str
    seq: int
    t_ms: int
    distance_m: int
    max_distance_m: int
    off_route_since_ms: int
    evidence: tuple[int, ...]
    evidence_count: int
    basis: str = "fixes"
    off_route_duration_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ints, strings, a list of ints); no ``off_route_duration_ms`` if None."""
        d: dict[str, Any] = {
            "type": self.type,
            "corridor_id": self.corridor_id,
            "seq": self.seq,
            "t_ms": self.t_ms,
            "distance_m": self.distance_m,
            "max_distance_m": self.max_distance_m,
            "off_route_since_ms": self.off_route_since_ms,
            "evidence": list(self.evidence),
            "evidence_count": self.evidence_count,
            "basis": self.basis,
        }
        if self.off_route_duration_ms is not None:
            d["off_route_duration_ms"] = self.off_route_duration_ms
        return d


@dataclass
class _Window:
    """A run of consecutive fixes on one side of a threshold: when it started and which fixes."""

    since_ms: int
    evidence: list[int] = field(default_factory=list)
    count: int = 0

    def push(self, seq: int, cap: int) -> None:
        self.evidence.append(seq)
        self.count += 1
        if len(self.evidence) > cap:
            del self.evidence[cap // 2]  # keep the first cap//2 and the most recent ones

    def to_dict(self) -> dict[str, Any]:
        return {"since_ms": self.since_ms, "evidence": list(self.evidence), "count": self.count}

    @classmethod
    def from_dict(cls, d: Any, what: str, cap: int) -> _Window:
        if not isinstance(d, dict):
            raise GeofenceError(f"deviation state: {what} must be an object")
        since, ev, count = d.get("since_ms"), d.get("evidence"), d.get("count")
        if not _is_int(since) or not _is_int(count) or count < 0:
            raise GeofenceError(f"deviation state: {what} needs int since_ms and count")
        if not isinstance(ev, list) or not all(map(_is_int, ev)) or len(ev) > count:
            raise GeofenceError(f"deviation state: {what}.evidence must be a list of seqs")
        w = cls(since, list(ev), count)
        while len(w.evidence) > cap:
            del w.evidence[cap // 2]
        return w


class DeviationMonitor:
    """Per-asset route deviation state machine over one ``Corridor`` (see module docstring)."""

    def __init__(self, corridor: Corridor, params: DeviationParams | None = None) -> None:
        self.corridor = corridor
        self.params = params if params is not None else DeviationParams()
        self.leave_m: float = corridor.width_m
        """Out when distance > this."""
        self.return_m: float = corridor.width_m - min(
            float(self.params.return_margin_m), corridor.width_m / 2
        )
        """Back when distance < this."""
        self.ignored_out_of_order: int = 0
        self.ignored_invalid: int = 0
        self._state: str = ON_ROUTE
        self._last: tuple[int, int, int, int] | None = None  # seq, t_ms, lat_e7, lon_e7
        self._out: _Window | None = None  # current deviation (pending or raised)
        self._back: _Window | None = None  # pending return
        self._max_m: int = 0
        self._basis: str = "fixes"

    @property
    def state(self) -> str:
        """One of ``on_route``, ``leaving``, ``off_route``, ``returning``."""
        return self._state

    @property
    def is_off_route(self) -> bool:
        """True from a raised routeDeviation until its routeReturn."""
        return self._state in (OFF_ROUTE, RETURNING)

    # -- the machine ------------------------------------------------------------------------

    def update(self, seq: int, t_ms: int, lat_e7: int, lon_e7: int) -> list[DeviationEvent]:
        """Feed one fix; returns the events it triggers (usually none, at most two)."""
        if not (_is_int(seq) and _is_int(t_ms)):
            self.ignored_invalid += 1
            return []
        if self._last is not None and t_ms <= self._last[1]:
            self.ignored_out_of_order += 1
            return []
        try:
            d = self.corridor.distance_m(lat_e7, lon_e7)
        except GeofenceError:
            self.ignored_invalid += 1
            return []
        prev, self._last = self._last, (seq, t_ms, lat_e7, lon_e7)
        cap = self.params.evidence_cap
        events: list[DeviationEvent] = []
        if self._state != ON_ROUTE:
            self._max_m = max(self._max_m, round(d))

        if self._state == ON_ROUTE:
            if d > self.leave_m:
                self._out = _Window(t_ms)
                self._out.push(seq, cap)
                self._max_m, self._basis = round(d), "fixes"
                self._state = LEAVING
                self._maybe_raise(seq, t_ms, d, events)
            elif prev is not None:
                self._check_gap(prev, seq, t_ms, lat_e7, lon_e7, d, events)
        elif self._state == LEAVING:
            assert self._out is not None
            if d > self.leave_m:
                self._out.push(seq, cap)
                self._maybe_raise(seq, t_ms, d, events)
            else:  # back inside before min_duration: a brief excursion, forget it
                self._reset()
        elif self._state == OFF_ROUTE:
            if d < self.return_m:
                self._back = _Window(t_ms)
                self._back.push(seq, cap)
                self._state = RETURNING
                self._maybe_return(seq, t_ms, d, events)
        else:  # RETURNING
            assert self._back is not None
            if d < self.return_m:
                self._back.push(seq, cap)
                self._maybe_return(seq, t_ms, d, events)
            else:  # not clearly back after all
                self._back = None
                self._state = OFF_ROUTE
        return events

    def _reset(self) -> None:
        """Back to on route with no open windows (after a return or a cancelled excursion)."""
        self._state, self._out, self._back = ON_ROUTE, None, None
        self._max_m, self._basis = 0, "fixes"

    def _maybe_raise(self, seq: int, t_ms: int, d: float, events: list[DeviationEvent]) -> None:
        assert self._out is not None
        if t_ms - self._out.since_ms >= self.params.min_duration_ms:
            events.append(self._event(ROUTE_DEVIATION, seq, t_ms, d, self._out))
            self._state = OFF_ROUTE

    def _maybe_return(self, seq: int, t_ms: int, d: float, events: list[DeviationEvent]) -> None:
        assert self._out is not None and self._back is not None
        if t_ms - self._back.since_ms >= self.params.return_min_duration_ms:
            events.append(self._event(ROUTE_RETURN, seq, t_ms, d, self._back))
            self._reset()

    def _event(self, kind: str, seq: int, t_ms: int, d: float, window: _Window) -> DeviationEvent:
        assert self._out is not None
        duration = None
        if kind == ROUTE_RETURN:
            assert self._back is not None
            duration = self._back.since_ms - self._out.since_ms
        return DeviationEvent(
            type=kind,
            corridor_id=self.corridor.corridor_id,
            seq=seq,
            t_ms=t_ms,
            distance_m=round(d),
            max_distance_m=self._max_m,
            off_route_since_ms=self._out.since_ms,
            evidence=tuple(window.evidence),
            evidence_count=window.count,
            basis=self._basis,
            off_route_duration_ms=duration,
        )

    def _check_gap(
        self,
        prev: tuple[int, int, int, int],
        seq: int,
        t_ms: int,
        lat_e7: int,
        lon_e7: int,
        d: float,
        events: list[DeviationEvent],
    ) -> None:
        """Both fixes inside: did the truck leave and come back in between? (module docstring)"""
        p = self.params
        pseq, pt, plat, plon = prev
        dt = t_ms - pt
        if dt < p.min_duration_ms or dt <= 0:
            return  # anything hidden in so short a gap is shorter than min_duration: no alert
        corridor = self.corridor
        d_prev = corridor.distance_m(plat, plon)
        chord = great_circle_m(plat / 1e7, plon / 1e7, lat_e7 / 1e7, lon_e7 / 1e7) * 1.01
        if (d_prev + d + chord) / 2 <= self.leave_m:
            return  # the triangle inequality already keeps the whole chord inside
        seg = corridor.check_segment((plat, plon), (lat_e7, lon_e7), self.leave_m)
        if seg.first_exit_fraction is None or seg.outside_fraction * dt < p.min_duration_ms:
            return
        route_m = abs(corridor.along_m(lat_e7, lon_e7) - corridor.along_m(plat, plon))
        if route_m * 100_000 <= p.max_route_speed_cmps * dt:
            return  # it could have driven the route itself in that time
        self._out = _Window(pt + round(seg.first_exit_fraction * dt))
        self._out.push(pseq, p.evidence_cap)
        self._out.push(seq, p.evidence_cap)
        self._max_m, self._basis = round(max(seg.max_distance_m, d)), "segment"
        events.append(self._event(ROUTE_DEVIATION, seq, t_ms, d, self._out))
        self._state = OFF_ROUTE
        # The fix that revealed the excursion is itself inside: it may start the return.
        if d < self.return_m:
            self._back = _Window(t_ms)
            self._back.push(seq, p.evidence_cap)
            self._state = RETURNING
            self._maybe_return(seq, t_ms, d, events)

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-safe ints/strings/lists, for the agent's journal."""
        d: dict[str, Any] = {
            "v": STATE_VERSION,
            "corridor_id": self.corridor.corridor_id,
            "state": self._state,
            "ignored_out_of_order": self.ignored_out_of_order,
            "ignored_invalid": self.ignored_invalid,
        }
        if self._last is not None:
            seq, t_ms, lat_e7, lon_e7 = self._last
            d["last"] = {"seq": seq, "t_ms": t_ms, "lat_e7": lat_e7, "lon_e7": lon_e7}
        if self._out is not None:
            d["out"] = self._out.to_dict()
            d["max_distance_m"] = self._max_m
            d["basis"] = self._basis
        if self._back is not None:
            d["back"] = self._back.to_dict()
        return d

    @classmethod
    def from_dict(
        cls, corridor: Corridor, params: DeviationParams | None, d: dict[str, Any]
    ) -> DeviationMonitor:
        """Rebuild a monitor from ``to_dict`` output; ``GeofenceError`` if it does not fit.

        The corridor must be the one the state was built on (same id): a new plan means a new
        monitor. Parameters may differ (a config change applies from the next fix on).
        """
        m = cls(corridor, params)
        if not isinstance(d, dict):
            raise GeofenceError("deviation state must be an object")
        if d.get("v") != STATE_VERSION:
            raise GeofenceError(f"deviation state: unsupported version {d.get('v')!r}")
        if d.get("corridor_id") != corridor.corridor_id:
            raise GeofenceError(
                f"deviation state is for corridor {d.get('corridor_id')!r}, "
                f"not {corridor.corridor_id!r}"
            )
        state = d.get("state")
        if state not in STATES:
            raise GeofenceError(f"deviation state: unknown state {state!r}")
        for name in ("ignored_out_of_order", "ignored_invalid"):
            if not _is_int(d.get(name, 0)):
                raise GeofenceError(f"deviation state: {name} must be an int")
        last = d.get("last")
        if last is not None:
            keys = ("seq", "t_ms", "lat_e7", "lon_e7")
            vals = [last.get(k) for k in keys] if isinstance(last, dict) else [None]
            if not all(map(_is_int, vals)):
                raise GeofenceError("deviation state: last must hold int seq, t_ms, lat_e7, lon_e7")
            m._last = (vals[0], vals[1], vals[2], vals[3])
        cap = m.params.evidence_cap
        has_out, has_back = "out" in d, "back" in d
        if has_out != (state != ON_ROUTE) or has_back != (state == RETURNING):
            raise GeofenceError(f"deviation state: windows do not match state {state!r}")
        if has_out:
            m._out = _Window.from_dict(d["out"], "out", cap)
            max_m, basis = d.get("max_distance_m"), d.get("basis")
            if not _is_int(max_m) or basis not in ("fixes", "segment"):
                raise GeofenceError("deviation state: needs int max_distance_m and a basis")
            m._max_m, m._basis = max_m, basis
        if has_back:
            m._back = _Window.from_dict(d["back"], "back", cap)
        m._state = state
        m.ignored_out_of_order = d.get("ignored_out_of_order", 0)
        m.ignored_invalid = d.get("ignored_invalid", 0)
        return m
