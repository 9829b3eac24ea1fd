"""One e-seal's rules: opened, tampered, missing, low battery, wrong seal, trip closure.

Readings reaching the rules are already authenticated (MAC and counter, see
sources/seal_auth.py), so one reading is enough evidence; what needs care is *where* and
*whether it is news*:

* **sealOpened / sealTampered** fire on a change into ``O``/``T`` (a first reading already in
  that state counts: we did not know), never on the heartbeats that repeat it. They are
  critical unless the vehicle's last fix (at most ``position_max_age_ms`` old, or the gateway's
  fixed site) lies in a customs office or an authorized zone, within ``zone_margin_m``; then a
  warning. An unknown position is not an authorized one.
* **tripClosed** replaces sealOpened when a seal of the active plan opens inside the plan's
  destination office: that is how a transit ends. The trip's seals are then released: their
  openings, silences and identities no longer raise alerts (tampering and batteries still do).
* **sealMissing**: a seal of the active plan not heard for ``seal_missing_ms`` (counted from
  the later of its last reading, the plan's start and the agent's last resumption). Closed
  by the next reading with ``sealFound``.
* **sealIdMismatch**: a trusted reading, while a plan is active, from a seal the plan does not
  list, or from a plan seal reporting a container (``container_id``, sent by readers that know
  it) other than the plan's. Once per seal and plan.
* **sealLowBattery** at ``low_battery_pct`` or below, re-armed only once the battery is back at
  ``low_battery_rearm_pct`` (a new battery), so a level wobbling at the threshold fires once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from edge_agent.rules.alerts import WARNING, Alert
from edge_agent.rules.context import ActivePlan, Place
from edge_agent.rules.params import RuleParams

OPEN_TYPES = {"O": "sealOpened", "T": "sealTampered"}
_FIELDS = ("state", "seen_ms", "seen_seq", "open_alert", "missing_alert", "low_alert",
           "mismatch_for")


class SealContext(NamedTuple):
    """What the engine knows when a seal reading arrives."""

    plan: ActivePlan | None
    """The active plan if its trip has started and is still open."""
    released: bool
    """The seal belonged to a trip that has been closed."""
    where: Callable[[], Place]
    """Where the vehicle (or the gateway's site) is now; computed only if needed."""
    params: RuleParams


class SealMonitor:
    def __init__(self, seal_id: str) -> None:
        self.seal_id = seal_id
        self.state: str | None = None
        self.seen_ms: int | None = None
        self.seen_seq: int | None = None
        self.open_alert: int | None = None
        self.missing_alert: int | None = None
        self.low_alert: int | None = None
        self.mismatch_for: str | None = None

    def reading(self, seq: int, t_ms: int, body: Mapping[str, Any],
                ctx: SealContext) -> list[Alert]:
        alerts: list[Alert] = []
        sid = self.seal_id
        if self.missing_alert is not None:
            alerts.append(Alert("sealFound", sid, seq, t_ms, (seq,), {
                "last_seen_ms": self.seen_ms, "silent_ms": t_ms - (self.seen_ms or t_ms)},
                opened_seq=self.missing_alert, seal=sid))
            self.missing_alert = None
        self.seen_ms, self.seen_seq = t_ms, seq
        plan, params = ctx.plan, ctx.params
        if plan is not None and not ctx.released:
            alerts += self._identity(seq, t_ms, body, plan)
        alerts += self._battery(seq, t_ms, body.get("battery_pct"), params)
        state, previous = body.get("state"), self.state
        self.state = state if isinstance(state, str) else previous
        if state not in OPEN_TYPES or state == previous:
            return alerts
        if state == "O" and ctx.released:
            return alerts
        place = ctx.where()
        evidence = tuple(sorted({seq} | ({place.fix.seq} if place.fix else set())))
        details: dict[str, Any] = {"state": state, "previous_state": previous,
                                   "ctr": body.get("ctr"), **place.describe()}
        if (state == "O" and plan is not None and sid in plan.seal_container
                and place.has(plan.plan.destination_office)):
            return [*alerts, Alert("tripClosed", plan.plan_id, seq, t_ms, evidence, {
                **details, "destination_office": plan.plan.destination_office}, seal=sid)]
        self.open_alert = seq
        severity = WARNING if place.authorized(plan) else None
        return [*alerts, Alert(OPEN_TYPES[state], sid, seq, t_ms, evidence, details,
                               severity=severity, seal=sid)]

    def _identity(self, seq: int, t_ms: int, body: Mapping[str, Any],
                  plan: ActivePlan) -> list[Alert]:
        if self.mismatch_for == plan.digest:
            return []
        expected = plan.seal_container.get(self.seal_id)
        reported = body.get("container_id", body.get("container"))
        if expected is None:
            details: dict[str, Any] = {"reason": "not_in_plan",
                                       "plan_seals": sorted(plan.seal_container)[:32]}
        elif isinstance(reported, str) and reported != expected:
            details = {"reason": "container", "reported_container": reported,
                       "plan_container": expected}
        else:
            return []
        self.mismatch_for = plan.digest
        return [Alert("sealIdMismatch", self.seal_id, seq, t_ms, (seq,), details,
                      seal=self.seal_id)]

    def _battery(self, seq: int, t_ms: int, pct: Any, params: RuleParams) -> list[Alert]:
        if type(pct) is not int:
            return []
        if self.low_alert is not None:
            if pct >= params.low_battery_rearm_pct:
                self.low_alert = None
            return []
        if pct > params.low_battery_pct:
            return []
        self.low_alert = seq
        return [Alert("sealLowBattery", self.seal_id, seq, t_ms, (seq,), {
            "battery_pct": pct, "threshold_pct": params.low_battery_pct}, seal=self.seal_id)]

    # -- timer -------------------------------------------------------------------------------

    def due_ms(self, floor_ms: int, params: RuleParams) -> int | None:
        """When sealMissing is due; ``floor_ms``: the later of plan start and resumption."""
        if self.missing_alert is not None:
            return None
        return max(self.seen_ms or floor_ms, floor_ms) + params.seal_missing_ms

    def tick(self, now_ms: int, seq: int, floor_ms: int, plan_seq: int,
             params: RuleParams) -> list[Alert]:
        due = self.due_ms(floor_ms, params)
        if due is None or now_ms < due:
            return []
        self.missing_alert = seq
        evidence = (self.seen_seq,) if self.seen_seq is not None else (plan_seq,)
        return [Alert("sealMissing", self.seal_id, seq, now_ms, evidence, {
            "last_seen_ms": self.seen_ms, "threshold_ms": params.seal_missing_ms,
            "silent_ms": now_ms - max(self.seen_ms or floor_ms, floor_ms)}, seal=self.seal_id)]

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}

    @classmethod
    def from_dict(cls, seal_id: str, d: Mapping[str, Any]) -> SealMonitor:
        m = cls(seal_id)
        for k in _FIELDS:
            if k in d:
                setattr(m, k, d[k])
        return m
