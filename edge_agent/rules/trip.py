"""The trip of the active plan: started, arrived, closed, late.

A trip starts when its plan has been loaded (the ``planLoaded`` status record) and the plan's
``valid_from`` has passed; it *arrives* at the first usable fix inside the destination office
and *closes* when a seal of the plan is opened there (``tripClosed``, raised by the seal rules).
``lateArrival`` fires once if record time reaches the deadline before the truck arrived: a
truck waiting at the office for its inspection after the deadline is not late.

A new version of the same plan (same ``plan_id``, new digest: customs amended it) continues the
trip: arrival and closure carry over, and a lateArrival is re-armed only if the deadline moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.rules.alerts import Alert
from edge_agent.rules.context import ActivePlan, Fix

ACTIVE, CLOSED = "active", "closed"


@dataclass
class Trip:
    plan_id: str
    digest: str
    seq: int
    """The planLoaded record: alerts of this trip quote it in ``details.plan_seq``."""
    loaded_ms: int
    deadline_ms: int
    status: str = ACTIVE
    closed_seq: int | None = None
    closed_ms: int | None = None
    arrived_seq: int | None = None
    arrived_ms: int | None = None
    late_alert: int | None = None

    @classmethod
    def start(cls, plan: ActivePlan, t_ms: int, previous: Trip | None) -> Trip:
        trip = cls(plan.plan_id, plan.digest, plan.seq, t_ms, plan.plan.deadline_ms)
        if previous is not None and previous.plan_id == plan.plan_id:
            trip.loaded_ms = previous.loaded_ms
            trip.status, trip.closed_seq, trip.closed_ms = (previous.status, previous.closed_seq,
                                                           previous.closed_ms)
            trip.arrived_seq, trip.arrived_ms = previous.arrived_seq, previous.arrived_ms
            if previous.deadline_ms == trip.deadline_ms:
                trip.late_alert = previous.late_alert
        return trip

    @property
    def open(self) -> bool:
        return self.status == ACTIVE

    def floor_ms(self, plan: ActivePlan) -> int:
        """Silence is counted from here at the earliest: the plan was known and in force."""
        return max(self.loaded_ms, plan.plan.valid_from_ms)

    def arrive(self, fix: Fix) -> None:
        if self.arrived_seq is None:
            self.arrived_seq, self.arrived_ms = fix.seq, fix.t_ms

    def close(self, seq: int, t_ms: int) -> None:
        self.status, self.closed_seq, self.closed_ms = CLOSED, seq, t_ms

    def due_ms(self) -> int | None:
        if not self.open or self.arrived_seq is not None or self.late_alert is not None:
            return None
        return self.deadline_ms

    def tick(self, now_ms: int, seq: int, last_fix: Fix | None) -> list[Alert]:
        due = self.due_ms()
        if due is None or now_ms < due:
            return []
        self.late_alert = seq
        evidence = tuple(sorted({self.seq} | ({last_fix.seq} if last_fix else set())))
        return [Alert("lateArrival", self.plan_id, seq, now_ms, evidence, {
            "deadline_ms": self.deadline_ms, "late_ms": now_ms - self.deadline_ms})]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trip:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
