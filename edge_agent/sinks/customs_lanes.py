"""What the customs sink sends next, and how far delivery has got: the sink's lanes.

Four lanes share one connection: alerts (from the journal's alert index), alerts published
again (customs has not acknowledged them: customs_acks.py), readings (JSON Lines of the
records between alerts) and anchor receipts. The rules that keep them honest:
- an alert goes first whenever one is waiting;
- a reading with seq s, or the receipt of a batch ending at s, goes out only once every alert
  below s has reached the broker, so bulk uplink never delays or overtakes an alert;
- each lane's position (`Progress`) moves only over a contiguous prefix of acknowledged
  messages, and that is what its journal cursor stores (for alerts with customs'
  acknowledgements, the acknowledgement instead).
`Lanes` is the part of `CustomsMqttSink` that decides this without touching the network, so
it is tested on a real journal file with no broker (tests/test_customs_delivery_units.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from dataclasses import dataclass

from edge_agent.journal import Batch, Journal, JournalUnwritable, Stored, off_loop
from edge_agent.sinks.customs_acks import AckTracker
from edge_agent.sinks.pacing import Progress
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail
from sealtrail.ratelog import RateLimitedLog

ALERTS, READINGS, ANCHORS, RESEND = "alerts", "readings", "anchors", "resend"
CURSORS = {ALERTS: "customs.alerts", READINGS: "customs.readings", ANCHORS: "customs.anchors"}
REFILL = 256  # alerts read from the journal at a time


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    window: int = 16  # messages awaiting their PUBACK at once (below the broker's
    # max_inflight_messages, 20 in deploy/mosquitto: status messages come on top)
    max_rate: float = 200.0  # messages/s once the burst allowance is spent (catching up)
    burst: int = 100
    uplink_readings: bool = True
    uplink_anchors: bool = True
    readings_per_message: int = 200
    readings_linger_s: float = 2.0  # live readings wait up to this long to fill a message
    status_s: float = 60.0  # status republished at least this often
    housekeeping_s: float = 1.0  # anchor lookups, status changes, resends (a wake-up each)
    cursor_flush_s: float = 10.0  # delivered positions stored at most this often (an fsync)
    ack_timeout_s: float = 30.0  # a PUBACK not back by then: the link is dead, reconnect

    def __post_init__(self) -> None:
        if self.window < 1 or self.burst < 1 or self.readings_per_message < 1:
            raise ValueError("window, burst and readings_per_message must be >= 1")
        if min(self.max_rate, self.status_s, self.housekeeping_s, self.ack_timeout_s,
               self.cursor_flush_s) <= 0:
            raise ValueError("max_rate, status_s, housekeeping_s, cursor_flush_s, "
                             "ack_timeout_s must be > 0")
        if self.readings_linger_s < 0:
            raise ValueError("readings_linger_s must be >= 0")


@dataclass(frozen=True, slots=True)
class Message:
    lane: str
    upto: int  # journal seq (alerts, readings) or batch_seq (anchors) this message covers
    topic: str
    payload: bytes
    records: int = 1


class Lanes:
    """The delivery state of `CustomsMqttSink` (which initialises these attributes)."""

    journal: Journal
    policy: DeliveryPolicy
    acks: AckTracker | None
    name: str
    topics: dict[str, str]
    counts: Counter[str]
    taken: int
    connected: asyncio.Event
    _in_flight: int
    position: int
    _saved: dict[str, int]
    _alerts: Progress
    _alert_scanned: int
    _alert_queue: deque[Stored]
    _resend_queue: deque[Stored]
    _readings: Progress
    _anchors: Progress
    _anchor_check_at: float
    _readings_since: float | None
    _flushed_at: float
    _advance: asyncio.Event
    _tail: JournalTail
    _ratelog: RateLimitedLog

    # -- what has been delivered -----------------------------------------------------------

    @property
    def guard_cursors(self) -> list[str]:
        """Cursors of streams that read every record (what journal retention must respect)."""
        return [CURSORS[READINGS]] if self.policy.uplink_readings else []

    def delivered(self) -> dict[str, int]:
        """Acknowledged positions: alerts and readings as seqs (every alert / reading at or
        below is acknowledged: by customs for alerts with ``ack_keys``, else by the broker),
        anchors as the last batch_seq whose receipt went out."""
        return {ALERTS: self._alerts_delivered(), READINGS: self._readings.done,
                ANCHORS: self._anchors.done}

    def _alerts_delivered(self) -> int:
        if self.acks is None:
            return self._alerts_clear()
        return self.acks.delivered_through(max(self._tail.head, self._alerts_clear()))

    async def wait_sent(self, seq: int) -> None:
        """Wait until every alert up to `seq` has reached the broker (its PUBACK): published,
        which with customs' acknowledgements is not yet delivered."""
        while self._alerts_clear() < seq:
            await self._advance.wait()

    async def wait_delivered(self, seq: int, *, readings: bool = False) -> None:
        """Wait until every alert (and, with `readings`, every record) up to `seq` is
        delivered (see `delivered`)."""
        while self._alerts_delivered() < seq or (readings and self._readings.done < seq):
            await self._advance.wait()

    def stats(self) -> ComponentStats:
        """Records published and records the broker took (alerts, readings, anchor receipts;
        resends are events, not counted again), messages awaiting their PUBACK; customs'
        acknowledgements that did not verify are dropped; sends per lane, reconnects,
        refusals, resends and plans are events."""
        acks = dict(self.acks.counts) if self.acks is not None else {}
        dropped = {"acks_bad": acks.pop("acks_bad", 0)} if self.acks is not None else {}
        written = sum(self.counts[f"{lane}_records"] for lane in (ALERTS, READINGS, ANCHORS))
        return ComponentStats(added=self.taken, written=written, dropped=dropped,
                              queue_depth=self._in_flight, events={**self.counts, **acks},
                              connected=self.connected.is_set())

    def alerts_pending(self) -> int:
        """Alerts not delivered yet (see `delivered`): what the status and metrics report."""
        if self.acks is not None:
            return self.acks.unacked()[0]
        return self.journal.count_alerts_after(self._alerts_clear())

    def _alerts_clear(self) -> int:
        """The seq below which every alert is acknowledged: what readings may not pass."""
        clear = self._alert_scanned
        first = self._alerts.first_open()
        if first is not None:
            clear = min(clear, first - 1)
        if self._alert_queue:
            clear = min(clear, self._alert_queue[0].seq - 1)
        return clear

    def _advanced(self) -> None:
        self.position = self._alerts_clear()
        event, self._advance = self._advance, asyncio.Event()
        event.set()

    async def flush_cursors(self) -> None:
        """Store acknowledged positions (coalesced: each store is an fsync on an SD card).
        The alert cursor is customs' acknowledgement when there is one, and may go back (a
        customs store that lost data); a journal that cannot be written keeps them for later."""
        now = self.delivered()
        values = {CURSORS[ALERTS]: self.acks.acked if self.acks is not None else now[ALERTS]}
        if self.policy.uplink_readings:
            values[CURSORS[READINGS]] = now[READINGS]
        if self.policy.uplink_anchors:
            values[CURSORS[ANCHORS]] = now[ANCHORS]
        changed = {k: v for k, v in values.items() if v > self._saved[k]
                   or (k == CURSORS[ALERTS] and self.acks is not None and v != self._saved[k])}
        if changed:
            try:
                await off_loop(self.journal.commit, cursors=changed)
            except JournalUnwritable as exc:
                self._ratelog.warning(f"{self.name} cursors", "%s: delivered positions not "
                                      "stored: %s", self.name, exc)
                return
            self._saved.update(changed)
        self._flushed_at = time.monotonic()

    # -- choosing the next message ---------------------------------------------------------

    def _reset_lanes(self) -> None:
        """A new connection: whatever the broker did not acknowledge is sent again, oldest
        first (and what it took but customs did not acknowledge, after `AckTracker`'s delay)."""
        self._rewind(self._alerts_clear())
        self._resend_queue.clear()
        if self.acks is not None:
            self.acks.connected()
        self._readings.reset()
        self._anchors.reset()
        self._in_flight = 0
        self._anchor_check_at = 0.0
        self._readings_since = None

    def _rewind(self, seq: int) -> None:
        """Publish alerts again from after `seq` (a new connection; customs lost data)."""
        self._alert_queue.clear()
        self._alerts = Progress(seq)
        self._alert_scanned = seq
        self._advanced()

    def _scan_alerts(self) -> None:
        """Read new alerts into the queue; finding none moves the clear position to the head."""
        if self._alert_queue or self._tail.head <= self._alert_scanned:
            return
        head = self._tail.head  # read first: every alert at or below it is already committed
        found = self.journal.alerts_after(self._alert_scanned, limit=REFILL)
        self._alert_queue.extend(found)
        last = found[-1].seq if found else 0
        self._alert_scanned = last if len(found) == REFILL else max(head, last)
        self._advanced()

    def _sendable(self) -> bool:
        if self._alert_queue or self._resend_queue:
            return True
        if self._readings_ready():
            return True
        return self.policy.uplink_anchors and time.monotonic() >= self._anchor_check_at

    def _next_item(self) -> Message | None:
        if self._alert_queue:
            alert = self._alert_queue.popleft()
            self._alerts.issue(alert.seq)
            return Message(ALERTS, alert.seq, self.topics[ALERTS], alert.signed)
        if self._resend_queue:
            alert = self._resend_queue.popleft()
            return Message(RESEND, alert.seq, self.topics[ALERTS], alert.signed)
        while self._readings_ready():
            item = self._next_readings(self._alerts_clear())
            if item is not None:
                return item
        if self.policy.uplink_anchors and time.monotonic() >= self._anchor_check_at:
            return self._next_anchor()
        return None

    def _readings_ready(self) -> bool:
        """Readings may go: a full message's worth, or some that waited `readings_linger_s`
        (one message a second instead of one per journal commit on a busy gateway)."""
        if not self.policy.uplink_readings:
            return False
        pending = self._alerts_clear() - self._readings.issued
        if pending <= 0:
            self._readings_since = None
            return False
        if pending >= self.policy.readings_per_message:
            return True
        now = time.monotonic()
        if self._readings_since is None:
            self._readings_since = now
        return now - self._readings_since >= self.policy.readings_linger_s

    def _linger_left(self) -> float | None:
        if self._readings_since is None:
            return None
        return max(0.0, self._readings_since + self.policy.readings_linger_s - time.monotonic())

    def _next_readings(self, limit: int) -> Message | None:
        self._readings_since = None
        start = self._readings.issued
        count = min(self.policy.readings_per_message, limit - start)
        records = [r for r in self.journal.read_after(start, count) if r.seq <= limit]
        upto = records[-1].seq if len(records) == count else limit  # a gap: pruned records
        self._readings.issue(upto)
        lines = [r.signed for r in records if r.kind != "alert"]
        if not lines:  # only alerts in this range: nothing to uplink
            if self._readings.ack(upto):
                self._advanced()
            return None
        return Message(READINGS, upto, self.topics[READINGS], b"\n".join(lines), len(lines))

    def _next_anchor(self) -> Message | None:
        batch = self.journal.batch(self._anchors.issued + 1)
        if batch is None or batch.status != "anchored" or batch.last_seq > self._alerts_clear():
            self._anchor_check_at = time.monotonic() + self.policy.housekeeping_s * 4
            return None
        self._anchors.issue(batch.batch_seq)
        return Message(ANCHORS, batch.batch_seq, self.topics[ANCHORS], anchor_receipt(batch))


def anchor_receipt(batch: Batch) -> bytes:
    """The ``anchors`` payload: where one batch's Merkle root sits on the ledger."""
    def hexed(value: bytes | None) -> str | None:
        return None if value is None else "0x" + value.hex()

    return json.dumps({
        "batch_seq": batch.batch_seq, "first_seq": batch.first_seq,
        "tree_size": batch.tree_size, "root": batch.root.hex(), "chain_id": batch.chain_id,
        "contract": batch.contract, "tx_hash": hexed(batch.tx_hash),
        "block_number": batch.block_number, "block_hash": hexed(batch.block_hash),
        "log_index": batch.log_index}, separators=(",", ":"), sort_keys=True).encode()
