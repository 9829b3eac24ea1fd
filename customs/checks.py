"""The receiver's checks on one payload: bounded, defensive, and free of side effects.

Everything here treats its input as hostile: sizes are checked before parsing, JSON goes
through ``boundedjson`` (so no payload can recurse the C parser off its stack), and every
string that will be indexed, shown to an officer or written to PostgreSQL must be short,
printable text (a NUL byte is legal in JSON and fatal in a PostgreSQL ``text`` column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customs.store import AlertRow, AnchorClaim, Rejection, StatusUpdate, now_ms
from customs.trust import Untrusted
from ledger_client.records import RecordError, check_schema, parse, verify_signed
from sealtrail import boundedjson

if TYPE_CHECKING:
    from customs.receive import Receiver

SEVERITIES = frozenset({"info", "warning", "critical"})
GATEWAY_KINDS = frozenset({"gps", "seal", "alert", "status"})
"""What a gateway signs; ``audit`` records are the customs office's own chain."""
MAX_ID = 128
MAX_LAT_E7, MAX_LON_E7 = 900_000_000, 1_800_000_000


@dataclass(frozen=True)
class Limits:
    """Largest payload per topic leaf, in bytes. Alerts are single records (64 kB is the
    record limit); a readings message is a batch of records; status is a small JSON object."""

    alerts: int = 64 * 1024
    readings: int = 1024 * 1024
    status: int = 4 * 1024
    anchors: int = 4 * 1024
    plans: int = 1024 * 1024
    kept_oversize: int = 4096  # bytes of an oversize payload kept in quarantine

    def for_leaf(self, leaf: str) -> int:
        return int(getattr(self, leaf))


def safe_id(value: Any) -> str | None:
    """A string fit to index and show: 1..128 printable characters, else None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_ID and value.isprintable():
        return value
    return None


def position(obj: Any) -> tuple[int | None, int | None]:
    """(lat_e7, lon_e7) of a gps body or an alert's position; (None, None) when absent or not
    a place on Earth (a map must not scale itself to a bogus point)."""
    if not isinstance(obj, dict):
        return None, None
    lat, lon = obj.get("lat_e7"), obj.get("lon_e7")
    if type(lat) is not int or type(lon) is not int:
        return None, None
    if abs(lat) > MAX_LAT_E7 or abs(lon) > MAX_LON_E7:
        return None, None
    return lat, lon


def check_record(rx: Receiver, topic: str, gw: str, payload: bytes,
                 *, want_alert: bool) -> tuple[dict[str, Any], str] | Rejection:
    """Parse and verify one signed record published on ``topic`` by gateway ``gw``: the
    record and a description of the key it verified with, or the Rejection."""
    try:
        record = parse(payload)
        check_schema(record)
    except RecordError as exc:
        return rx.reject(topic, payload, "malformed",
                             f"not a signed SealTrail record: {exc}"[:500], gw=gw)
    body = record["body"]
    ids = dict(gw=gw, seq=record["seq"], alert_id=safe_id(body.get("alert_id")),
               plan_id=safe_id(body.get("plan_id")))
    name = f"{gw} seq {record['seq']}"
    if record["gw"] != gw:
        return rx.reject(topic, payload, "wrong_topic",
                             f"{name}: a record of gateway {record['gw']!r:.80} published on "
                             f"{topic} (gateways publish only their own)", **ids)
    if record["kind"] not in GATEWAY_KINDS:
        return rx.reject(topic, payload, "wrong_kind", f"{name}: a {record['kind']!r} record "
                         "(only customs writes those)", **ids)
    if want_alert != (record["kind"] == "alert"):
        what = (f"a {record['kind']!r} record on the alerts topic" if want_alert else
                "an alert on the readings topic (alerts travel on .../alerts only)")
        return rx.reject(topic, payload, "wrong_kind", f"{name}: {what}", **ids)
    try:
        key = rx.trust.key_for(gw)
    except Untrusted as exc:
        return rx.reject(topic, payload, exc.reason, f"{name}: {exc}", **ids)
    try:
        verify_signed(payload, record, key.public_key)
    except RecordError:
        return _signature_failure(rx, topic, payload, record, key.public_hex, key.source, ids)
    return record, f"{key.source}, key {key.public_hex[:16]}…"


def _signature_failure(rx: Receiver, topic: str, payload: bytes, record: dict[str, Any],
                       pub_hex: str, source: str, ids: dict[str, Any]) -> Rejection:
    """A signature that does not verify with the trusted key. Whether it is an altered copy
    of a record customs holds (``tampered``) is decided when the group is written
    (``Receiver.write_batch``), against everything stored before it, this group included."""
    return rx.reject(topic, payload, "bad_signature", f"{ids['gw']} seq {record['seq']}: "
                     f"signature does not verify with the key trusted for {ids['gw']} "
                     f"({pub_hex[:16]}…, {source}): altered after signing, or signed with "
                     "another key", **ids)


def alert_row(rx: Receiver, topic: str, gw: str, payload: bytes, record: dict[str, Any],
              trust: str) -> AlertRow | Rejection:
    """The index row of a verified alert, or ``bad_alert`` naming the unusable field."""
    body = record["body"]
    seq = record["seq"]
    ids = dict(gw=gw, seq=seq, alert_id=safe_id(body.get("alert_id")),
               plan_id=safe_id(body.get("plan_id")))

    def bad(why: str) -> Rejection:
        return rx.reject(topic, payload, "bad_alert", f"{gw} seq {seq}: {why}", **ids)

    alert_id, kind = ids["alert_id"], safe_id(body.get("type"))
    severity = body.get("severity")
    if alert_id is None:
        return bad("alert body has no usable 'alert_id' (1-128 printable characters)")
    if kind is None:
        return bad("alert body has no usable 'type' (1-128 printable characters)")
    if severity not in SEVERITIES:
        return bad(f"'severity' must be one of {sorted(SEVERITIES)}")
    if "plan_id" in body and body["plan_id"] is not None and ids["plan_id"] is None:
        return bad("'plan_id' is not 1-128 printable characters")
    prev = body.get("prev_alert")
    if prev is not None and (type(prev) is not int or not 0 <= prev < seq):
        return bad("'prev_alert' must be the seq of an earlier alert (0 for the first)")
    lat, lon = position(body.get("position"))
    return AlertRow(gw, seq, alert_id, record["t_ms"], kind, severity, ids["plan_id"], lat, lon,
                    prev, trust, now_ms(), payload)


def bounded_status(gw: str, payload: bytes, limits: Limits) -> StatusUpdate | str:
    """A gateway's retained status message, or why it is not one."""
    try:
        doc = boundedjson.loads(payload, max_bytes=limits.status, max_depth=4)
    except boundedjson.JsonBoundError as exc:
        return f"not a status message: {exc}"
    if not isinstance(doc, dict):
        return "not a status message: not a JSON object"
    if doc.get("gw") != gw:
        return f"status names gateway {str(doc.get('gw'))[:80]!r}, not the topic's {gw!r}"
    state = doc.get("state")
    if state not in ("online", "offline"):
        return f"state {str(state)[:40]!r} is not online or offline"

    def number(name: str) -> int | None:
        value = doc.get(name)
        return value if type(value) is int and 0 <= value < 2**62 else None

    return StatusUpdate(gw, state, number("t_ms"), number("head_seq"),
                        number("alerts_pending"))


def plan_id_of(payload: bytes, limits: Limits) -> str | None:
    """The plan id of a signed plan envelope; None for a fence bundle; "!why" when it is not
    an envelope at all (the signature is checked whenever the plan is used, not here)."""
    try:
        envelope = boundedjson.loads(payload, max_bytes=limits.plans, max_depth=4)
        if not isinstance(envelope, dict) or envelope.get("format") != "sealtrail-signed/1":
            return "!not a sealtrail-signed/1 envelope"
        if envelope.get("kind") == "fences":
            return None
        if envelope.get("kind") != "plan":
            return "!an envelope of neither kind plan nor fences"
        inner = envelope.get("payload")
        if not isinstance(inner, str):
            return "!envelope has no payload text"
        plan = boundedjson.loads(inner, max_bytes=limits.plans)
    except boundedjson.JsonBoundError as exc:
        return f"!not a signed plan envelope: {exc}"
    plan_id = safe_id(plan.get("plan_id") if isinstance(plan, dict) else None)
    return plan_id if plan_id is not None else "!the plan has no usable plan_id"



_HEX = frozenset("0123456789abcdef")
_CLAIM_INTS = ("batch_seq", "first_seq", "tree_size", "chain_id", "block_number", "log_index")
_CLAIM_HEX = {"root": 64, "tx_hash": 66, "block_hash": 66, "contract": 42}


def anchor_claim(gw: str, payload: bytes, limits: Limits) -> AnchorClaim | str:
    """A gateway's anchor receipt, or why it is not one. Unsigned: a claim to be checked
    against the ledger before anything is called anchored, so only its shape is checked."""
    try:
        doc = boundedjson.loads(payload, max_bytes=limits.anchors, max_depth=2)
    except boundedjson.JsonBoundError as exc:
        return f"not an anchor receipt: {exc}"
    if not isinstance(doc, dict):
        return "not an anchor receipt: not a JSON object"
    for name in _CLAIM_INTS:
        value = doc.get(name)
        if type(value) is not int or not 0 <= value < 2**62:
            return f"anchor receipt: {name!r} must be an integer >= 0"
    if doc["batch_seq"] < 1 or doc["first_seq"] < 1 or doc["tree_size"] < 1:
        return "anchor receipt: batch_seq, first_seq and tree_size must be >= 1"
    for name, length in _CLAIM_HEX.items():
        value = doc.get(name)
        text = value.lower().removeprefix("0x") if isinstance(value, str) else ""
        if len(value if isinstance(value, str) else "") != length or not set(text) <= _HEX:
            return f"anchor receipt: {name!r} must be {length} characters of hex"
    return AnchorClaim(gw, doc["batch_seq"], doc["first_seq"], doc["tree_size"],
                       doc["root"].lower(), doc["chain_id"], doc["contract"].lower(),
                       doc["tx_hash"].lower(), doc["block_number"], doc["block_hash"].lower(),
                       doc["log_index"])
