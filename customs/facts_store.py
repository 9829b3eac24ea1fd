"""The facts a credential states, gathered from the customs store (``customs.credentials``
signs them; the console's buttons and `sealtrail customs attest --plan` call these).

Every fact rests on a signed record: the gateway's (its alerts, fixes and seal readings) or
the customs audit chain's (an officer's release of the trip, a resolution), each with its
anchor when the batch holding it is anchored (the gateway's receipt, or the audit chain's own
batch). Only verified plans are attested.
"""

from __future__ import annotations

import hashlib
from typing import Any

from customs.console.plans import PlanCache, gateway_of_source
from customs.credentials.facts import (
    AlertFact,
    AlertFacts,
    AnchorRef,
    ContainerFact,
    RecordRef,
    Resolution,
    SealFact,
    TripFacts,
)
from customs.store import AlertRow, SqlStore
from customs.store.console_queries import AuditRow
from sealtrail import boundedjson
from sealtrail.errors import UsageError

SEAL_STATES = {"C": "closed", "O": "opened", "T": "tampered"}


def _anchor(store: SqlStore, gw: str, seq: int) -> AnchorRef | None:
    claim = store.anchor_of(gw, seq)
    if claim is None:
        return None
    try:
        return AnchorRef(claim.chain_id, claim.contract, claim.batch_seq, claim.block_number,
                         claim.tx_hash)
    except ValueError:
        return None


def _audit_anchor(store: SqlStore, seq: int) -> AnchorRef | None:
    for b in store.audit_batches():
        if b.first_seq <= seq <= b.last_seq and b.status == "anchored" and b.tx_hash:
            return AnchorRef(int(b.chain_id or 0), str(b.contract), b.batch_seq,
                             int(b.block_number or 0), "0x" + b.tx_hash.hex())
    return None


def gateway_ref(store: SqlStore, gw: str, seq: int, signed: bytes) -> RecordRef:
    return RecordRef(gw, seq, hashlib.sha256(signed).hexdigest(), _anchor(store, gw, seq))


def audit_ref(store: SqlStore, audit_id: str, row: AuditRow) -> RecordRef:
    return RecordRef(audit_id, row.seq, hashlib.sha256(row.signed).hexdigest(),
                     _audit_anchor(store, row.seq))


def _resolution(store: SqlStore, alert: AlertRow) -> Resolution | None:
    if alert.state != "resolved":
        return None
    entries = [e for e in store.audit_entries(gw=alert.gw, alert_id=alert.alert_id)
               if e.action == "alert.resolve"]
    if not entries:
        return None
    last = entries[-1]
    return Resolution("resolved", alert.resolution or "resolved", last.officer, last.t_ms)


def alert_fact(store: SqlStore, alert: AlertRow) -> AlertFact:
    return AlertFact(alert.alert_id, alert.type, alert.severity, alert.t_ms,
                     gateway_ref(store, alert.gw, alert.seq, alert.signed),
                     alert.lat_e7 if alert.lon_e7 is not None else None,
                     alert.lon_e7 if alert.lat_e7 is not None else None,
                     _resolution(store, alert))


def alert_facts(store: SqlStore, alert: AlertRow, audit_id: str) -> AlertFacts:
    if alert.plan_id is None:
        raise UsageError("this alert belongs to no plan; only a plan's alerts are attested")
    return AlertFacts(alert.plan_id, alert_fact(store, alert))


def trip_facts(store: SqlStore, plans: PlanCache, plan_id: str, audit_id: str) -> TripFacts:
    envelope = store.plan_envelope(plan_id)
    if envelope is None:
        raise UsageError(f"plan {plan_id!r}: not in the customs store")
    view = plans.view(plan_id, envelope)
    if view.plan is None:
        raise UsageError(f"plan {plan_id!r} does not verify: {view.error}")
    plan = view.plan
    source = next((s for p, _, s, _ in store.plans_with_source() if p == plan_id), "")
    gw = gateway_of_source(source) or next(iter(store.plan_gateways().get(plan_id, [])), None)
    steps = store.trip_steps([plan_id]).get(plan_id, {})
    end = steps["trip.terminated"].t_ms if "trip.terminated" in steps else 2**62
    alerts = [a for a in store.alerts(plan_id=plan_id) if a.t_ms <= end]
    released = steps.get("trip.released")
    departure: tuple[int, RecordRef] | None = None
    if released is not None:
        departure = (released.t_ms, audit_ref(store, audit_id, released))
    elif gw is not None:
        first = next(iter(store.record_kinds(gw, ("gps",), from_ms=plan.valid_from_ms,
                                             to_ms=end, limit=1)), None)
        if first is not None:
            departure = (first[1], gateway_ref(store, gw, first[0], first[4]))
    if departure is None:
        raise UsageError(f"plan {plan_id!r}: the trip has not started (no release recorded, "
                         "no fix received)")
    arrival: tuple[int, RecordRef] | None = None
    closed = next((a for a in alerts if a.type == "tripClosed"), None)
    if closed is not None:
        arrival = (closed.t_ms, gateway_ref(store, closed.gw, closed.seq, closed.signed))
    elif "trip.terminated" in steps:
        arrival = (steps["trip.terminated"].t_ms,
                   audit_ref(store, audit_id, steps["trip.terminated"]))
    seals: dict[str, tuple[str, RecordRef]] = {}
    if gw is not None:
        for seq, _, _, _, signed in store.record_kinds(gw, ("seal",),
                                                       from_ms=plan.valid_from_ms, to_ms=end):
            body: Any = boundedjson.loads(signed, max_bytes=len(signed) + 1).get("body", {})
            state = SEAL_STATES.get(body.get("state")) if isinstance(body, dict) else None
            if state is not None and body.get("seal_id") in plan.seal_ids:
                seals[body["seal_id"]] = (state, gateway_ref(store, gw, seq, signed))
    containers = tuple(
        ContainerFact(c.container_id, tuple(
            SealFact(s, *seals[s]) if s in seals else SealFact(s) for s in c.seal_ids))
        for c in plan.containers)
    if arrival is not None and arrival[0] < departure[0]:
        arrival = None
    return TripFacts(plan.plan_id, plan.declaration_ref, plan.vehicle, containers,
                     plan.departure_office, plan.destination_office, departure[0],
                     departure[1], arrival[0] if arrival else None,
                     arrival[1] if arrival else None,
                     tuple(alert_fact(store, a) for a in alerts))


def facts_for_plan(db: str | None, plan_id: str, key: Any, customs_keys: Any,
                   audit_id: str) -> TripFacts:
    """`sealtrail customs attest --plan ID --db STORE`: the trip's facts from the store."""
    from customs.credentials.errors import InputError
    from customs.credentials.keys import public_bytes
    from customs.store import StoreError, open_store
    from geofences import GeofenceError, load_trusted_keys

    if not db:
        raise InputError("--plan needs --db (the customs store)")
    trusted = [public_bytes(key)]
    if customs_keys is not None:
        try:
            trusted += load_trusted_keys(customs_keys)
        except GeofenceError as exc:
            raise InputError(str(exc)) from None
    try:
        store = open_store(db, create=False)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    try:
        return trip_facts(store, PlanCache(trusted), plan_id, audit_id)
    except UsageError as exc:
        raise InputError(str(exc)) from None
    finally:
        store.close()
