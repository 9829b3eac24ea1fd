"""One vehicle GPS sensor's rules: route corridor, zones, stops and speed, fix by fix.

The sources already drop bad fixes (invalid, stale, future, impossible jumps, duplicates;
sources/gps_filter.py); this is the last guard, because the rules also run over journals
written by other versions or replayed: a reading without a fix (quality 0, 7, 8 or broken
fields) or not later than the sensor's last accepted fix is ignored and counted. Every rule
here runs on fix time only.

Route deviation is geofences.DeviationMonitor (hysteresis, minimum duration, sparse-fix chord
test), fed only while a trip is in progress; zones are watched by ``zonewatch.ZoneWatch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from edge_agent.rules.alerts import Alert
from edge_agent.rules.context import ActivePlan, Fix, Place, ZoneLookup, zones_at
from edge_agent.rules.motion import SpeedMonitor, StopMonitor
from edge_agent.rules.params import RuleParams
from edge_agent.rules.zonewatch import ZoneWatch
from geofences import DeviationMonitor, GeofenceError, ZoneIndex


class VehicleContext(NamedTuple):
    plan: ActivePlan | None
    """The active plan while its trip is in progress (started, not closed), else None."""
    params: RuleParams
    lookups: Sequence[ZoneLookup]
    """Plan zones and fence-bundle zones: where a stop is authorized."""
    watch: Sequence[tuple[str, ZoneIndex]]
    """(set id, zones) watched for geofenceEnter/Exit."""


class Vehicle:
    def __init__(self, src: str) -> None:
        self.src = src
        self.last: Fix | None = None
        self.ignored_out_of_order = 0
        self.ignored_no_fix = 0
        self.speed = SpeedMonitor()
        self.stop = StopMonitor()
        self.route: DeviationMonitor | None = None
        self.route_digest: str | None = None
        self.route_alert: int | None = None
        self._route_saved: Mapping[str, Any] | None = None
        self.zones = ZoneWatch(src)

    def accept(self, seq: int, t_ms: int, body: Mapping[str, Any]) -> Fix | None:
        """The reading as a fix the rules use, or None (ignored and counted)."""
        fix = Fix.from_body(seq, t_ms, body)
        if fix is None:
            self.ignored_no_fix += 1
            return None
        if self.last is not None and t_ms <= self.last.t_ms:
            self.ignored_out_of_order += 1
            return None
        self.last = fix
        return fix

    def evaluate(self, fix: Fix, ctx: VehicleContext) -> list[Alert]:
        params = ctx.params
        alerts: list[Alert] = []
        alert = self.speed.update(fix, params, self.src)
        if alert is not None:
            alerts.append(alert)
        long_stop = self.stop.update(fix, params, params.max_stop_ms)
        plan = ctx.plan
        if plan is not None:
            if long_stop is not None:
                place = Place(long_stop.anchor, zones_at(ctx.lookups, long_stop.anchor,
                                                         fix.t_ms, params.zone_margin_m))
                if not place.authorized(plan):
                    alerts.append(Alert("unauthorizedStop", self.src, fix.seq, fix.t_ms,
                                        long_stop.evidence, {
                                            "stopped_since_ms": long_stop.since_ms,
                                            "duration_ms": long_stop.duration_ms,
                                            "limit_ms": params.max_stop_ms,
                                            "evidence_count": long_stop.evidence_count,
                                            **place.describe()}, gps=self.src))
            alerts += self._route(fix, plan)
        else:
            self._drop_route()
        alerts += self.zones.update(fix, ctx.watch, params)
        return alerts

    # -- route corridor ------------------------------------------------------------------------

    def _route(self, fix: Fix, plan: ActivePlan) -> list[Alert]:
        monitor = self._route_for(plan)
        alerts = []
        for event in monitor.update(fix.seq, fix.t_ms, fix.lat_e7, fix.lon_e7):
            details: dict[str, Any] = {
                "corridor_id": event.corridor_id,
                "width_m": round(monitor.corridor.width_m),
                "distance_m": event.distance_m,
                "max_distance_m": event.max_distance_m,
                "off_route_since_ms": event.off_route_since_ms,
                "basis": event.basis,
                "evidence_count": event.evidence_count,
            }
            opened = None
            if event.off_route_duration_ms is not None:
                details["off_route_duration_ms"] = event.off_route_duration_ms
            if event.type == "routeDeviation":
                self.route_alert = event.seq
            else:
                opened, self.route_alert = self.route_alert, None
            alerts.append(Alert(event.type, self.src, event.seq, event.t_ms, event.evidence,
                                details, opened_seq=opened, gps=self.src))
        return alerts

    def _route_for(self, plan: ActivePlan) -> DeviationMonitor:
        corridor, params = plan.plan.corridor, plan.params.deviation
        if self.route is not None and self.route_digest == plan.digest:
            return self.route
        saved = self.route.to_dict() if self.route is not None else self._route_saved
        self._route_saved = None
        monitor = DeviationMonitor(corridor, params)
        if saved is not None and saved.get("corridor_id") == corridor.corridor_id:
            try:  # the same corridor (a restart, or an amended plan): keep its state
                monitor = DeviationMonitor.from_dict(corridor, params, dict(saved))
            except GeofenceError:
                monitor = DeviationMonitor(corridor, params)
        else:
            self.route_alert = None
        self.route, self.route_digest = monitor, plan.digest
        return monitor

    def _drop_route(self) -> None:
        self.route = self.route_digest = self.route_alert = self._route_saved = None

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.last is not None:
            d["last"] = self.last.to_list()
        if self.ignored_out_of_order or self.ignored_no_fix:
            d["ignored"] = [self.ignored_out_of_order, self.ignored_no_fix]
        for name, part in (("speed", self.speed.to_dict()), ("stop", self.stop.to_dict()),
                           ("zones", self.zones.to_dict())):
            if part:
                d[name] = part
        route = self.route.to_dict() if self.route is not None else self._route_saved
        if route is not None:
            d["route"] = {"digest": self.route_digest, "alert": self.route_alert, "m": route}
        return d

    @classmethod
    def from_dict(cls, src: str, d: Mapping[str, Any]) -> Vehicle:
        v = cls(src)
        v.last = Fix.from_list(d.get("last"))
        v.ignored_out_of_order, v.ignored_no_fix = d.get("ignored", [0, 0])
        v.speed = SpeedMonitor.from_dict(d.get("speed", {}))
        v.stop = StopMonitor.from_dict(d.get("stop", {}))
        v.zones = ZoneWatch.from_dict(src, d.get("zones", {}))
        route = d.get("route")
        if route is not None:
            v._route_saved, v.route_alert = route.get("m"), route.get("alert")
            v.route_digest = None  # rebuilt against the plan on the next fix
        return v
