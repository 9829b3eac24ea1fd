"""What every console request needs: the store, plans, the audit chain, the change feed, and
the settings; plus the overview of trips and vehicles that the map draws.

Endpoints that only read or write the store are plain functions (Starlette runs them on its
thread pool), so a slow query never holds up the event loop the MQTT receiver shares.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from customs.console.meaning import STATUS_TYPES
from customs.console.plans import PlanCache, PlanView, gateway_of_source
from customs.store import GatewayRow, SqlStore

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from customs.audit import AuditChain
    from customs.console.sse import ChangeFeed
    from customs.console.verification import AnchorChecker

COMM_LOST_MS = 5 * 60_000
"""A vehicle that sent nothing for this long is drawn as 'comm lost' (its gateway reports at
least every heartbeat, 5-10 s, while it has a link)."""


@dataclass
class ConsoleContext:
    store: SqlStore
    plans: PlanCache
    audit: AuditChain
    feed: ChangeFeed
    anchors: AnchorChecker
    service_key: Ed25519PrivateKey
    issuer: str
    audit_id: str
    session_s: float = 12 * 3600
    secure_cookie: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cookie_name(self) -> str:
        # __Host-: the browser refuses it unless Secure, Path=/ and no Domain
        return "__Host-sealtrail" if self.secure_cookie else "sealtrail"


def vehicle_state(gw: GatewayRow | None, open_alerts: dict[str, int],
                  latest: dict[str, int], now_ms: int) -> str:
    """normal | alert | comm | gnss: what colour a vehicle is drawn in. An open warning or
    critical alert wins (it needs an officer); then a lost link, then lost GNSS."""
    if open_alerts.get("critical") or open_alerts.get("warning"):
        return "alert"
    last_seen = None
    if gw is not None:
        last_seen = max(x for x in (gw.last_fix_ms, gw.received_ms, gw.t_ms) if x is not None) \
            if any(x is not None for x in (gw.last_fix_ms, gw.received_ms, gw.t_ms)) else None
    comm_open = latest.get("commLoss", 0) > latest.get("commRestored", 0)
    if (gw is not None and gw.state == "offline") or comm_open or (
            last_seen is not None and now_ms - last_seen > COMM_LOST_MS):
        return "comm"
    if latest.get("gnssLost", 0) > latest.get("gnssRestored", 0):
        return "gnss"
    return "normal"


def vehicle(gw: str, row: GatewayRow | None, open_alerts: dict[str, int],
            latest: dict[str, int], now_ms: int) -> dict[str, Any]:
    return {"gw": gw, "state": vehicle_state(row, open_alerts, latest, now_ms),
            "lat": row.last_lat_e7 / 1e7 if row and row.last_lat_e7 is not None else None,
            "lon": row.last_lon_e7 / 1e7 if row and row.last_lon_e7 is not None else None,
            "fix_ms": row.last_fix_ms if row else None,
            "link": row.state if row else "unknown",
            "open": sum(open_alerts.values())}


def overview(ctx: ConsoleContext) -> dict[str, Any]:
    """Every trip (plan and the gateway reporting for it) and every vehicle, for the map."""
    store = ctx.store
    now = int(time.time() * 1000)
    gateways = store.gateways()
    open_counts = store.open_alert_counts(ignore_types=STATUS_TYPES)
    latest = store.latest_of_types(("gnssLost", "gnssRestored", "commLoss", "commRestored"))
    by_alerts = store.plan_gateways()
    steps = store.trip_steps()
    trips = []
    covered: set[str] = set()
    for plan_id, envelope, source, _ in store.plans_with_source():
        view: PlanView = ctx.plans.view(plan_id, envelope, parse=False)
        gw = gateway_of_source(source) or next(iter(by_alerts.get(plan_id, [])), None)
        done = steps.get(plan_id, {})
        trip = {"plan": view.summary(), "gw": gw, "geometry": view.geometry(),
                "steps": {k: v.t_ms for k, v in done.items()},
                "active": "trip.terminated" not in done}
        if gw is not None:
            covered.add(gw)
        trips.append(trip)
    vehicles = [vehicle(gw, gateways.get(gw), open_counts.get(gw, {}), latest.get(gw, {}), now)
                for gw in sorted(set(gateways) | covered)]
    return {"now_ms": now, "trips": trips, "vehicles": vehicles}


def vehicle_of(ctx: ConsoleContext, gw: str) -> dict[str, Any]:
    store = ctx.store
    counts = store.open_alert_counts(ignore_types=STATUS_TYPES).get(gw, {})
    latest = store.latest_of_types(("gnssLost", "gnssRestored", "commLoss",
                                    "commRestored")).get(gw, {})
    return vehicle(gw, store.gateway(gw), counts, latest, int(time.time() * 1000))
