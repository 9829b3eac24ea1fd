"""The customs office's audit chain: every officer action and trip step, as signed records.

An entry is a record in the gateways' format (``ledger_client.records``) with ``kind:
"audit"``, ``gw`` = the office's audit-chain id, ``src`` = the officer, signed with the customs
service key, hash-chained by ``prev``; so everything that checks a gateway's journal checks this
chain too, and its Merkle batches are anchored on the ledger like a journal's
(``customs.audit_anchor``, the chain registered on the contract under its id with the service
key's public half). Nothing is edited in place: the alert's state columns in the store are a
view of the chain, written in the same transaction as the entry; a correction (a reopened
alert, a note that amends another) is a new entry naming the one it corrects.

The body: ``action``, ``officer``, ``role``, and per action ``alert`` (gw, alert_id, seq and
the SHA-256 of the gateway's signed record: the entry pins the exact alert it is about),
``plan_id``, ``reason``, ``note``, ``assignee``, ``place``, ``corrects``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from customs.store import AlertRow, SqlStore, now_ms
from customs.store.console_queries import AlertChange, AuditRow, ConflictError
from customs.users import ACTING, SUPERVISING
from ledger_client.merkle import ProofError
from ledger_client.proof import BatchRoot, LogReport, verify_log
from ledger_client.records import RecordError, RecordSigner, parse
from sealtrail.errors import SealTrailError

RESOLUTIONS = {"false_alarm": "false alarm", "inspected": "inspected",
               "escalated": "escalated"}
TRIP_STEPS = {"trip.released": "seals checked and trip released at departure",
              "trip.inspected": "inspection at a checkpoint",
              "trip.terminated": "trip terminated at destination"}
MAX_TEXT = 2000


@dataclass(frozen=True)
class Action:
    roles: tuple[str, ...]
    states: tuple[str, ...] = ()  # alert actions: the states they apply to
    state: str | None = None  # the state they lead to
    words: str = ""


ACTIONS: dict[str, Action] = {
    "alert.acknowledge": Action(ACTING, ("open",), "acknowledged", "acknowledged"),
    "alert.resolve": Action(ACTING, ("open", "acknowledged"), "resolved", "resolved"),
    "alert.note": Action(ACTING, ("open", "acknowledged", "resolved"), None, "added a note"),
    "alert.assign": Action(SUPERVISING, ("open", "acknowledged"), None, "assigned"),
    "alert.reopen": Action(SUPERVISING, ("resolved",), "open", "reopened (correction)"),
    "credential.issue": Action(ACTING, words="issued a credential"),
    **{step: Action(SUPERVISING, words=words) for step, words in TRIP_STEPS.items()},
}


class AuditRefused(SealTrailError):
    """The action is not allowed (role, state, missing reason); the message says why."""

    exit_code = 1

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _text(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise AuditRefused(f"{name} is required", 400)
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
        raise AuditRefused(f"{name}: text of at most {MAX_TEXT} characters", 400)
    return value


class AuditChain:
    """Appends entries for one office; thread-safe (the store serialises appenders)."""

    def __init__(self, store: SqlStore, audit_id: str, key: Ed25519PrivateKey,
                 clock: Callable[[], int] = now_ms):
        self.store = store
        self.audit_id = audit_id
        self.signer = RecordSigner(audit_id, key)
        self.clock = clock
        self.appended = 0  # entries this process appended (metrics, tests)

    def act(self, officer: str, role: str, action: str, *, alert: AlertRow | None = None,
            plan_id: str | None = None, **fields: Any) -> AuditRow:
        """Check the role and fields, then sign and store the entry (with the alert's new
        state, in one transaction). AuditRefused says what is wrong."""
        spec = ACTIONS.get(action)
        if spec is None:
            raise AuditRefused(f"unknown action {action!r}", 400)
        if role not in spec.roles:
            raise AuditRefused(f"a {role} may not {action.split('.')[1]}: that needs "
                               f"{' or '.join(spec.roles)}", 403)
        body: dict[str, Any] = {"action": action, "officer": officer, "role": role}
        change = None
        if action.startswith("alert."):
            if alert is None:
                raise AuditRefused("no such alert", 404)
            body["alert"] = {"gw": alert.gw, "alert_id": alert.alert_id, "seq": alert.seq,
                             "record_hash": hashlib.sha256(alert.signed).hexdigest()}
            change = self._change(action, spec, alert, body, fields)
            plan_id = plan_id or alert.plan_id
        elif action.startswith("trip.") and not plan_id:
            raise AuditRefused("a trip step needs its plan", 400)
        if action == "credential.issue":
            body["credential_id"] = _text(fields.get("credential_id"), "credential_id",
                                          required=True)
            if alert is not None:
                body["alert"] = {"gw": alert.gw, "alert_id": alert.alert_id, "seq": alert.seq,
                                 "record_hash": hashlib.sha256(alert.signed).hexdigest()}
        if plan_id:
            body["plan_id"] = plan_id
        for name in ("note", "place"):
            value = _text(fields.get(name), name)
            if value is not None:
                body[name] = value
        corrects = fields.get("corrects")
        if corrects is not None:
            if type(corrects) is not int or corrects < 1:
                raise AuditRefused("corrects: the seq of an earlier audit entry", 400)
            body["corrects"] = corrects
        t_ms = self.clock()

        def sign(seq: int, prev: str) -> bytes:
            return self.signer.sign(seq, t_ms, "audit", officer, body, prev)

        try:
            row = self.store.append_audit(
                sign, officer=officer, action=action, t_ms=t_ms,
                gw=alert.gw if alert is not None else None,
                alert_id=alert.alert_id if alert is not None else None, plan_id=plan_id,
                change=change)
        except ConflictError as exc:
            raise AuditRefused(str(exc), 409) from None
        self.appended += 1
        return row

    def _change(self, action: str, spec: Action, alert: AlertRow, body: dict[str, Any],
                fields: dict[str, Any]) -> AlertChange:
        assignee = None
        resolution = None
        if action == "alert.resolve":
            reason = fields.get("reason")
            if reason not in RESOLUTIONS:
                raise AuditRefused(f"reason must be one of {', '.join(RESOLUTIONS)}", 400)
            body["reason"] = resolution = reason
        elif action == "alert.assign":
            name = _text(fields.get("assignee"), "assignee", required=True)
            officer = self.store.officer(str(name))
            if officer is None or officer.disabled_ms is not None or officer.role == "auditor":
                raise AuditRefused(f"{name!r} is not an officer who can act on alerts", 400)
            body["assignee"] = assignee = officer.name
        elif action == "alert.note":
            _text(fields.get("note"), "note", required=True)
        elif action == "alert.reopen":
            _text(fields.get("note"), "note (why it is reopened)", required=True)
            resolution = ""  # cleared
        return AlertChange(alert.gw, alert.alert_id, spec.states, spec.state, assignee,
                           resolution)


def entry_body(row: AuditRow) -> dict[str, Any]:
    return dict(parse(row.signed)["body"])


@dataclass(frozen=True)
class AuditReport:
    log: LogReport
    batches: int
    anchored: int


def verify_audit(store: SqlStore, public_key: Ed25519PublicKey, audit_id: str) -> AuditReport:
    """Offline: every entry's signature, schema and link, the store's index columns against
    the signed bodies, and every batch root recomputed from the entries. Raises RecordError or
    ProofError at the first fault."""
    batches = store.audit_batches()
    roots = [BatchRoot(b.first_seq, b.tree_size, b.root) for b in batches]

    def entries() -> Any:
        for row in store.iter_audit():
            record = parse(row.signed)
            body = record["body"]
            if record["kind"] != "audit":
                raise RecordError("not an audit entry", seq=row.seq, field="kind")
            alert = body.get("alert") if isinstance(body.get("alert"), dict) else {}
            stored = (row.seq, row.t_ms, row.officer, row.action, row.alert_id, row.plan_id)
            signed = (record["seq"], record["t_ms"], record["src"], body.get("action"),
                      alert.get("alert_id") if row.action != "credential.issue" or alert
                      else None, body.get("plan_id"))
            if stored != signed:
                raise RecordError("the store's columns differ from the signed entry (edited "
                                  "in place?)", seq=row.seq)
            yield row.signed

    log = verify_log(entries(), public_key, roots, gateway_id=audit_id)
    return AuditReport(log, len(batches), sum(1 for b in batches if b.status == "anchored"))


__all__ = ["ACTIONS", "RESOLUTIONS", "TRIP_STEPS", "AuditChain", "AuditRefused", "AuditReport",
           "ProofError", "RecordError", "entry_body", "verify_audit"]
