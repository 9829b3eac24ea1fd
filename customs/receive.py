"""What the customs receiver does with messages: verify, then store or quarantine, never crash.

Every gateway is a possible adversary of customs and of the other gateways. So each payload is
bounded before it is parsed (``limits``; records through ``sealtrail.boundedjson``), every
field that is shown or indexed is checked, and every message ends as stored records or a
quarantine row (charged to the topic's gateway, within its quota). A message that still makes
the checks fail is quarantined as ``internal_error``; one the database refuses is isolated from
its group and quarantined too. Only a store that is down makes a group wait (``StoreUnavailable``
propagates, the messages stay unacknowledged and come again).

A message becomes an alert only if every check passes, in this order (the first failure is the
quarantine reason):

``oversize``         larger than its topic allows (alerts 64 kB, readings and plans 1 MB)
``malformed``        not a canonical signed SealTrail record (garbage, truncated, re-encoded)
``wrong_topic``      the record's ``gw`` is not the gateway in the topic
``wrong_kind``       a reading on the alerts topic, or an alert on the readings topic
``unknown_gateway`` / ``revoked_gateway`` / ``trust_unavailable``   no usable trusted key
``tampered``         bad signature, carrying the signature of a verified record held for that
                     gateway (same seq or alert id) over other content: an altered copy
``bad_signature``    bad signature, nothing to compare with (altered, or another key)
``bad_alert``        signed, but the body is not a usable alert (id, type, severity, position)
``conflicting_seq``  signed, but the gateway already signed other content under this seq
``malformed_status`` / ``malformed_anchor`` / ``malformed_plan``   an unsigned status, anchor
                     receipt or plan message that is not one
``internal_error``   the receiver (or the database) failed on this message

Duplicates are decided per gateway, after verification: ``(gw, seq)`` for every record,
``(gw, alert_id)`` for alerts. One gateway's messages can never hide another's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from customs.checks import (
    Limits,
    alert_row,
    anchor_claim,
    bounded_status,
    check_record,
    plan_id_of,
    position,
)
from customs.store import (
    AlertRow,
    Part,
    PlanEnvelope,
    RecordRow,
    Rejection,
    SqlStore,
    StoreDataError,
    StoreUnavailable,
    WriteResult,
    now_ms,
)
from customs.trust import TRUST_UNAVAILABLE, UNKNOWN_GATEWAY, Trust
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

TOPIC_ROOT = "sealtrail/v1"
LEAVES = ("alerts", "readings", "status", "anchors", "plans")
SUBSCRIPTIONS = tuple(f"{TOPIC_ROOT}/+/{leaf}" for leaf in LEAVES)
MIN_SHARE = 16
"""Fewer messages than this per thread are checked on the calling thread (not worth a hop)."""
TRANSIENT = frozenset({TRUST_UNAVAILABLE, UNKNOWN_GATEWAY})
"""Reasons that may go away on their own (a node back up, a gateway registered late)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write did, for display: ``kind`` alert | duplicate | quarantined | readings |
    duplicate_readings | status | plan | overflow."""

    kind: str
    alert: AlertRow | None = None
    rejection: Rejection | None = None
    count: int = 0
    gw: str | None = None
    state: str | None = None
    previous: str | None = None


def storable(text: str, limit: int) -> str:
    """``text`` as any database text column takes it: NUL and lone surrogates replaced."""
    clean = text[:limit].replace("\x00", "\\x00")
    return clean.encode("utf-8", "replace").decode("utf-8")


def _signature_of(signed: bytes) -> str | None:
    """The ``sig`` of a record's bytes (a checked record: small, canonical, parsed before)."""
    at = signed.rfind(b',"sig":"')
    return signed[at + 8:at + 136].decode("ascii", "replace") if at >= 0 else None


def split_topic(topic: str) -> tuple[str, str] | None:
    """(gateway id, leaf) of ``sealtrail/v1/<gw>/<leaf>``, None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "sealtrail" or parts[1] != "v1" or not parts[2]:
        return None
    return parts[2], parts[3]


def outcomes(result: WriteResult) -> list[Outcome]:
    out = [Outcome("alert", alert=a) for a in result.new_alerts]
    out += [Outcome("duplicate", alert=a) for a in result.duplicate_alerts]
    out += [Outcome("quarantined", rejection=r) for r in result.quarantined]
    out += [Outcome("status", gw=g, state=s, previous=p) for g, s, p in result.status_changes]
    out += [Outcome("plan")] * result.plans
    if result.new_records:
        out.append(Outcome("readings", count=result.new_records))
    if result.duplicate_records:
        out.append(Outcome("duplicate_readings", count=result.duplicate_records))
    if result.overflowed:
        out.append(Outcome("overflow", count=result.overflowed))
    return out


class Receiver:
    """Verify and file messages into a store; ``forward`` queues new alerts for the webhook."""

    def __init__(self, store: SqlStore, trust: Trust, *, forward: bool = False,
                 limits: Limits | None = None, verify_threads: int = 2):
        self.store = store
        self.trust = trust
        self.forward = forward
        self.limits = limits or Limits()
        self.verify_threads = verify_threads
        self._pool: ThreadPoolExecutor | None = None
        self.counts: Counter[str] = Counter()
        self._ratelog = RateLimitedLog(log)

    # -- entry points ----------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Outcome]:
        """One message, in its own transaction (imports, tests, tools)."""
        return outcomes(self.handle_batch([(topic, payload)]))

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> WriteResult:
        """Check every message, then store the group in one transaction."""
        return self.write_batch(messages, self.check_batch(messages))

    def check_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Part]:
        """Every check of every message of a group (no write); the MQTT side runs this for the
        next group while the previous one is being written."""
        return self._check_all(messages)

    def write_batch(self, messages: Sequence[tuple[str, bytes]],
                    parts: Sequence[Part]) -> WriteResult:
        """Store a checked group in one transaction. A message the store refuses is isolated
        and quarantined; StoreUnavailable propagates (nothing written)."""
        parts = self._tampered(parts)
        try:
            result = self.store.write(parts, forward=self.forward)
        except StoreDataError:
            result = self._write_one_by_one(messages, parts)
        self._count(len(messages), result)
        return result

    def _tampered(self, parts: Sequence[Part]) -> list[Part]:
        """Tampered, or signed with another key? Only a record carrying the very signature of
        a verified record held for that gateway (same seq or alert id), over other content, is
        certainly an altered copy: a forger cannot sign, so he keeps the signature. Held means
        stored before this group, or earlier in it; groups are written in order, so this runs
        here and not with the checks (which may run ahead of the writes)."""
        by_seq: dict[tuple[str, int], bytes] = {}
        by_alert: dict[tuple[str, str], bytes] = {}
        out = []
        for part in parts:
            if any(r.reason == "bad_signature" for r in part.rejections):
                part = replace(part, rejections=[self._compare(r, by_seq, by_alert)
                                                 for r in part.rejections])
            for record in part.records:
                by_seq[(record.gw, record.seq)] = record.signed
            for alert in part.alerts:
                by_seq[(alert.gw, alert.seq)] = alert.signed
                by_alert[(alert.gw, alert.alert_id)] = alert.signed
            out.append(part)
        return out

    def _compare(self, rej: Rejection, by_seq: dict[tuple[str, int], bytes],
                 by_alert: dict[tuple[str, str], bytes]) -> Rejection:
        if rej.reason != "bad_signature" or rej.gw is None or rej.seq is None:
            return rej
        held = [by_seq.get((rej.gw, rej.seq)) or self.store.signed_at(rej.gw, rej.seq)]
        if rej.alert_id is not None:
            row = self.store.alert(rej.gw, rej.alert_id)
            held.append(by_alert.get((rej.gw, rej.alert_id)) or (row.signed if row else None))
        sig = _signature_of(rej.payload)
        if any(h is not None and h != rej.payload and _signature_of(h) == sig for h in held):
            return replace(rej, reason="tampered", detail=f"{rej.gw} seq {rej.seq}: signature "
                           "does not verify: an altered copy of a verified record received "
                           "before (same signature, other content)")
        return rej

    def _check_all(self, messages: Sequence[tuple[str, bytes]]) -> list[Part]:
        """The checks of a group, split over ``verify_threads`` threads: Ed25519 verification
        releases the GIL, so one thread verifies while another parses (and the MQTT thread
        reads the next messages). Order is kept."""
        if self.verify_threads < 2 or len(messages) < 2 * MIN_SHARE:
            return [self._check_guarded(topic, payload) for topic, payload in messages]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.verify_threads, thread_name_prefix="verify")
        share = -(-len(messages) // self.verify_threads)
        chunks = [messages[i:i + share] for i in range(0, len(messages), share)]
        done = self._pool.map(lambda chunk: [self._check_guarded(t, p) for t, p in chunk],
                              chunks)
        return [part for chunk in done for part in chunk]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _check_guarded(self, topic: str, payload: bytes) -> Part:
        try:
            return self.check(topic, payload)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.exception("internal error on a message on %s; quarantined", topic)
            return Part(rejections=[self.reject(topic, payload, "internal_error",
                                                    f"{type(exc).__name__}: {exc}"[:500])])

    def _write_one_by_one(self, messages: Sequence[tuple[str, bytes]],
                          parts: Sequence[Part]) -> WriteResult:
        result = WriteResult()
        for (topic, payload), part in zip(messages, parts, strict=True):
            try:
                result.merge(self.store.write([part], forward=self.forward))
                continue
            except StoreDataError as exc:
                detail = f"the store refused this message: {exc}"[:500]
            log.error("the store refused a message on %s; quarantined as internal_error", topic)
            rejection = self.reject(topic, payload[:self.limits.kept_oversize],
                                        "internal_error", detail)
            try:
                result.merge(self.store.write([Part(rejections=[rejection])]))
            except StoreDataError:
                log.error("the store refused even the quarantine row of a message on %s; "
                          "counted and dropped", topic)
                self.counts["dropped_poison"] += 1
        return result

    def _count(self, messages: int, result: WriteResult) -> None:
        c = self.counts
        c["messages"] += messages
        c["alerts"] += len(result.new_alerts)
        c["duplicates"] += len(result.duplicate_alerts)
        c["readings"] += result.new_records
        c["readings_duplicate"] += result.duplicate_records
        c["quarantined"] += len(result.quarantined)
        c["overflowed"] += result.overflowed
        for rej in result.quarantined:
            c[f"quarantined_{rej.reason}"] += 1
            self._ratelog.warning(f"quarantine {rej.reason}", "quarantined a message on %s: "
                                  "%s: %s", rej.topic, rej.reason, rej.detail)
        if result.overflowed:
            self._ratelog.warning("quarantine quota", "%d message(s) over a gateway's "
                                  "quarantine quota: counted and summarised, not kept",
                                  result.overflowed)

    # -- checks (no writes) ----------------------------------------------------------------------

    def check(self, topic: str, payload: bytes) -> Part:
        """Everything the module docstring lists, for one message; reads the store only to tell
        an altered copy from a bad signature."""
        where = split_topic(topic)
        if where is None or where[1] not in LEAVES:
            return Part(rejections=[self.reject(topic, payload, "wrong_topic",
                                                    "not a SealTrail topic")])
        gw, leaf = where
        limit = self.limits.for_leaf(leaf)
        if len(payload) > limit:
            kept = payload[:self.limits.kept_oversize]
            return Part(rejections=[self.reject(
                topic, kept, "oversize", f"{len(payload)} bytes on {leaf}, the limit is "
                f"{limit}; the first {len(kept)} kept", gw=gw)])
        if leaf == "alerts":
            return self._alert(topic, gw, payload)
        if leaf == "readings":
            return self._readings(topic, gw, payload)
        if leaf == "status":
            return self._status(topic, gw, payload)
        if leaf == "anchors":
            claim = anchor_claim(gw, payload, self.limits)
            if isinstance(claim, str):
                return Part(rejections=[self.reject(topic, payload, "malformed_anchor", claim,
                                                    gw=gw)])
            return Part(anchors=[claim])
        return self._plan(topic, gw, payload)

    def check_alert(self, topic: str, gw: str, payload: bytes) -> AlertRow | Rejection:
        checked = check_record(self, topic, gw, payload, want_alert=True)
        if isinstance(checked, Rejection):
            return checked
        record, trust = checked
        return alert_row(self, topic, gw, payload, record, trust)

    def _alert(self, topic: str, gw: str, payload: bytes) -> Part:
        checked = self.check_alert(topic, gw, payload)
        if isinstance(checked, Rejection):
            return Part(rejections=[checked])
        return Part(alerts=[checked])

    def check_reading(self, topic: str, gw: str, line: bytes) -> RecordRow | Rejection:
        checked = check_record(self, topic, gw, line, want_alert=False)
        if isinstance(checked, Rejection):
            return checked
        record, _ = checked
        lat = lon = None
        if record["kind"] == "gps":
            lat, lon = position(record["body"])
        return RecordRow(record["gw"], record["seq"], record["t_ms"], record["kind"],
                         record["src"], lat, lon, now_ms(), line)

    def _readings(self, topic: str, gw: str, payload: bytes) -> Part:
        """JSON Lines of signed records: each line is verified (and quarantined) on its own;
        a message of garbage is one quarantine row, not one per line."""
        part = Part()
        malformed: list[str] = []
        for number, line in enumerate(payload.split(b"\n"), start=1):
            line = line.rstrip(b"\r")
            if not line:
                continue
            checked = self.check_reading(topic, gw, line)
            if isinstance(checked, RecordRow):
                part.records.append(checked)
            elif checked.reason == "malformed":
                malformed.append(f"line {number}: {checked.detail}")
            else:
                part.rejections.append(checked)
        if not (part.records or part.rejections or malformed):
            malformed.append("no record in the message")
        if malformed:
            part.rejections.append(self.reject(
                topic, payload, "malformed", f"{len(malformed)} malformed line(s); "
                f"{malformed[0]}"[:500], gw=gw))
        return part

    def _status(self, topic: str, gw: str, payload: bytes) -> Part:
        status = bounded_status(gw, payload, self.limits)
        if isinstance(status, str):
            return Part(rejections=[self.reject(topic, payload, "malformed_status", status,
                                                    gw=gw)])
        return Part(statuses=[status])

    def _plan(self, topic: str, gw: str, payload: bytes) -> Part:
        """Keep the envelope customs published for this gateway; verified whenever used."""
        plan_id = plan_id_of(payload, self.limits)
        if plan_id is None:  # a fence bundle: nothing to report on
            return Part()
        if plan_id.startswith("!"):
            return Part(rejections=[self.reject(topic, payload, "malformed_plan",
                                                    plan_id[1:], gw=gw)])
        return Part(plans=[PlanEnvelope(plan_id, payload, topic)])

    def reject(self, topic: str, payload: bytes, reason: str, detail: str,
               **ids: Any) -> Rejection:
        """A quarantine entry; its text fields made storable (no NUL, no lone surrogate, a
        bounded length: PostgreSQL refuses the first two, and the topic comes from outside)."""
        where = split_topic(topic)
        return Rejection(storable(topic, 256), reason, storable(detail, 1000), payload,
                         account=storable(where[0], 256) if where else "", **ids)

    # -- re-verification -------------------------------------------------------------------------

    def recheck(self, reasons: frozenset[str] = TRANSIENT) -> list[Outcome]:
        """Re-verify quarantined messages whose reason may have gone away; the ones that now
        verify are stored as if they had just arrived, and released."""
        found: list[Outcome] = []
        for row in self.store.quarantined(reasons=reasons, limit=10_000):
            where = split_topic(row.topic)
            if where is None:
                continue
            gw, leaf = where
            part = Part(released=[row.id])
            if leaf == "alerts":
                checked: AlertRow | RecordRow | Rejection = self.check_alert(row.topic, gw,
                                                                             row.payload)
                if isinstance(checked, AlertRow):
                    part.alerts.append(replace(
                        checked, note=f"released from quarantine ({row.reason})"))
            elif leaf == "readings":
                checked = self.check_reading(row.topic, gw, row.payload)
                if isinstance(checked, RecordRow):
                    part.records.append(checked)
            else:
                continue
            if isinstance(checked, Rejection):
                continue
            result = self.store.write([part], forward=self.forward)
            self._count(0, result)
            self.counts["released"] += 1
            found += outcomes(result)
        return found

