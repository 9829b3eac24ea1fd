"""One trip: the plan, the vehicle's verified track, a timeline of what happened, a summary;
and the lifecycle steps a supervisor records (released, inspected, terminated).

The summary is measured in the plan's own local metric projection (the transverse Mercator the
gateway evaluated the corridor in), so "distance outside the corridor" here is the distance the
rules saw, not a degree-based approximation.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from customs.audit import TRIP_STEPS, AuditRefused
from customs.console.api_alerts import alert_summary, audit_summary
from customs.console.auth import Officer, ctx_of
from customs.console.context import ConsoleContext, vehicle_of
from customs.console.plans import PlanView, gateway_of_source
from geofences import TransitPlan
from geofences.projection import great_circle_m
from sealtrail import boundedjson

MAX_TRACK = 5000  # points sent to the browser (thinned evenly beyond)
EVENT_KINDS = ("status", "seal")
QUIET = frozenset({"heartbeat", "planLoaded", "fencesLoaded"})


def find_trip(ctx: ConsoleContext, plan_id: str) -> tuple[PlanView | None, str | None]:
    envelope = ctx.store.plan_envelope(plan_id)
    source = next((s for p, _, s, _ in ctx.store.plans_with_source() if p == plan_id), "")
    view = ctx.plans.view(plan_id, envelope) if envelope is not None else None
    gw = gateway_of_source(source)
    if gw is None:
        gws = ctx.store.plan_gateways().get(plan_id, [])
        gw = gws[0] if gws else None
    return view, gw


def trip_window(ctx: ConsoleContext, view: PlanView | None, gw: str) -> tuple[int, int]:
    steps = ctx.store.trip_steps([view.plan_id]).get(view.plan_id, {}) if view else {}
    start = view.plan.valid_from_ms if view and view.plan else -(2**62)
    end = steps["trip.terminated"].t_ms if "trip.terminated" in steps else 2**62
    return start, end


def summary(track: list[tuple[str, int, int, int]], plan: TransitPlan | None,
            closed_ms: int | None) -> dict[str, Any]:
    if not track:
        return {"fixes": 0}
    t = np.array([p[1] for p in track], dtype=np.int64)
    la = np.array([p[2] for p in track], dtype=np.int64)
    lo = np.array([p[3] for p in track], dtype=np.int64)
    if plan is not None:
        x, y, k = plan.projection.forward_many(la / 1e7, lo / 1e7)
        steps = np.hypot(np.diff(x), np.diff(y)) / ((k[1:] + k[:-1]) / 2)
        distance = float(steps.sum())
    else:
        distance = sum(great_circle_m(la[i] / 1e7, lo[i] / 1e7, la[i + 1] / 1e7,
                                      lo[i + 1] / 1e7) for i in range(len(track) - 1))
    out: dict[str, Any] = {
        "fixes": len(track), "departure_ms": int(t[0]), "last_fix_ms": int(t[-1]),
        "arrival_ms": closed_ms, "duration_ms": int((closed_ms or t[-1]) - t[0]),
        "distance_m": round(distance)}
    if plan is not None:
        d = plan.corridor.distances_m(la, lo)
        width = plan.corridor.width_m
        outside = d > width
        dt = np.diff(t)
        out["outside_ms"] = int(dt[outside[:-1] & outside[1:]].sum()) if len(t) > 1 else 0
        out["outside_fixes"] = int(outside.sum())
        out["max_outside_m"] = round(float((d - width).max())) if outside.any() else 0
        out["max_from_route_m"] = round(float(d.max()))
        out["corridor_width_m"] = width
    return out


def _event(seq: int, t_ms: int, kind: str, src: str, signed: bytes) -> dict[str, Any] | None:
    body = boundedjson.loads(signed, max_bytes=len(signed) + 1).get("body", {})
    if kind == "status":
        event = body.get("event")
        if not isinstance(event, str) or event in QUIET:
            return None
        return {"seq": seq, "t_ms": t_ms, "kind": "status", "what": event[:64],
                "src": src[:64]}
    state = body.get("state")
    seal = str(body.get("seal_id"))[:64]
    words = {"C": "closed", "O": "opened", "T": "tampered"}.get(state, str(state)[:16])
    return {"seq": seq, "t_ms": t_ms, "kind": "seal", "what": f"seal {seal} {words}",
            "src": src[:64], "state": state}


def get_trip(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    plan_id = request.query_params.get("plan", "")
    view, gw = find_trip(ctx, plan_id)
    if view is None and gw is None:
        return JSONResponse({"error": "no such trip"}, status_code=404)
    steps = ctx.store.trip_steps([plan_id]).get(plan_id, {})
    out: dict[str, Any] = {"plan": view.summary() if view else {"plan_id": plan_id,
                                                                "verified": False},
                           "geometry": view.geometry() if view else None, "gw": gw,
                           "steps": [audit_summary(s) for s in sorted(steps.values(),
                                                                      key=lambda s: s.seq)],
                           "audit": [audit_summary(e) for e in
                                     ctx.store.audit_entries(plan_id=plan_id)]}
    if gw is None:
        return JSONResponse(out)
    start, end = trip_window(ctx, view, gw)
    track = ctx.store.track(gw, start, end)
    alerts = ctx.store.alerts(gw=gw, since_ms=start if start > -(2**62) else None)
    alerts = [a for a in alerts if a.t_ms <= end and (a.plan_id in (plan_id, None))]
    closed = next((a.t_ms for a in alerts if a.type == "tripClosed"), None)
    if closed is None and "trip.terminated" in steps:
        closed = steps["trip.terminated"].t_ms
    events = []
    seal_state: dict[str, Any] = {}  # a seal reports every few seconds: keep its changes
    for seq, t_ms, kind, src, signed in ctx.store.record_kinds(
            gw, EVENT_KINDS, from_ms=max(start, -(2**62)), to_ms=min(end, 2**62)):
        e = _event(seq, t_ms, kind, src, signed)
        if e is None:
            continue
        if kind == "seal":
            seal = e["what"].rsplit(" ", 1)[0]
            if seal_state.get(seal) == e["state"]:
                continue
            seal_state[seal] = e["state"]
        events.append(e)
    stride = max(1, len(track) // MAX_TRACK)
    thin = track[::stride] if stride > 1 else track
    if stride > 1 and thin[-1] is not track[-1]:
        thin.append(track[-1])
    out.update({"track": [[t, la / 1e7, lo / 1e7] for _, t, la, lo in thin],
                "alerts": [alert_summary(a) for a in alerts],
                "events": events[-2000:],
                "summary": summary(track, view.plan if view else None, closed),
                "vehicle": vehicle_of(ctx, gw), "now_ms": int(time.time() * 1000)})
    return JSONResponse(out)


def trip_step(request: Request, officer: Officer, doc: dict[str, Any]) -> Response:
    ctx = ctx_of(request)
    plan_id, step = doc.get("plan_id"), doc.get("step")
    action = f"trip.{step}"
    if not isinstance(plan_id, str) or action not in TRIP_STEPS:
        return JSONResponse({"error": f"step must be one of "
                                      f"{', '.join(s[5:] for s in TRIP_STEPS)}"},
                            status_code=400)
    if ctx.store.plan_envelope(plan_id) is None:
        return JSONResponse({"error": "no such plan"}, status_code=404)
    try:
        entry = ctx.audit.act(officer.name, officer.role, action, plan_id=plan_id,
                              place=doc.get("place"), note=doc.get("note"))
    except AuditRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    ctx.feed.wake()
    return JSONResponse({"audit": audit_summary(entry)})
