"""Rules: turn the journal's readings into alerts, as a journal consumer with its own cursor.

Rules read committed readings (never the live source stream), and commit the alerts they raise
together with their cursor and per-asset state in one transaction. A crash at any point
therefore re-evaluates exactly the readings whose effects were not committed, so a restart
neither re-fires an alert nor forgets an open deviation. Alert ids are UUIDv5 of what triggered
them, so even a re-evaluation produces the same alert_id.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from edge_agent.journal import Draft, Journal, Stored
from edge_agent.tail import JournalTail
from geofences import Corridor, DeviationEvent, DeviationMonitor, DeviationParams

log = logging.getLogger(__name__)

ALERT_NAMESPACE = uuid.UUID("6f1d3c2e-5a1b-5c7d-9e8f-5ea17a11e001")
SEVERITY = {"routeDeviation": "critical", "routeReturn": "warning"}
CURSOR = "rules"


def alert_id(gateway_id: str, alert_type: str, src: str, seq: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{gateway_id}/{alert_type}/{src}/{seq}"))


class RouteRules:
    """Corridor deviation rules for the vehicles whose GPS sensors feed this gateway."""

    name = CURSOR

    def __init__(self, journal: Journal, corridor: Corridor, *, vehicle: str,
                 params: DeviationParams | None = None, plan_id: str | None = None,
                 read_chunk: int = 500):
        self.journal = journal
        self.corridor = corridor
        self.vehicle = vehicle
        self.params = params or DeviationParams()
        self.plan_id = plan_id
        self.read_chunk = read_chunk
        self._monitors: dict[str, DeviationMonitor] = {}
        self.position = journal.cursor(CURSOR)

    def _monitor(self, src: str) -> DeviationMonitor:
        monitor = self._monitors.get(src)
        if monitor is None:
            saved = self.journal.state(self._state_key(src))
            if saved is None:
                monitor = DeviationMonitor(self.corridor, self.params)
            else:
                monitor = DeviationMonitor.from_dict(self.corridor, self.params, json.loads(saved))
            self._monitors[src] = monitor
        return monitor

    def _state_key(self, src: str) -> str:
        return f"rules/route/{self.corridor.corridor_id}/{src}"

    def evaluate(self, records: list[Stored]) -> list[Stored]:
        """Evaluate a run of committed records; commit alerts + state + cursor; return alerts."""
        drafts: list[Draft] = []
        touched: set[str] = set()
        for stored in records:
            if stored.kind != "gps":
                continue
            body = stored.record()["body"]
            monitor = self._monitor(stored.src)
            for event in monitor.update(stored.seq, stored.t_ms, body["lat_e7"], body["lon_e7"]):
                drafts.append(self._alert(stored, body, event))
            touched.add(stored.src)
        state = {self._state_key(src): json.dumps(self._monitors[src].to_dict(), sort_keys=True)
                 for src in touched}
        return self.journal.append(drafts, cursors={CURSOR: records[-1].seq}, state=state)

    def _alert(self, stored: Stored, fix: dict[str, Any], event: DeviationEvent) -> Draft:
        details: dict[str, Any] = {
            "corridor_id": self.corridor.corridor_id,
            "width_m": int(self.corridor.width_m),
            "distance_m": event.distance_m,
            "max_distance_m": event.max_distance_m,
            "off_route_since_ms": event.off_route_since_ms,
        }
        if event.off_route_duration_ms is not None:
            details["off_route_duration_ms"] = event.off_route_duration_ms
        body = {
            "alert_id": alert_id(self.journal.gateway_id, event.type, stored.src, event.seq),
            "type": event.type,
            "severity": SEVERITY[event.type],
            "asset": {"vehicle": self.vehicle, "gps": stored.src},
            "plan_id": self.plan_id,
            "position": {k: fix[k] for k in ("lat_e7", "lon_e7", "fix_quality", "hdop_x10",
                                              "sats") if k in fix},
            "evidence": list(event.evidence),
            "details": details,
        }
        return Draft(event.t_ms, "alert", "rules", body)

    async def run(self, tail: JournalTail) -> None:
        while True:
            await tail.wait_beyond(self.position)
            records = self.journal.read_after(self.position, self.read_chunk)
            if not records:
                continue
            alerts = self.evaluate(records)
            self.position = records[-1].seq
            if alerts:
                for alert in alerts:
                    log.info("alert seq %d: %s", alert.seq, alert.record()["body"]["type"])
                await tail.advanced(alerts[-1].seq)
