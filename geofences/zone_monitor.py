"""Zone enter/exit state machine: one per asset, over every zone of a plan or fence bundle.

``geofenceEnter`` / ``geofenceExit`` must be true for customs to act on them (a truck inside a
forbidden area, a container leaving the port area), so the same defences as the corridor's
deviation monitor apply, all on fix time (``t_ms``), never the wall clock:

* **Hysteresis.** A fix is *in* a zone at distance 0 (boundary included). Once an enter is
  raised, the asset is *out* only beyond ``exit_margin_m``; fixes in the band between change
  nothing, so GNSS noise along a fence cannot flap enter/exit pairs.
* **Minimum duration.** An enter fires when the first *in* fix is ``min_inside_ms`` old and the
  asset was never *out* (beyond the margin) since; an exit likewise needs ``min_outside_ms`` of
  fixes out, and one fix back *in* cancels it silently. 0 means at once.
* **Sparse fixes.** If two consecutive fixes are at least ``segment_gap_ms`` apart, both outside
  a zone, and the straight chord between them passes through it, the vehicle *may* have crossed
  it; it is reported (an enter and an exit, ``basis == "segment"``, times estimated along the
  chord) only if the shortest way around the zone could not have been driven in the time at
  ``max_speed_cmps`` (``geofences.crossing``). A fix pair that even the chord cannot join at that
  speed is a GNSS jump, not a crossing, and is ignored.
* **Validity windows.** A zone outside its window is treated as absent: entering it raises
  nothing, and an asset inside when it lapses gets an exit like any other.
* **Out-of-order** fixes (``t_ms`` not after the last accepted one) and impossible coordinates
  are ignored and counted. Filtering bad fixes (stale, HDOP, speed) is the caller's job.
* **Persistence.** ``to_dict`` / ``from_dict`` carry the whole state as JSON-safe values, so a
  restarted agent neither re-fires an enter nor forgets that a truck is inside. State for a zone
  the new index no longer has is dropped (the fences changed; the caller decides what to say).

``params`` may differ per role (say, a forbidden area confirmed faster than a port area).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geofences.corridor import GeofenceError
from geofences.crossing import chord_crossings
from geofences.deviation import _is_int, _Window
from geofences.projection import great_circle_m
from geofences.zones import Zone, ZoneIndex

GEOFENCE_ENTER = "geofenceEnter"
GEOFENCE_EXIT = "geofenceExit"

ENTERING = "entering"
"""In the zone, enter not yet confirmed by ``min_inside_ms``."""
INSIDE = "inside"
EXITING = "exiting"
"""Enter raised, now out beyond the margin, exit not yet confirmed by ``min_outside_ms``."""
ZONE_STATES = (ENTERING, INSIDE, EXITING)
STATE_VERSION = 1


@dataclass(frozen=True)
class ZoneParams:
    """Tuning of the zone monitor (integers, so a plan's limits can carry them).

    * ``exit_margin_m = 30``: consumer GNSS wanders 5-30 m near buildings and cranes; a truck
      parked just inside a fence must not "leave" on noise.
    * ``min_inside_ms = 10_000``, ``min_outside_ms = 10_000``: multipath spikes last seconds; ten
      seconds of agreeing fixes is strong evidence and still prompt.
    * ``segment_gap_ms = 10_000``: chords are checked only across gaps longer than normal fix
      spacing (1 Hz), where a crossing could hide.
    * ``max_speed_cmps = 4_167`` (150 km/h): above any legal truck speed.
    """

    exit_margin_m: int = 30
    min_inside_ms: int = 10_000
    min_outside_ms: int = 10_000
    segment_gap_ms: int = 10_000
    max_speed_cmps: int = 4_167
    evidence_cap: int = 32

    def __post_init__(self) -> None:
        for name in ("exit_margin_m", "min_inside_ms", "min_outside_ms", "segment_gap_ms"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise GeofenceError(f"ZoneParams.{name} must be an int >= 0, got {v!r}")
        if not _is_int(self.max_speed_cmps) or self.max_speed_cmps <= 0:
            raise GeofenceError(f"ZoneParams.max_speed_cmps must be an int > 0, "
                                f"got {self.max_speed_cmps!r}")
        if not _is_int(self.evidence_cap) or self.evidence_cap < 2:
            raise GeofenceError(f"ZoneParams.evidence_cap must be an int >= 2, "
                                f"got {self.evidence_cap!r}")


@dataclass(frozen=True)
class ZoneEvent:
    """What the rules turn into a geofenceEnter / geofenceExit alert body.

    ``seq``/``t_ms`` are those of the fix that triggered the event. ``since_ms`` is when the
    asset got in (enter) or out (exit): the first agreeing fix, or the estimated time on the chord
    for ``basis == "segment"``. ``evidence`` holds the seqs of the agreeing fixes (capped, first
    and last halves kept; for "segment" the two fixes of the chord). ``dwell_ms`` (exits only)
    runs from the enter's ``since_ms`` to this ``since_ms``. ``distance_m`` is the triggering
    fix's distance from the zone in metres (0 inside; -1 if the zone has lapsed).
    """

    type: str
    zone_id: str
    role: str
    seq: int
    t_ms: int
    since_ms: int
    distance_m: int
    evidence: tuple[int, ...]
    evidence_count: int
    basis: str = "fixes"
    dwell_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.type, "zone_id": self.zone_id, "role": self.role, "seq": self.seq,
            "t_ms": self.t_ms, "since_ms": self.since_ms, "distance_m": self.distance_m,
            "evidence": list(self.evidence), "evidence_count": self.evidence_count,
            "basis": self.basis,
        }
        if self.dwell_ms is not None:
            d["dwell_ms"] = self.dwell_ms
        return d


@dataclass
class _Track:
    """One zone the asset is in, entering or leaving; zones with no track are "outside"."""

    state: str
    window: _Window | None = None  # ENTERING: fixes in; EXITING: fixes out
    entered_ms: int | None = None  # since_ms of the raised enter (INSIDE, EXITING)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"state": self.state}
        if self.window is not None:
            d["window"] = self.window.to_dict()
        if self.entered_ms is not None:
            d["entered_ms"] = self.entered_ms
        return d


class ZoneMonitor:
    """Per-asset zone enter/exit state machine over one ``ZoneIndex`` (see module docstring)."""

    def __init__(
        self, zones: ZoneIndex, params: ZoneParams | Mapping[str, ZoneParams] | None = None
    ) -> None:
        self.zones = zones
        if params is None or isinstance(params, ZoneParams):
            self._default = params or ZoneParams()
            self._by_role: dict[str, ZoneParams] = {}
        else:
            self._default = ZoneParams()
            self._by_role = dict(params)
        all_params = [self._default, *self._by_role.values()]
        self._gap_ms = min(p.segment_gap_ms for p in all_params)
        self._slowest_cmps = min(p.max_speed_cmps for p in all_params)
        self.ignored_out_of_order = 0
        self.ignored_invalid = 0
        self._tracks: dict[str, _Track] = {}
        self._last: tuple[int, int, int, int] | None = None  # seq, t_ms, lat_e7, lon_e7

    def params_for(self, zone: Zone) -> ZoneParams:
        return self._by_role.get(zone.role, self._default)

    @property
    def inside(self) -> tuple[str, ...]:
        """Zones whose enter was raised and not yet followed by an exit, in zone order."""
        ids = [zid for zid, t in self._tracks.items() if t.state != ENTERING]
        return tuple(sorted(ids, key=self.zones.index_of))

    def state_of(self, zone_id: str) -> str:
        """``outside``, ``entering``, ``inside`` or ``exiting``."""
        t = self._tracks.get(zone_id)
        return "outside" if t is None else t.state

    # -- the machine ------------------------------------------------------------------------

    def update(self, seq: int, t_ms: int, lat_e7: int, lon_e7: int) -> list[ZoneEvent]:
        """Feed one fix; returns the events it triggers, in zone order."""
        if not (_is_int(seq) and _is_int(t_ms)):
            self.ignored_invalid += 1
            return []
        if self._last is not None and t_ms <= self._last[1]:
            self.ignored_out_of_order += 1
            return []
        zones = self.zones
        try:
            # Zones the fix is in (cheap: no distances), then the exact distance to the few
            # zones this asset is tracked in; lapsed zones count as infinitely far.
            dist = {z.zone_id: 0.0 for z in zones.containing(lat_e7, lon_e7, t_ms)}
            for zid in self._tracks:
                if zid not in dist:
                    active = zones[zid].active_at(t_ms)
                    dist[zid] = zones.distance_m(zid, lat_e7, lon_e7) if active else math.inf
        except GeofenceError:
            self.ignored_invalid += 1
            return []
        prev, self._last = self._last, (seq, t_ms, lat_e7, lon_e7)
        events: list[ZoneEvent] = []
        if prev is not None and t_ms - prev[1] >= self._gap_ms:
            events += self._pass_throughs(prev, seq, t_ms, lat_e7, lon_e7, dist)
        for i in sorted(zones.index_of(zid) for zid in dist):
            zone = zones.zones[i]
            self._step(zone, seq, t_ms, dist.get(zone.zone_id, math.inf), events)
        return events

    def _step(self, zone: Zone, seq: int, t_ms: int, d: float, events: list[ZoneEvent]) -> None:
        p = self.params_for(zone)
        zid = zone.zone_id
        track = self._tracks.get(zid)
        inside, out = d == 0.0, d > p.exit_margin_m
        if track is None:  # outside; only called when inside
            track = self._tracks[zid] = _Track(ENTERING, _Window(t_ms))
            track.window.push(seq, p.evidence_cap)  # type: ignore[union-attr]
            self._maybe_enter(zone, p, track, seq, t_ms, events)
        elif track.state == ENTERING:
            assert track.window is not None
            if out:
                del self._tracks[zid]  # a brief visit: forget it
            elif inside:
                track.window.push(seq, p.evidence_cap)
                self._maybe_enter(zone, p, track, seq, t_ms, events)
        elif track.state == INSIDE:
            if out:
                track.state, track.window = EXITING, _Window(t_ms)
                track.window.push(seq, p.evidence_cap)
                self._maybe_exit(zone, p, track, seq, t_ms, d, events)
        else:  # EXITING
            assert track.window is not None
            if inside:
                track.state, track.window = INSIDE, None
            elif out:
                track.window.push(seq, p.evidence_cap)
                self._maybe_exit(zone, p, track, seq, t_ms, d, events)

    def _maybe_enter(self, zone: Zone, p: ZoneParams, track: _Track, seq: int, t_ms: int,
                     events: list[ZoneEvent]) -> None:
        w = track.window
        assert w is not None
        if t_ms - w.since_ms >= p.min_inside_ms:
            events.append(ZoneEvent(GEOFENCE_ENTER, zone.zone_id, zone.role, seq, t_ms,
                                    w.since_ms, 0, tuple(w.evidence), w.count))
            track.state, track.window, track.entered_ms = INSIDE, None, w.since_ms

    def _maybe_exit(self, zone: Zone, p: ZoneParams, track: _Track, seq: int, t_ms: int,
                    d: float, events: list[ZoneEvent]) -> None:
        w = track.window
        assert w is not None and track.entered_ms is not None
        if t_ms - w.since_ms >= p.min_outside_ms:
            events.append(ZoneEvent(GEOFENCE_EXIT, zone.zone_id, zone.role, seq, t_ms,
                                    w.since_ms, -1 if math.isinf(d) else round(d),
                                    tuple(w.evidence), w.count,
                                    dwell_ms=w.since_ms - track.entered_ms))
            del self._tracks[zone.zone_id]

    def _pass_throughs(self, prev: tuple[int, int, int, int], seq: int, t_ms: int,
                       lat_e7: int, lon_e7: int, dist: dict[str, float]) -> list[ZoneEvent]:
        """Both fixes outside a zone, the chord through it, no way around in time: a crossing."""
        pseq, pt, plat, plon = prev
        dt = t_ms - pt
        chord_m = great_circle_m(plat / 1e7, plon / 1e7, lat_e7 / 1e7, lon_e7 / 1e7)
        if chord_m * 100_000 > self._slowest_cmps * dt * 1.01:
            return []  # not even the straight line is drivable: a GNSS jump, not evidence
        events: list[ZoneEvent] = []
        for c in chord_crossings(self.zones, (plat, plon), (lat_e7, lon_e7), t_ms):
            zone, p = c.zone, self.params_for(c.zone)
            if zone.zone_id in self._tracks or dist.get(zone.zone_id, math.inf) == 0.0:
                continue  # already tracked, or the fix itself is in: the fix logic handles it
            if c.detour_m * 100_000 <= p.max_speed_cmps * dt:
                continue  # it could have driven around
            t_in = pt + round(c.enter_fraction * dt)
            t_out = pt + round(c.exit_fraction * dt)
            ev = (pseq, seq)
            d_m = round(self.zones.distance_m(zone.zone_id, lat_e7, lon_e7))
            events.append(ZoneEvent(GEOFENCE_ENTER, zone.zone_id, zone.role, seq, t_ms, t_in,
                                    d_m, ev, 2, "segment"))
            events.append(ZoneEvent(GEOFENCE_EXIT, zone.zone_id, zone.role, seq, t_ms, t_out,
                                    d_m, ev, 2, "segment", dwell_ms=t_out - t_in))
        return events

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-safe ints/strings/lists, for the agent's journal."""
        d: dict[str, Any] = {
            "v": STATE_VERSION,
            "ignored_out_of_order": self.ignored_out_of_order,
            "ignored_invalid": self.ignored_invalid,
            "zones": {zid: t.to_dict() for zid, t in sorted(self._tracks.items())},
        }
        if self._last is not None:
            seq, t_ms, lat_e7, lon_e7 = self._last
            d["last"] = {"seq": seq, "t_ms": t_ms, "lat_e7": lat_e7, "lon_e7": lon_e7}
        return d

    @classmethod
    def from_dict(
        cls,
        zones: ZoneIndex,
        params: ZoneParams | Mapping[str, ZoneParams] | None,
        d: Any,
    ) -> ZoneMonitor:
        """Rebuild from ``to_dict`` output; ``GeofenceError`` if it is not such output.

        Tracks for zone ids this index lacks are dropped (see module docstring).
        """
        m = cls(zones, params)
        if not isinstance(d, dict) or d.get("v") != STATE_VERSION:
            raise GeofenceError(f"zone state: not a version {STATE_VERSION} state object")
        for name in ("ignored_out_of_order", "ignored_invalid"):
            if not _is_int(d.get(name, 0)):
                raise GeofenceError(f"zone state: {name} must be an int")
            setattr(m, name, d.get(name, 0))
        last = d.get("last")
        if last is not None:
            keys = ("seq", "t_ms", "lat_e7", "lon_e7")
            vals = [last.get(k) for k in keys] if isinstance(last, dict) else [None]
            if not all(map(_is_int, vals)):
                raise GeofenceError("zone state: last must hold int seq, t_ms, lat_e7, lon_e7")
            m._last = (vals[0], vals[1], vals[2], vals[3])
        tracks = d.get("zones", {})
        if not isinstance(tracks, dict):
            raise GeofenceError("zone state: zones must be an object")
        for zid, td in tracks.items():
            zone = zones.get(zid)
            if zone is None:
                continue
            m._tracks[zid] = _track_from_dict(zid, td, m.params_for(zone).evidence_cap)
        return m


def _track_from_dict(zid: str, td: Any, cap: int) -> _Track:
    where = f"zone state {zid!r}"
    if not isinstance(td, dict) or td.get("state") not in ZONE_STATES:
        raise GeofenceError(f"{where}: state must be one of {', '.join(ZONE_STATES)}")
    state = td["state"]
    window = None if "window" not in td else _Window.from_dict(td["window"], where, cap)
    entered = td.get("entered_ms")
    if (window is None) != (state == INSIDE) or (entered is None) != (state == ENTERING):
        raise GeofenceError(f"{where}: fields do not match state {state!r}")
    if entered is not None and not _is_int(entered):
        raise GeofenceError(f"{where}: entered_ms must be an int")
    return _Track(state, window, entered)
