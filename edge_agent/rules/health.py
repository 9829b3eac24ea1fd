"""The gateway's own sensors: gnssLost, jamming and commLoss, from status records and timers.

The sources record facts as signed status records (``gnssLost`` after 3 s without a usable
fix, ``jammingSuspected``, ``sensorDisconnected``/``sensorSilent``, and their ends); this
module decides which of them customs hears about:

* **gnssLost** only when an outage has lasted ``gnss_lost_ms`` of record time (a tunnel or a
  multi-storey car park is not an alert), closed by ``gnssRestored`` (or by the next usable
  fix, should the status be missing).
* **jamming** at once on ``jammingSuspected``: the source's indicators (GST error estimates,
  satellites collapsing while fixes continue) already need a real degradation, and the
  suspicion only clears after 30 s of healthy fixes, so a minimum duration here would add
  nothing but delay. Closed by ``jammingCleared``.
* **commLoss** when a sensor has been disconnected or silent for ``comm_loss_ms``, or, for a
  GPS sensor, when nothing at all came from it for that long outside a GNSS outage (a source
  that died without a word). Any record from the sensor closes it with ``commRestored``.

Timers run on record time and start no earlier than ``resumed_ms``, the first record after
the agent itself was down (see ``RuleParams.blackout_ms``). Each episode raises at most one
alert, and its closing alert names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_agent.rules.alerts import Alert
from edge_agent.rules.params import RuleParams

DOWN_EVENTS = frozenset({"sensorDisconnected", "sensorSilent", "sensorGarbled"})
UP_EVENTS = frozenset({"sensorConnected", "sensorBack", "sensorReadable"})
"""sensorGarbled (bytes but no usable line: wrong baud rate) loses the sensor as surely as an
unplugged cable, so it starts the same commLoss timer."""
_FIELDS = ("lost_since", "lost_seq", "lost_alert", "jam_seq", "jam_alert", "down_since",
           "down_seq", "down_event", "comm_alert", "seen_ms", "seen_seq", "watch_silence")


class SensorHealth:
    """Per sensor (``src``) state: one open GNSS outage, jamming suspicion and comm loss."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.lost_since: int | None = None
        self.lost_seq: int | None = None
        self.lost_alert: int | None = None
        self.jam_seq: int | None = None
        self.jam_alert: int | None = None
        self.down_since: int | None = None
        self.down_seq: int | None = None
        self.down_event: str | None = None
        self.comm_alert: int | None = None
        self.seen_ms: int | None = None
        self.seen_seq: int | None = None
        self.watch_silence = False

    # -- inputs ------------------------------------------------------------------------------

    def status(self, seq: int, t_ms: int, body: Mapping[str, Any]) -> list[Alert]:
        event = body.get("event")
        alerts: list[Alert] = []
        if event in DOWN_EVENTS:
            if self.down_since is None:
                self.down_since, self.down_seq, self.down_event = t_ms, seq, str(event)
            return alerts
        alerts += self._heard(seq, t_ms)
        if event == "gnssLost":
            if self.lost_since is None:
                since = body.get("since_ms")
                self.lost_since = since if type(since) is int and since <= t_ms else t_ms
                self.lost_seq = seq
        elif event == "gnssRestored":
            alerts += self._gnss_back(seq, t_ms)
        elif event == "jammingSuspected":
            if self.jam_alert is None:
                self.jam_seq = self.jam_alert = seq
                details = {k: body[k] for k in ("indicators", "sats", "sats_before", "hdop_x10",
                                                "err_h_cm") if k in body}
                alerts.append(Alert("jamming", self.src, seq, t_ms, (seq,), details,
                                    gps=self.src))
        elif event == "jammingCleared":
            if self.jam_alert is not None:
                alerts.append(Alert("jammingCleared", self.src, seq, t_ms, (seq,), {
                    "since_ms": body.get("since_ms"), "duration_ms": body.get("duration_ms")},
                    opened_seq=self.jam_alert, gps=self.src))
            self.jam_seq = self.jam_alert = None
        return alerts

    def reading(self, seq: int, t_ms: int, usable_fix: bool) -> list[Alert]:
        """Any reading from this sensor; ``usable_fix`` for a GPS position the rules accept."""
        alerts = self._heard(seq, t_ms)
        if usable_fix:
            self.watch_silence = True
            if self.lost_since is not None:
                alerts += self._gnss_back(seq, t_ms)
        return alerts

    def _heard(self, seq: int, t_ms: int) -> list[Alert]:
        if self.seen_ms is None or t_ms >= self.seen_ms:  # a replayed log is not news
            self.seen_ms, self.seen_seq = t_ms, seq
        alerts: list[Alert] = []
        if self.comm_alert is not None:
            since = self.down_since if self.down_since is not None else self.seen_ms
            alerts.append(Alert("commRestored", self.src, seq, t_ms, (seq,), {
                "down_since_ms": since, "cause": self.down_event or "silence"},
                opened_seq=self.comm_alert))
        self.down_since = self.down_seq = self.down_event = self.comm_alert = None
        return alerts

    def _gnss_back(self, seq: int, t_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        if self.lost_alert is not None and self.lost_since is not None:
            alerts.append(Alert("gnssRestored", self.src, seq, t_ms, (seq,), {
                "since_ms": self.lost_since, "outage_ms": t_ms - self.lost_since},
                opened_seq=self.lost_alert, gps=self.src))
        self.lost_since = self.lost_seq = self.lost_alert = None
        return alerts

    # -- timers ------------------------------------------------------------------------------

    def due_ms(self, params: RuleParams, resumed_ms: int) -> int | None:
        """The record time at which ``tick`` may next raise something (None: nothing pending)."""
        dues = []
        if self.lost_since is not None and self.lost_alert is None:
            dues.append(max(self.lost_since, resumed_ms) + params.gnss_lost_ms)
        if self.comm_alert is None:
            if self.down_since is not None:
                dues.append(max(self.down_since, resumed_ms) + params.comm_loss_ms)
            elif (self.watch_silence and self.seen_ms is not None
                  and self.lost_since is None):
                dues.append(max(self.seen_ms, resumed_ms) + params.comm_loss_ms)
        return min(dues, default=None)

    def tick(self, now_ms: int, seq: int, params: RuleParams, resumed_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        if (self.lost_since is not None and self.lost_alert is None and self.lost_seq is not None
                and now_ms - max(self.lost_since, resumed_ms) >= params.gnss_lost_ms):
            self.lost_alert = seq
            alerts.append(Alert("gnssLost", self.src, seq, now_ms, (self.lost_seq,), {
                "since_ms": self.lost_since, "outage_ms": now_ms - self.lost_since,
                "threshold_ms": params.gnss_lost_ms}, gps=self.src))
        if self.comm_alert is None:
            if self.down_since is not None and self.down_seq is not None:
                since, cause, evidence = self.down_since, self.down_event, self.down_seq
            elif self.watch_silence and self.seen_ms is not None and self.lost_since is None:
                since, cause, evidence = self.seen_ms, "silence", self.seen_seq
            else:
                return alerts
            if evidence is not None and now_ms - max(since, resumed_ms) >= params.comm_loss_ms:
                self.comm_alert = seq
                if self.down_since is None:
                    self.down_since, self.down_seq, self.down_event = since, evidence, cause
                alerts.append(Alert("commLoss", self.src, seq, now_ms, (evidence,), {
                    "cause": cause, "since_ms": since, "silent_ms": now_ms - since,
                    "threshold_ms": params.comm_loss_ms}))
        return alerts

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None and v is not False}

    @classmethod
    def from_dict(cls, src: str, d: Mapping[str, Any]) -> SensorHealth:
        h = cls(src)
        for k in _FIELDS:
            if k in d:
                setattr(h, k, d[k])
        return h
