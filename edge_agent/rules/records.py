"""From a rule's ``Alert`` to the ``alert`` record body customs receives (DESIGN.md "Records").

What a rule module cannot know is added here: the stable id, the plan the alert belongs to (and
``details.plan_seq``, the planLoaded record that ties it to that plan), the asset names
(vehicle, container, seal, GPS or other sensor), the position, and for closing alerts the id of
the alert they close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.journal import Draft, Journal
from edge_agent.rules.alerts import CLOSES, Alert, alert_id
from edge_agent.rules.context import ActivePlan, Fix
from edge_agent.rules.trip import Trip

SRC = "rules"


@dataclass(frozen=True, slots=True)
class Where:
    """The engine's knowledge for one alert: plan, trip, asset names, positions."""

    plan: ActivePlan | None
    trip: Trip | None
    vehicle: str | None
    position: Fix | None
    """The alert's sensor's last fix, else the vehicle's, else the gateway's site (seq 0)."""
    gps_sensor: bool
    """The alert's key is a sensor that sends GPS readings."""


def alert_draft(gateway_id: str, a: Alert, where: Where) -> Draft:
    plan, trip = where.plan, where.trip
    tied = plan is not None and trip is not None and (trip.open or trip.closed_seq == a.seq)
    asset: dict[str, str] = {}
    vehicle = plan.plan.vehicle if plan is not None else where.vehicle
    if vehicle:
        asset["vehicle"] = vehicle
    if a.gps:
        asset["gps"] = a.gps
    if a.type in ("commLoss", "commRestored"):
        asset["sensor"] = a.key
        if where.gps_sensor:
            asset["gps"] = a.key
    if a.seal:
        asset["seal"] = a.seal
        container = plan.seal_container.get(a.seal) if plan is not None else None
        if container is not None:
            asset["container"] = container
    details = dict(a.details)
    if tied and plan is not None:
        details["plan_seq"] = plan.seq
    if a.opened_seq is not None:
        details["closes"] = alert_id(gateway_id, CLOSES[a.type], a.key, a.opened_seq)
    body: dict[str, Any] = {
        "alert_id": alert_id(gateway_id, a.type, a.key, a.seq),
        "type": a.type,
        "severity": a.level,
        "asset": asset,
        "plan_id": plan.plan_id if tied and plan is not None else None,
        "evidence": sorted({s for s in a.evidence if s > 0}),
        "details": details,
    }
    fix = where.position
    if fix is not None:
        body["position"] = (fix.position() if fix.seq > 0
                            else {"lat_e7": fix.lat_e7, "lon_e7": fix.lon_e7})
    return Draft(a.t_ms, "alert", SRC, body)


def unique(journal: Journal, drafts: list[Draft], warn: Any) -> list[Draft]:
    """Never commit an alert id twice (the journal's unique index would refuse the chunk)."""
    seen: set[str] = set()
    out = []
    for draft in drafts:
        aid = draft.body["alert_id"]
        if aid in seen or journal.alert_seq(aid) is not None:
            warn("rules: alert %s (%s) already raised; not repeated", aid, draft.body["type"])
            continue
        seen.add(aid)
        out.append(draft)
    return out
