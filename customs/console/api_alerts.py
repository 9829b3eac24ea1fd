"""The alert queue and one alert in full: what it means, where, how it was verified, the
readings it rests on, and what officers did about it; and the actions on it."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from customs.audit import AuditRefused, entry_body
from customs.console.auth import Officer, ctx_of
from customs.console.context import overview
from customs.console.meaning import asset_words, describe
from customs.store import AlertRow
from customs.store.console_queries import AuditRow
from sealtrail import boundedjson

MAX_LIST = 500
MAX_EVIDENCE = 32


def alert_summary(a: AlertRow) -> dict[str, Any]:
    body = a.body
    words = describe(a.type, body)
    return {"gw": a.gw, "alert_id": a.alert_id, "seq": a.seq, "t_ms": a.t_ms, "type": a.type,
            "severity": a.severity, "plan_id": a.plan_id,
            "lat": a.lat_e7 / 1e7 if a.lat_e7 is not None else None,
            "lon": a.lon_e7 / 1e7 if a.lon_e7 is not None else None, "state": a.state,
            "assignee": a.assignee, "resolution": a.resolution, "title": words["title"],
            "sentence": words["sentence"], "asset": asset_words(body.get("asset")),
            "received_ms": a.received_ms}


def audit_summary(row: AuditRow) -> dict[str, Any]:
    body = entry_body(row)
    return {"seq": row.seq, "t_ms": row.t_ms, "officer": row.officer, "action": row.action,
            "gw": row.gw, "alert_id": row.alert_id, "plan_id": row.plan_id,
            "reason": body.get("reason"), "note": body.get("note"),
            "assignee": body.get("assignee"), "place": body.get("place"),
            "corrects": body.get("corrects"), "credential_id": body.get("credential_id")}


def get_overview(request: Request, officer: Officer) -> Response:
    return JSONResponse(overview(ctx_of(request)))


def _many(request: Request, name: str) -> list[str] | None:
    values = [v for v in request.query_params.getlist(name) if v][:50]
    return values or None


def list_alerts(request: Request, officer: Officer) -> Response:
    q = request.query_params
    try:
        limit = min(int(q.get("limit", "200")), MAX_LIST)
    except ValueError:
        return JSONResponse({"error": "limit must be a number"}, status_code=400)
    rows = ctx_of(request).store.alerts(
        gw=q.get("gw") or None, plan_id=q.get("plan") or None, types=_many(request, "type"),
        severities=_many(request, "severity"), states=_many(request, "state"), queue=True,
        limit=limit)
    return JSONResponse({"alerts": [alert_summary(a) for a in rows]})


def _reading(gw: str, seq: int, signed: bytes | None) -> dict[str, Any]:
    if signed is None:
        return {"seq": seq, "held": False}
    record = boundedjson.loads(signed, max_bytes=len(signed) + 1)
    body = record.get("body", {})
    shown = {k: v for k, v in body.items() if isinstance(v, str | int) and k != "mac"}
    return {"seq": seq, "held": True, "kind": record.get("kind"), "src": record.get("src"),
            "t_ms": record.get("t_ms"), "fields": [[k, str(v)[:200]] for k, v in
                                                    list(shown.items())[:20]]}


def get_alert(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    gw, alert_id = request.query_params.get("gw", ""), request.query_params.get("id", "")
    row = ctx.store.alert(gw, alert_id)
    if row is None:
        return JSONResponse({"error": "no such alert"}, status_code=404)
    body = row.body
    evidence = body.get("evidence") if isinstance(body.get("evidence"), list) else []
    seqs = sorted({s for s in evidence if type(s) is int and 0 < s < row.seq})[:MAX_EVIDENCE]
    position = body.get("position") if isinstance(body.get("position"), dict) else {}
    return JSONResponse({
        "alert": alert_summary(row), "meaning": describe(row.type, body),
        "position": {k: v for k, v in position.items() if isinstance(v, int)},
        "verification": {"signature": "verified on receipt", "key": row.trust,
                         "anchor": ctx.anchors.check(gw, row.seq),
                         "duplicates": row.duplicates, "note": row.note},
        "evidence": [_reading(gw, s, ctx.store.signed_at(gw, s)) for s in seqs],
        "audit": [audit_summary(e) for e in ctx.store.audit_entries(gw=gw, alert_id=alert_id)],
        "record": row.signed.decode("utf-8", "replace")})


async def _json(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if len(raw) > 16 * 1024:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def act_on_alert(request: Request, officer: Officer, doc: dict[str, Any]) -> Response:
    ctx = ctx_of(request)
    action = doc.get("action")
    gw, alert_id = doc.get("gw"), doc.get("alert_id")
    if not isinstance(action, str) or not isinstance(gw, str) or not isinstance(alert_id, str):
        return JSONResponse({"error": "action, gw and alert_id are required"}, status_code=400)
    row = ctx.store.alert(gw, alert_id)
    if row is None:
        return JSONResponse({"error": "no such alert"}, status_code=404)
    try:
        entry = ctx.audit.act(officer.name, officer.role, f"alert.{action}", alert=row,
                              reason=doc.get("reason"), note=doc.get("note"),
                              assignee=doc.get("assignee"), corrects=doc.get("corrects"))
    except AuditRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    ctx.feed.wake()
    updated = ctx.store.alert(gw, alert_id)
    assert updated is not None
    return JSONResponse({"alert": alert_summary(updated), "audit": audit_summary(entry)})
