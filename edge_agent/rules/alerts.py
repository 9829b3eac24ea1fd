"""Alert types, their severities and stable ids: what every rule module produces.

Rule modules are pure state machines; they return ``Alert`` values and never build records.
The engine turns each into an ``alert`` record body (DESIGN.md "Records"), adding what only it
knows: the gateway id, the plan, the asset names and the vehicle's position.

Ids are UUIDv5 of ``<gateway>/<type>/<key>/<triggering seq>``: a crash followed by
re-evaluation of the same records yields the same ids, so customs can deduplicate, and the
journal's unique index on ``alert_id`` makes a double commit impossible rather than silent.
``key`` names the asset (a GPS sensor, a seal, a plan) and, where one record can trigger the
same type twice (two zones entered by one fix), what distinguishes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALERT_NAMESPACE = uuid.UUID("6f1d3c2e-5a1b-5c7d-9e8f-5ea17a11e001")
"""The namespace of rules.py before it became a package: alert ids stay comparable."""

INFO, WARNING, CRITICAL = "info", "warning", "critical"

SEVERITY: dict[str, str] = {
    # route and zones
    "routeDeviation": CRITICAL,
    "routeReturn": WARNING,
    "geofenceEnter": INFO,        # critical for a forbidden zone (see zone_severity)
    "geofenceExit": INFO,         # warning when leaving a forbidden zone
    "unauthorizedStop": WARNING,
    "overspeed": WARNING,
    "lateArrival": WARNING,
    "tripClosed": INFO,
    # seals
    "sealOpened": CRITICAL,       # warning inside a customs office or authorized zone
    "sealTampered": CRITICAL,     # likewise
    "sealMissing": CRITICAL,
    "sealFound": INFO,            # closes sealMissing
    "sealIdMismatch": CRITICAL,
    "sealLowBattery": WARNING,
    # the gateway's own sensors
    "gnssLost": WARNING,
    "gnssRestored": INFO,         # closes gnssLost
    "jamming": CRITICAL,
    "jammingCleared": INFO,       # closes jamming
    "commLoss": WARNING,
    "commRestored": INFO,         # closes commLoss
}
"""Default severity per type; a rule may raise or lower it for the place (documented there)."""

CLOSES: dict[str, str] = {
    "routeReturn": "routeDeviation",
    "geofenceExit": "geofenceEnter",
    "sealFound": "sealMissing",
    "gnssRestored": "gnssLost",
    "jammingCleared": "jamming",
    "commRestored": "commLoss",
}
"""Closing type -> the type it closes; its body names the closed alert in ``details.closes``."""

EVIDENCE_CAP = 32


def alert_id(gateway_id: str, alert_type: str, key: str, seq: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{gateway_id}/{alert_type}/{key}/{seq}"))


def zone_severity(alert_type: str, role: str) -> str:
    """Entering a forbidden zone is critical, leaving it a warning; other zones are info."""
    if role == "forbidden":
        return CRITICAL if alert_type == "geofenceEnter" else WARNING
    return INFO


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as a rule decides it.

    ``seq``/``t_ms`` are those of the record that triggered it (a reading, a status record, or
    for timers the record whose time crossed the limit). ``opened_seq`` (closing types only) is
    the triggering seq of the alert being closed, so its id can be quoted.
    """

    type: str
    key: str
    seq: int
    t_ms: int
    evidence: tuple[int, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    severity: str | None = None
    opened_seq: int | None = None
    seal: str | None = None
    gps: str | None = None

    @property
    def level(self) -> str:
        return self.severity or SEVERITY[self.type]


class Evidence:
    """A capped list of seqs: the first half and the most recent ones, plus the true count.

    Alert bodies stay small however long a stop or an overspeed lasts, and still show both how
    it began and how it was confirmed.
    """

    __slots__ = ("count", "seqs")

    def __init__(self, seqs: list[int] | None = None, count: int = 0):
        self.seqs = seqs if seqs is not None else []
        self.count = max(count, len(self.seqs))

    def push(self, seq: int, cap: int = EVIDENCE_CAP) -> None:
        if self.seqs and self.seqs[-1] == seq:
            return
        self.seqs.append(seq)
        self.count += 1
        if len(self.seqs) > cap:
            del self.seqs[cap // 2]

    def to_dict(self) -> dict[str, Any]:
        return {"seqs": list(self.seqs), "count": self.count}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Evidence:
        if not d:
            return cls()
        return cls([int(s) for s in d.get("seqs", [])], int(d.get("count", 0)))
