"""Downloads and attestations: evidence files of an alert or a trip, W3C credentials, and the
audit chain itself.

Evidence files are built from the customs store in the format `sealtrail evidence export`
writes (``sealtrail-evidence/1``): the gateway's signed records with an RFC 9162 inclusion
proof wherever the store holds every record of the anchored batch (the tree is rebuilt from
them), and the gateway's anchor claim as the anchor reference; `sealtrail verify` then checks
each one on the ledger. A record whose batch the store holds only in part travels without a
proof, and the file's ``selection.unproven`` says which and why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from customs.audit import AuditRefused, verify_audit
from customs.console.api_alerts import audit_summary
from customs.console.api_trips import find_trip, trip_window
from customs.console.auth import Officer, ctx_of
from customs.console.context import ConsoleContext
from customs.credentials.errors import CredentialError
from customs.credentials.issue import issue
from customs.facts_store import alert_facts, trip_facts
from ledger_client.evidence import BatchInfo, EvidenceError, build
from ledger_client.merkle import ProofError
from ledger_client.proof import AnchorRef
from ledger_client.records import RecordError

MAX_RECORDS = 50_000


def evidence_of(ctx: ConsoleContext, gw: str, seqs: list[int],
                selection: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    batches: list[BatchInfo] = []
    unproven: list[str] = []
    for row in store.anchor_claims(gw):
        _, batch_seq, first, size, root, chain_id, contract, tx, block, bhash, log = row
        last = first + size - 1
        if not any(first <= s <= last for s in seqs):
            continue
        if store.held_seqs(gw, first, last) != size:
            unproven.append(f"batch {batch_seq} (seq {first}..{last}): the store holds only "
                            "part of it, so no inclusion proof can be rebuilt")
            continue
        batches.append(BatchInfo(batch_seq, first, size, bytes.fromhex(root),
                                 AnchorRef(chain_id, contract, batch_seq, tx, block, bhash, log),
                                 anchored=True))
    selected = [(s, store.signed_at(gw, s)) for s in seqs]
    held = [(s, b) for s, b in selected if b is not None]

    def leaves(first: int, last: int) -> list[bytes]:
        return [r.signed for r in store.records(gw, first_seq=first, last_seq=last)]

    try:
        evidence = build(gw, held, batches, leaves, selection=selection)
    except EvidenceError as exc:
        unproven.append(f"the stored records contradict the gateway's claim: {exc}")
        evidence = build(gw, held, [], leaves, selection=selection)
    doc: dict[str, Any] = json.loads(evidence.to_json())
    missing = [s for s, b in selected if b is None]
    if missing:
        unproven.append(f"{len(missing)} record(s) the selection names are not in the store: "
                        f"seq {', '.join(map(str, missing[:20]))}")
    pending = [r.seq for r in evidence.records if r.proof is None]
    if pending and not unproven:
        unproven.append(f"{len(pending)} record(s) not covered by an anchor receipt yet")
    doc["selection"] = {**selection, "exported_by": "customs store", "unproven": unproven}
    return doc


def _download(doc: dict[str, Any], name: str) -> Response:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]
    return Response(json.dumps(doc, indent=1) + "\n", media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{safe}.json"'})


def alert_evidence(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    gw, alert_id = request.query_params.get("gw", ""), request.query_params.get("id", "")
    row = ctx.store.alert(gw, alert_id)
    if row is None:
        return JSONResponse({"error": "no such alert"}, status_code=404)
    cited = row.body.get("evidence") if isinstance(row.body.get("evidence"), list) else []
    seqs = sorted({s for s in cited if type(s) is int and 0 < s < row.seq} | {row.seq})
    doc = evidence_of(ctx, gw, seqs[-64:], {"alert_id": alert_id})
    return _download(doc, f"evidence-{gw}-{alert_id}")


def trip_evidence(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    plan_id = request.query_params.get("plan", "")
    view, gw = find_trip(ctx, plan_id)
    if gw is None:
        return JSONResponse({"error": "no gateway reported for this trip"}, status_code=404)
    start, end = trip_window(ctx, view, gw)
    seqs = [r.seq for r in ctx.store.records(gw) if start <= r.t_ms <= end][:MAX_RECORDS]
    doc = evidence_of(ctx, gw, seqs, {"plan": plan_id})
    return _download(doc, f"evidence-{plan_id}")


def issue_credential(request: Request, officer: Officer, doc: dict[str, Any]) -> Response:
    """A signed trip or alert credential, recorded in the audit chain (who issued what)."""
    ctx = ctx_of(request)
    plan_id = doc.get("plan_id")
    try:
        if doc.get("alert_id"):
            row = ctx.store.alert(str(doc.get("gw")), str(doc["alert_id"]))
            if row is None:
                return JSONResponse({"error": "no such alert"}, status_code=404)
            facts: Any = alert_facts(ctx.store, row, ctx.audit_id)
        elif isinstance(plan_id, str):
            facts = trip_facts(ctx.store, ctx.plans, plan_id, ctx.audit_id)
            row = None
        else:
            return JSONResponse({"error": "give plan_id, or gw and alert_id"}, status_code=400)
        credential = issue(facts, ctx.service_key, ctx.issuer)
        ctx.audit.act(officer.name, officer.role, "credential.issue", alert=row,
                      plan_id=facts.plan_id, credential_id=credential["id"])
    except (CredentialError, ValueError) as exc:
        return JSONResponse({"error": f"cannot attest: {exc}"}, status_code=409)
    except AuditRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    ctx.feed.wake()
    return _download(credential, f"credential-{facts.plan_id}")


def audit_log(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    entries = ctx.store.audit_entries(newest_first=True, limit=500)
    try:
        report = verify_audit(ctx.store, ctx.service_key.public_key(), ctx.audit_id)
        check = {"ok": True, "records": report.log.records,
                 "batched_through": report.log.anchored_through, "batches": report.batches,
                 "anchored_batches": report.anchored}
    except (RecordError, ProofError) as exc:
        check = {"ok": False, "error": str(exc)}
    batches = [{"batch_seq": b.batch_seq, "first_seq": b.first_seq, "last_seq": b.last_seq,
                "status": b.status, "block": b.block_number,
                "tx": "0x" + b.tx_hash.hex() if b.tx_hash else None}
               for b in ctx.store.audit_batches()]
    out = [dict(audit_summary(e), record_hash=hashlib.sha256(e.signed).hexdigest())
           for e in entries]
    return JSONResponse({"audit_id": ctx.audit_id, "verification": check, "batches": batches,
                         "entries": out})
