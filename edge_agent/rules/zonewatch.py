"""geofenceEnter / geofenceExit for one GPS sensor over the watched zone sets.

The watched sets are the plan's zones (while its trip is in progress) and the fence bundle's
(always). Each set gets a ``geofences.ZoneMonitor``, which supplies the defences against false
alarms, all on fix time: hysteresis (in at the boundary, out only beyond ``zone_margin_m``, so
a truck parked on a fence does not flap), minimum duration (``zone_min_duration_ms`` of agreeing
fixes; one fix back cancels), segment crossing between sparse fixes (an enter and an exit with
``basis: "segment"`` when no way around the zone was drivable in time) and validity windows.

This module only turns its events into alerts: severity by role (entering a forbidden zone is
critical, leaving it a warning, everything else info), an id per sensor, set and zone, and the
exit naming its enter. A set is identified by plan id / bundle id: an amended plan (same id)
keeps the state, a different plan starts clean, and a set no longer watched (trip closed, plan
replaced) is dropped without exits, since its zones no longer mean anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.rules.alerts import Alert, zone_severity
from edge_agent.rules.context import Fix
from edge_agent.rules.params import RuleParams
from geofences import GeofenceError, ZoneIndex, ZoneMonitor, ZoneParams


def zone_params(params: RuleParams) -> ZoneParams:
    return ZoneParams(exit_margin_m=params.zone_margin_m,
                      min_inside_ms=params.zone_min_duration_ms,
                      min_outside_ms=params.zone_min_duration_ms)


class ZoneWatch:
    def __init__(self, src: str) -> None:
        self.src = src
        self.monitors: dict[str, ZoneMonitor] = {}
        self.entered: dict[str, dict[str, int]] = {}
        """set id -> zone id -> seq of the raised geofenceEnter (named by the exit)."""
        self._saved: dict[str, Any] = {}
        """Monitor states loaded from the journal, rebuilt once their zones are known."""

    def update(self, fix: Fix, watch: Sequence[tuple[str, ZoneIndex]],
               params: RuleParams) -> list[Alert]:
        alerts: list[Alert] = []
        watched = {set_id for set_id, _ in watch}
        for set_id in [s for s in (*self.monitors, *self._saved) if s not in watched]:
            self.monitors.pop(set_id, None)
            self._saved.pop(set_id, None)
            self.entered.pop(set_id, None)
        for set_id, zones in watch:
            monitor = self._monitor(set_id, zones, params)
            entered = self.entered.setdefault(set_id, {})
            for ev in monitor.update(fix.seq, fix.t_ms, fix.lat_e7, fix.lon_e7):
                details: dict[str, Any] = {
                    "zone_id": ev.zone_id, "role": ev.role, "zone_set": set_id,
                    "since_ms": ev.since_ms, "distance_m": ev.distance_m, "basis": ev.basis,
                    "evidence_count": ev.evidence_count}
                zone = zones.get(ev.zone_id)
                if zone is not None and zone.name:
                    details["zone_name"] = zone.name
                opened = None
                if ev.type == "geofenceEnter":
                    entered[ev.zone_id] = ev.seq
                else:
                    details["dwell_ms"] = ev.dwell_ms
                    opened = entered.pop(ev.zone_id, None)
                alerts.append(Alert(ev.type, f"{self.src}/{set_id}/{ev.zone_id}", ev.seq,
                                    ev.t_ms, ev.evidence, details,
                                    severity=zone_severity(ev.type, ev.role),
                                    opened_seq=opened, gps=self.src))
        return alerts

    def _monitor(self, set_id: str, zones: ZoneIndex, params: RuleParams) -> ZoneMonitor:
        monitor = self.monitors.get(set_id)
        if monitor is not None and monitor.zones is zones:
            return monitor
        saved = monitor.to_dict() if monitor is not None else self._saved.pop(set_id, None)
        zp = zone_params(params)
        fresh = ZoneMonitor(zones, zp)
        if saved is not None:
            with contextlib.suppress(GeofenceError):  # after a restart, or an amended plan
                fresh = ZoneMonitor.from_dict(zones, zp, saved)
        self.monitors[set_id] = fresh
        return fresh

    def reached(self, set_id: str, zone_id: str) -> bool:
        """The last fix fed was in the zone, or the zone's enter is raised (no extra lookup)."""
        monitor = self.monitors.get(set_id)
        return monitor is not None and monitor.state_of(zone_id) != "outside"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self._saved)
        for set_id, monitor in self.monitors.items():
            out[set_id] = monitor.to_dict()
        if not out:
            return {}
        return {"sets": out, "entered": {s: e for s, e in self.entered.items() if e}}

    @classmethod
    def from_dict(cls, src: str, d: Mapping[str, Any]) -> ZoneWatch:
        w = cls(src)
        w._saved = dict(d.get("sets", {}))
        w.entered = {s: dict(e) for s, e in d.get("entered", {}).items()}
        return w
