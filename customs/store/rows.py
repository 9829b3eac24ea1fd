"""What the customs store holds and what a receiver hands it, as plain immutable rows.

Everything a gateway sent is kept as the exact bytes it signed (``signed``); the other columns
are an index over those bytes, filled by the receiver after verification, so a console query
never re-parses JSON and an auditor can always go back to the signed original.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

ALERT_STATES = ("open", "acknowledged", "resolved")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A verified record of any kind (alerts too: the store holds each gateway's chain); lat/lon
    only for gps fixes."""

    gw: str
    seq: int
    t_ms: int
    kind: str
    src: str
    lat_e7: int | None
    lon_e7: int | None
    received_ms: int
    signed: bytes


@dataclass(frozen=True, slots=True)
class AlertRow:
    """A verified alert: the index of one alert record, plus the officers' handling of it.

    ``state``/``assignee``/``resolution`` are the current view of the audit chain's entries for
    this alert (the chain is the record; these columns let a queue be filtered without it).
    """

    gw: str
    seq: int
    alert_id: str
    t_ms: int
    type: str
    severity: str
    plan_id: str | None
    lat_e7: int | None
    lon_e7: int | None
    prev_alert: int | None
    trust: str
    received_ms: int
    signed: bytes
    duplicates: int = 0
    note: str | None = None
    state: str = "open"
    assignee: str | None = None
    resolution: str | None = None

    def record(self) -> dict[str, Any]:
        return dict(json.loads(self.signed))

    @property
    def body(self) -> dict[str, Any]:
        return dict(self.record()["body"])

    @property
    def key(self) -> tuple[str, str]:
        return self.gw, self.alert_id


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message (or one line of it) that did not verify, with the reason code and why.

    ``account`` is the gateway the message is charged to for the quarantine quota: the gateway
    of the topic it arrived on (the broker authenticated that one), not whatever it claims.
    """

    topic: str
    reason: str
    detail: str
    payload: bytes
    account: str = ""
    gw: str | None = None
    seq: int | None = None
    alert_id: str | None = None
    plan_id: str | None = None
    received_ms: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    gw: str | None
    seq: int | None
    alert_id: str | None
    plan_id: str | None
    payload: bytes
    size: int
    sha256: str
    released_ms: int | None


@dataclass(frozen=True, slots=True)
class OverflowRow:
    """Quarantined messages past a gateway's quota: counted and summarised, not kept."""

    account: str
    reason: str
    count: int
    bytes: int
    first_ms: int
    last_ms: int
    last_sha256: str
    last_size: int
    last_topic: str


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    gw: str
    state: str
    t_ms: int | None
    head_seq: int | None
    alerts_pending: int | None


@dataclass(frozen=True, slots=True)
class GatewayRow:
    """What customs knows of one gateway: its last status, its last fix, what it acknowledged."""

    gw: str
    state: str
    t_ms: int | None
    head_seq: int | None
    alerts_pending: int | None
    received_ms: int
    acked_seq: int
    last_fix_seq: int | None
    last_fix_ms: int | None
    last_lat_e7: int | None
    last_lon_e7: int | None


@dataclass(frozen=True, slots=True)
class PlanEnvelope:
    plan_id: str
    envelope: bytes
    source: str


@dataclass(frozen=True, slots=True)
class AnchorClaim:
    """An anchor receipt as a gateway published it: where it says a batch was anchored."""

    gw: str
    batch_seq: int
    first_seq: int
    tree_size: int
    root: str
    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.tree_size - 1


@dataclass(frozen=True, slots=True)
class Quota:
    """Quarantine kept per gateway (rows and payload bytes) before it is only summarised."""

    rows: int = 1000
    bytes: int = 8 * 1024 * 1024


@dataclass
class Part:
    """What one MQTT message (or one imported file) adds to the store; written with others in
    one transaction, or alone when a group must be split to isolate a message that fails."""

    records: list[RecordRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    plans: list[PlanEnvelope] = field(default_factory=list)
    anchors: list[AnchorClaim] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # quarantine ids now verified


@dataclass
class WriteResult:
    """What a write did; the receiver reports it and publishes acknowledgements from it."""

    new_alerts: list[AlertRow] = field(default_factory=list)
    duplicate_alerts: list[AlertRow] = field(default_factory=list)
    new_records: int = 0
    duplicate_records: int = 0
    quarantined: list[Rejection] = field(default_factory=list)
    overflowed: int = 0
    status_changes: list[tuple[str, str, str | None]] = field(default_factory=list)
    frontiers: dict[str, int] = field(default_factory=dict)  # gw -> acked_seq, alert gateways
    plans: int = 0
    anchors: int = 0

    def merge(self, other: WriteResult) -> None:
        self.new_alerts += other.new_alerts
        self.duplicate_alerts += other.duplicate_alerts
        self.new_records += other.new_records
        self.duplicate_records += other.duplicate_records
        self.quarantined += other.quarantined
        self.overflowed += other.overflowed
        self.status_changes += other.status_changes
        self.frontiers.update(other.frontiers)
        self.plans += other.plans
        self.anchors += other.anchors
