"""What the customs receiver does with one MQTT message: verify, deduplicate, store or quarantine.

Kept apart from the MQTT loop (``watch``) so the trust decisions are tested without a broker
and so ``customs recheck`` re-runs exactly the same checks on quarantined messages.

A message becomes an alert only if every check passes, in this order (the first failure is the
quarantine reason, so each kind of bad message gets its own reason):

``malformed``        not a canonical signed SealTrail record (garbage, truncated, re-encoded)
``wrong_topic``      the record's ``gw`` is not the gateway in the topic: a gateway may publish
                     only its own records, and the broker's ACL is not the only line of defence
``wrong_kind``       a reading on the alerts topic, or an alert on the readings topic
``unknown_gateway``  no trusted key for that gateway (trust file / ledger registry)
``revoked_gateway``  the ledger says the gateway was revoked
``trust_unavailable`` the ledger node cannot be reached and the key was never fetched: re-checked
                     later, never accepted unverified
``tampered``         the signature fails and the record carries the signature of a verified
                     record we hold (same seq or alert_id) with other content: an altered copy
``bad_signature``    the signature fails with the trusted key, and there is nothing to compare
                     with: altered after signing, or signed with another key (a re-keyed gateway
                     that was not re-registered); the evidence export tells the two apart
``bad_alert``        signed correctly, but the body is not a usable alert (no alert_id, ...)
``internal_error``   the receiver hit a bug on this message (logged with its traceback)

Duplicates are decided after verification: a forged copy of a known alert must be quarantined as
tampered, not dropped as a duplicate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

from customs.store import AlertRow, RecordRow, Store, now_ms
from customs.trust import TRUST_UNAVAILABLE, UNKNOWN_GATEWAY, Trust, Untrusted
from ledger_client.records import RecordError, check_schema, parse, verify_signature
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

TOPIC_ROOT = "sealtrail/v1"
SUBSCRIPTIONS = tuple(f"{TOPIC_ROOT}/+/{leaf}" for leaf in ("alerts", "readings", "status",
                                                            "plans"))
TRANSIENT = frozenset({TRUST_UNAVAILABLE, UNKNOWN_GATEWAY})
"""Reasons that may go away on their own (a node back up, a gateway registered late)."""
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    gw: str | None = None
    seq: int | None = None
    alert_id: str | None = None
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to (part of) a message; ``kind`` says which fields are set.

    kind: "alert" (new verified alert), "duplicate", "quarantined", "readings" (``count`` new
    verified readings), "status" (gateway ``gw`` now ``state``, was ``previous``), "plan",
    "ignored".
    """

    kind: str
    topic: str
    alert: AlertRow | None = None
    rejection: Rejection | None = None
    count: int = 0
    gw: str | None = None
    state: str | None = None
    previous: str | None = None


def split_topic(topic: str) -> tuple[str, str] | None:
    """(gateway id, leaf) of ``sealtrail/v1/<gw>/<leaf>``, None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT or not parts[2]:
        return None
    return parts[2], parts[3]


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _position(obj: Any) -> tuple[int | None, int | None]:
    """(lat_e7, lon_e7) of a gps body or an alert's position, (None, None) when absent or not
    a place on Earth (a report must not scale its map to a bogus point)."""
    if not isinstance(obj, dict):
        return None, None
    lat, lon = _int_or_none(obj.get("lat_e7")), _int_or_none(obj.get("lon_e7"))
    if lat is None or lon is None or abs(lat) > 900_000_000 or abs(lon) > 1_800_000_000:
        return None, None
    return lat, lon


class Receiver:
    """Verify and file messages into a Store; ``forward`` queues new alerts for the webhook."""

    def __init__(self, store: Store, trust: Trust, *, forward: bool = False):
        self.store = store
        self.trust = trust
        self.forward = forward
        self.counts: Counter[str] = Counter()
        self._ratelog = RateLimitedLog(log)

    # -- entry point -------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Outcome]:
        """File one message. A database error propagates (the message is then not
        acknowledged and comes again); any other error is a bug met on hostile input, and the
        message is quarantined as ``internal_error`` so it cannot crash the receiver forever."""
        self.counts["messages"] += 1
        try:
            return self._dispatch(topic, payload)
        except sqlite3.Error:
            raise
        except Exception as exc:
            log.exception("internal error on a message on %s; quarantined", topic)
            return [self._quarantine(topic, payload, Rejection(
                "internal_error", f"{type(exc).__name__}: {exc}"))]

    def _dispatch(self, topic: str, payload: bytes) -> list[Outcome]:
        where = split_topic(topic)
        if where is None:
            self.counts["ignored"] += 1
            return [Outcome("ignored", topic)]
        gw, leaf = where
        if leaf == "alerts":
            return [self._alert(topic, gw, payload)]
        if leaf == "readings":
            return self._readings(topic, gw, payload)
        if leaf == "status":
            return [self._status(topic, gw, payload)]
        if leaf == "plans":
            return [self._plan(topic, gw, payload)]
        self.counts["ignored"] += 1
        return [Outcome("ignored", topic)]

    # -- alerts ------------------------------------------------------------------------------

    def check_alert(self, topic: str, gw: str, payload: bytes) -> AlertRow | Rejection:
        """Every check of the module docstring; no side effect on the store."""
        checked = self._check_record(topic, gw, payload, want_alert=True)
        if isinstance(checked, Rejection):
            return checked
        record, trust = checked
        body = record["body"]
        ids = dict(gw=record["gw"], seq=record["seq"])
        alert_id, kind, severity = body.get("alert_id"), body.get("type"), body.get("severity")
        for name, value in (("alert_id", alert_id), ("type", kind), ("severity", severity)):
            if not isinstance(value, str) or not value:
                return Rejection("bad_alert", f"{record['gw']} seq {record['seq']}: alert body "
                                 f"has no usable {name!r}", **ids)
        lat, lon = _position(body.get("position"))
        plan_id = body.get("plan_id") if isinstance(body.get("plan_id"), str) else None
        return AlertRow(alert_id, record["gw"], record["seq"], record["t_ms"], kind, severity,
                        plan_id, lat, lon, "verified", trust, now_ms(), payload)

    def _alert(self, topic: str, gw: str, payload: bytes) -> Outcome:
        checked = self.check_alert(topic, gw, payload)
        if isinstance(checked, Rejection):
            return self._quarantine(topic, payload, checked)
        if self.store.add_alert(checked, forward=self.forward):
            self.counts["alerts"] += 1
            return Outcome("alert", topic, alert=checked)
        self.counts["duplicates"] += 1
        held = self.store.alert(checked.alert_id)
        if held is not None and held.signed != checked.signed:
            log.info("alert %s from %s seq %d repeats alert_id of %s seq %d (re-raised by the "
                     "gateway); kept the first", checked.alert_id, checked.gw, checked.seq,
                     held.gw, held.seq)
        return Outcome("duplicate", topic, alert=checked)

    # -- readings ----------------------------------------------------------------------------

    def _readings(self, topic: str, gw: str, payload: bytes) -> list[Outcome]:
        """JSON Lines of signed records: each line is verified (and quarantined) on its own."""
        outcomes: list[Outcome] = []
        good: list[RecordRow] = []
        malformed: list[str] = []
        for number, line in enumerate(payload.split(b"\n"), start=1):
            line = line.rstrip(b"\r")
            if not line:
                continue
            checked = self.check_reading(topic, gw, line)
            if isinstance(checked, RecordRow):
                good.append(checked)
            elif checked.reason == "malformed":
                malformed.append(f"line {number}: {checked.detail}")
            else:
                outcomes.append(self._quarantine(topic, line, checked))
        if malformed:  # one entry for a garbage message, not one per line of it
            detail = f"{len(malformed)} malformed line(s); {malformed[0]}"
            outcomes.append(self._quarantine(topic, payload, Rejection("malformed", detail)))
        if good:
            new = self.store.add_records(good)
            self.counts["readings"] += new
            self.counts["readings_duplicate"] += len(good) - new
            outcomes.append(Outcome("readings", topic, count=new, gw=gw))
        return outcomes

    def check_reading(self, topic: str, gw: str, line: bytes) -> RecordRow | Rejection:
        checked = self._check_record(topic, gw, line, want_alert=False)
        if isinstance(checked, Rejection):
            return checked
        record, _ = checked
        body = record["body"]
        lat, lon = _position(body) if record["kind"] == "gps" else (None, None)
        return RecordRow(record["gw"], record["seq"], record["t_ms"], record["kind"],
                         record["src"], lat, lon, now_ms(), line)

    # -- the checks shared by alerts and readings --------------------------------------------

    def _check_record(self, topic: str, gw: str, payload: bytes,
                      *, want_alert: bool) -> tuple[dict[str, Any], str] | Rejection:
        try:
            record = parse(payload)
            check_schema(record)
        except RecordError as exc:
            return Rejection("malformed", f"not a signed SealTrail record: {exc}")
        body = record["body"]
        ids = dict(gw=record["gw"], seq=record["seq"],
                   alert_id=body.get("alert_id") if isinstance(body.get("alert_id"), str)
                   else None,
                   plan_id=body.get("plan_id") if isinstance(body.get("plan_id"), str)
                   else None)
        name = f"{record['gw']} seq {record['seq']}"
        if record["gw"] != gw:
            return Rejection("wrong_topic", f"{name}: a record of gateway {record['gw']!r} "
                             f"published on {topic} (gateways publish only their own)", **ids)
        if want_alert and record["kind"] != "alert":
            return Rejection("wrong_kind", f"{name}: a {record['kind']!r} record on the "
                             "alerts topic", **ids)
        if not want_alert and record["kind"] == "alert":
            return Rejection("wrong_kind", f"{name}: an alert on the readings topic (alerts "
                             "travel on .../alerts only)", **ids)
        try:
            key = self.trust.key_for(gw)
        except Untrusted as exc:
            return Rejection(exc.reason, f"{name}: {exc}", **ids)
        try:
            verify_signature(record, key.public_key)
        except RecordError:
            return self._signature_failure(record, payload, key.public_hex, key.source, ids)
        return record, f"{key.source}, key {key.public_hex[:16]}…"

    def _signature_failure(self, record: dict[str, Any], payload: bytes, pub_hex: str,
                           source: str, ids: dict[str, Any]) -> Rejection:
        """Tampered, or signed with another key? Only a record carrying the very signature of
        a verified record we hold, with other content, is certainly an altered copy (a forger
        cannot sign, so he keeps the signature); a gateway re-keyed without re-registration
        reuses seqs but not signatures."""
        name = f"{record['gw']} seq {record['seq']}"
        candidates = [self.store.signed_at(record["gw"], record["seq"])]
        if ids["alert_id"] is not None:
            row = self.store.alert(ids["alert_id"])
            candidates.append(row.signed if row is not None and row.gw == record["gw"] else None)
        for held in candidates:
            if held is not None and held != payload and json.loads(held)["sig"] == record["sig"]:
                return Rejection("tampered", f"{name}: signature does not verify: this is an "
                                 "altered copy of a verified record received before (same "
                                 "signature, other content)", **ids)
        return Rejection("bad_signature", f"{name}: signature does not verify with the key "
                         f"trusted for {record['gw']} ({pub_hex[:16]}…, {source}): altered "
                         "after signing, or signed with another key", **ids)

    def _quarantine(self, topic: str, payload: bytes, rej: Rejection) -> Outcome:
        self.store.quarantine(topic=topic, reason=rej.reason, detail=rej.detail,
                              payload=payload, gw=rej.gw, seq=rej.seq, alert_id=rej.alert_id,
                              plan_id=rej.plan_id)
        self.counts["quarantined"] += 1
        self.counts[f"quarantined_{rej.reason}"] += 1
        self._ratelog.warning(f"quarantine {rej.reason}", "quarantined a message on %s: %s: %s",
                              topic, rej.reason, rej.detail)
        return Outcome("quarantined", topic, rejection=rej)

    # -- status and plans (informational, unsigned) ------------------------------------------

    def _status(self, topic: str, gw: str, payload: bytes) -> Outcome:
        try:
            doc = json.loads(payload)
            state = doc["state"]
            if doc.get("gw") != gw or state not in ("online", "offline"):
                raise ValueError(f"gw {doc.get('gw')!r}, state {state!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self.counts["status_ignored"] += 1
            self._ratelog.warning("bad status", "ignored a status message on %s: %s", topic,
                                  exc)
            return Outcome("ignored", topic)
        previous = self.store.set_gateway_status(
            gw, state, _int_or_none(doc.get("t_ms")), _int_or_none(doc.get("head_seq")),
            _int_or_none(doc.get("alerts_pending")))
        self.counts["status"] += 1
        return Outcome("status", topic, gw=gw, state=state, previous=previous)

    def _plan(self, topic: str, gw: str, payload: bytes) -> Outcome:
        """Keep the envelope customs published for this gateway; verified when it is used."""
        try:
            envelope = json.loads(payload)
            if envelope.get("kind") != "plan":
                return Outcome("ignored", topic)  # fence bundles: nothing to report on
            plan_id = json.loads(envelope["payload"])["plan_id"]
            if not isinstance(plan_id, str) or not plan_id:
                raise ValueError("no plan_id")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._ratelog.warning("bad plan", "ignored a plan envelope on %s: %s", topic, exc)
            return Outcome("ignored", topic)
        self.store.put_plan(plan_id, payload, topic)
        self.counts["plans"] += 1
        return Outcome("plan", topic, gw=gw)

    # -- re-verification ---------------------------------------------------------------------

    def recheck(self, reasons: frozenset[str] = TRANSIENT) -> list[Outcome]:
        """Re-verify quarantined messages whose reason may have gone away; release the ones
        that now verify (stored as if they had just arrived). Others stay as they are."""
        outcomes = []
        for row in self.store.quarantined(reasons=reasons):
            where = split_topic(row.topic)
            if where is None:
                continue
            gw, leaf = where
            if leaf == "alerts":
                checked: AlertRow | RecordRow | Rejection = self.check_alert(
                    row.topic, gw, row.payload)
            elif leaf == "readings":
                checked = self.check_reading(row.topic, gw, row.payload)
            else:
                continue
            if isinstance(checked, Rejection):
                continue
            if isinstance(checked, AlertRow):
                note = f"released from quarantine ({row.reason})"
                alert = dataclasses.replace(checked, note=note)
                new = self.store.add_alert(alert, forward=self.forward)
                outcomes.append(Outcome("alert" if new else "duplicate", row.topic, alert=alert))
                self.counts["alerts" if new else "duplicates"] += 1
            else:
                self.counts["readings"] += self.store.add_records([checked])
                outcomes.append(Outcome("readings", row.topic, count=1, gw=gw))
            self.store.release(row.id)
            self.counts["released"] += 1
        return outcomes
