"""What one batch of ``changes`` rows means to an open console: the alerts that are new or
were handled, the vehicles whose colour may have changed, the ones that moved, and new audit
entries. Built once per batch by the feed and sent to every open event stream."""

from __future__ import annotations

from typing import Any

from customs.console.api_alerts import alert_summary, audit_summary
from customs.console.context import ConsoleContext, vehicle_of

Change = tuple[int, int, str, str | None, str | None]
MAX_ITEMS = 500


def describe(ctx: ConsoleContext, changes: list[Change]) -> dict[str, Any]:
    store = ctx.store
    alerts: dict[tuple[str, str], dict[str, Any]] = {}
    recolour: set[str] = set()
    moved: set[str] = set()
    audit: list[dict[str, Any]] = []
    for _, _, kind, gw, ref in changes:
        if gw is None and kind != "audit":
            continue
        if kind in ("alert", "handled") and gw and ref and len(alerts) < MAX_ITEMS:
            row = store.alert(gw, ref)
            if row is not None:
                alerts[(gw, ref)] = alert_summary(row)
                recolour.add(gw)
        elif kind == "status" and gw:
            recolour.add(gw)
        elif kind == "track" and gw:
            moved.add(gw)
        elif kind == "audit" and ref and ref.isdigit() and len(audit) < MAX_ITEMS:
            audit += [audit_summary(e) for e in store.audit_entries(
                first_seq=int(ref), last_seq=int(ref))]
    positions = []
    for gw in sorted(moved - recolour)[:5000]:
        row = store.gateway(gw)
        if row is not None and row.last_lat_e7 is not None and row.last_lon_e7 is not None:
            positions.append({"gw": gw, "lat": row.last_lat_e7 / 1e7,
                              "lon": row.last_lon_e7 / 1e7, "fix_ms": row.last_fix_ms})
    return {"alerts": list(alerts.values()),
            "vehicles": [vehicle_of(ctx, gw) for gw in sorted(recolour)[:MAX_ITEMS]],
            "positions": positions, "audit": audit}
