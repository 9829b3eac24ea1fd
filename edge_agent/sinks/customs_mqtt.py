"""Customs sink over MQTT: signed alerts first, then the bulk uplink, from the journal.

One TLS connection per gateway (MQTT 5, user name = gateway id) publishes, all QoS 1:
- ``sealtrail/v1/<gw>/alerts``: each alert's signed bytes, exactly as journaled;
- ``sealtrail/v1/<gw>/readings``: JSON Lines of signed non-alert records, in seq order;
- ``sealtrail/v1/<gw>/anchors``: a receipt per anchored batch;
- ``sealtrail/v1/<gw>/status``: retained ``online`` on connect and when the alert backlog
  changes; the last will is the retained ``offline`` (its ``t_ms``/``head_seq`` are from when
  that connection was made: the broker sends it without asking us).
It optionally subscribes to ``sealtrail/v1/<gw>/plans`` and hands each new payload to
``on_plan``.

Delivery is at least once. Each stream has its own journal cursor (``customs.alerts``,
``customs.readings``, ``customs.anchors``) that moves only past messages the broker has
acknowledged, so a crash, a dropped link or a broker restart means re-sending from the
cursor; the receiver drops repeats by ``alert_id``, which is stable. Ordering: the next message
is always an alert if one is waiting, and a reading (or an anchor receipt) with seq s goes out
only once every alert below s is acknowledged, so bulk uplink never delays or overtakes an alert.

Pacing after an outage: at most ``window`` messages await their PUBACK at once, and a token
bucket holds the message rate to ``max_rate`` once the ``burst`` allowance is spent, so live
traffic goes out at once and a backlog drains steadily instead of flooding the link.

The PUBACK's reason code is checked (``mqtt_acks``): a broker that refuses a publish (ACL)
still acknowledges it, and a refusal must end the connection and retry from the cursor, never
count as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from edge_agent.journal import Batch, Journal, Stored
from edge_agent.sinks.mqtt_acks import AckedPublisher, PublishRefused
from edge_agent.sinks.pacing import Backoff, Progress, TokenBucket
from edge_agent.tail import JournalTail
from sealtrail.mqtt import MqttSettings
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
ALERTS, READINGS, ANCHORS = "alerts", "readings", "anchors"
CURSORS = {ALERTS: "customs.alerts", READINGS: "customs.readings", ANCHORS: "customs.anchors"}
REFILL = 256  # alerts read from the journal at a time
STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
"""paho leaves Nagle on: an alert published while an earlier packet is unacknowledged would
wait for the broker's delayed ACK (40 ms on Linux)."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    window: int = 16  # messages awaiting their PUBACK at once (below the broker's
    # max_inflight_messages, 20 in deploy/mosquitto: status messages come on top)
    max_rate: float = 200.0  # messages/s once the burst allowance is spent (catching up)
    burst: int = 100
    uplink_readings: bool = True
    uplink_anchors: bool = True
    readings_per_message: int = 200
    readings_linger_s: float = 1.0  # live readings wait up to this long to fill a message
    status_s: float = 60.0  # status republished at least this often
    housekeeping_s: float = 0.5  # cursor flushes, anchor lookups, status changes
    ack_timeout_s: float = 30.0  # a PUBACK not back by then: the link is dead, reconnect

    def __post_init__(self) -> None:
        if self.window < 1 or self.burst < 1 or self.readings_per_message < 1:
            raise ValueError("window, burst and readings_per_message must be >= 1")
        if min(self.max_rate, self.status_s, self.housekeeping_s, self.ack_timeout_s) <= 0:
            raise ValueError("max_rate, status_s, housekeeping_s, ack_timeout_s must be > 0")
        if self.readings_linger_s < 0:
            raise ValueError("readings_linger_s must be >= 0")


@dataclass(frozen=True, slots=True)
class _Item:
    lane: str
    upto: int  # journal seq (alerts, readings) or batch_seq (anchors) this message covers
    topic: str
    payload: bytes
    records: int = 1


class CustomsMqttSink:
    settles = True  # shutdown waits (bounded) for alerts to reach the broker; not for uplink

    def __init__(self, journal: Journal, settings: MqttSettings, *,
                 policy: DeliveryPolicy | None = None,
                 on_plan: Callable[[bytes], None] | None = None,
                 client_id: str | None = None, name: str = "customs-mqtt"):
        self.journal = journal
        self.settings = settings
        self.policy = policy or DeliveryPolicy()
        self.on_plan = on_plan
        self.gateway_id = journal.gateway_id
        # not settings.client_id: the agent's MQTT seal source may share these settings, and
        # two connections with one client id take turns kicking each other off the broker
        self.client_id = client_id or f"{self.gateway_id}-customs"
        self.name = name
        self.topics = {leaf: f"sealtrail/v1/{self.gateway_id}/{leaf}"
                       for leaf in (ALERTS, READINGS, ANCHORS, "status", "plans")}
        self.counts: Counter[str] = Counter()
        self.max_in_flight = 0
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()  # set at every lost or refused connection (tests, metrics)
        self.last_error: str | None = None
        self._saved = {CURSORS[lane]: journal.cursor(CURSORS[lane]) for lane in CURSORS}
        self._alerts = Progress(self._saved[CURSORS[ALERTS]])
        self._alert_scanned = self._alerts.done
        self._alert_queue: deque[Stored] = deque()
        self._readings = Progress(self._saved[CURSORS[READINGS]])
        self._anchors = Progress(self._saved[CURSORS[ANCHORS]])
        self._anchor_check_at = 0.0
        self._readings_since: float | None = None
        self._connected_at: float | None = None
        self._in_flight = 0
        self._bucket = TokenBucket(self.policy.max_rate, self.policy.burst)
        self._wake = asyncio.Event()
        self._advance = asyncio.Event()
        self._tail = JournalTail(journal.head()[0])
        self._last_plan: bytes | None = None
        self._ratelog = RateLimitedLog(log)
        self.position = self._alerts.done

    # -- what has been delivered -----------------------------------------------------------

    @property
    def guard_cursors(self) -> list[str]:
        """Cursors of streams that read every record (what journal retention must respect)."""
        return [CURSORS[READINGS]] if self.policy.uplink_readings else []

    def delivered(self) -> dict[str, int]:
        """Acknowledged positions: alerts and readings as seqs (every alert / reading at or
        below is acknowledged), anchors as the last batch_seq whose receipt went out."""
        return {ALERTS: self._alerts_clear(), READINGS: self._readings.done,
                ANCHORS: self._anchors.done}

    async def wait_delivered(self, seq: int, *, readings: bool = False) -> None:
        """Wait until every alert (and, with `readings`, every record) up to `seq` is out."""
        while self._alerts_clear() < seq or (readings and self._readings.done < seq):
            await self._advance.wait()

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

    def flush_cursors(self) -> None:
        """Store acknowledged positions (coalesced: each store is an fsync on an SD card)."""
        now = self.delivered()
        values = {CURSORS[ALERTS]: now[ALERTS]}
        if self.policy.uplink_readings:
            values[CURSORS[READINGS]] = now[READINGS]
        if self.policy.uplink_anchors:
            values[CURSORS[ANCHORS]] = now[ANCHORS]
        changed = {k: v for k, v in values.items() if v > self._saved[k]}
        if changed:
            self.journal.commit(cursors=changed)
            self._saved.update(changed)

    # -- choosing the next message ---------------------------------------------------------

    def _reset_lanes(self) -> None:
        """A new connection: whatever was not acknowledged is sent again, oldest first."""
        clear = self._alerts_clear()
        self._alert_queue.clear()
        self._alerts = Progress(clear)
        self._alert_scanned = clear
        self._readings.reset()
        self._anchors.reset()
        self._in_flight = 0
        self._anchor_check_at = 0.0
        self._readings_since = None

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
        if self._alert_queue:
            return True
        if self._readings_ready():
            return True
        return self.policy.uplink_anchors and time.monotonic() >= self._anchor_check_at

    def _next_item(self) -> _Item | None:
        if self._alert_queue:
            alert = self._alert_queue.popleft()
            self._alerts.issue(alert.seq)
            return _Item(ALERTS, alert.seq, self.topics[ALERTS], alert.signed)
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

    def _next_readings(self, limit: int) -> _Item | None:
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
        return _Item(READINGS, upto, self.topics[READINGS], b"\n".join(lines), len(lines))

    def _next_anchor(self) -> _Item | None:
        batch = self.journal.batch(self._anchors.issued + 1)
        if batch is None or batch.status != "anchored" or batch.last_seq > self._alerts_clear():
            self._anchor_check_at = time.monotonic() + self.policy.housekeeping_s * 4
            return None
        self._anchors.issue(batch.batch_seq)
        return _Item(ANCHORS, batch.batch_seq, self.topics[ANCHORS], anchor_receipt(batch))

    # -- one connection --------------------------------------------------------------------

    async def _pump(self, acks: AckedPublisher, failed: asyncio.Future[None]) -> None:
        sends: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                self._scan_alerts()
                if self._in_flight >= self.policy.window or not self._sendable():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger_left()):
                            await self._wake.wait()
                    continue
                delay = self._bucket.delay()
                if delay > 0:
                    self.counts["paced"] += 1
                    await asyncio.sleep(delay)
                    self._scan_alerts()  # an alert that came in meanwhile goes first
                item = self._next_item()
                if item is None:
                    continue
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                task = asyncio.create_task(self._send(acks, item, failed))
                sends.add(task)
                task.add_done_callback(sends.discard)
        finally:
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)

    async def _send(self, acks: AckedPublisher, item: _Item, failed: asyncio.Future[None]) -> None:
        try:
            await acks.publish(item.topic, item.payload, timeout=self.policy.ack_timeout_s)
        except (aiomqtt.MqttError, PublishRefused, TimeoutError) as exc:
            if not failed.done():
                failed.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            self._wake.set()
        lane = {ALERTS: self._alerts, READINGS: self._readings, ANCHORS: self._anchors}
        if lane[item.lane].ack(item.upto) or item.lane == ALERTS:
            self._advanced()
        self.counts[f"{item.lane}_sent"] += 1
        self.counts[f"{item.lane}_records"] += item.records

    async def _read(self, client: aiomqtt.Client) -> None:
        """Plans for this gateway; also how a dropped connection is noticed (MqttError)."""
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if self.on_plan is None or not payload:
                continue
            digest = hashlib.sha256(payload).digest()
            if digest == self._last_plan:
                continue  # the retained plan again, after a reconnect
            try:
                self.on_plan(payload)
            except Exception:
                self.counts["plans_failed"] += 1
                log.exception("%s: the plan handler failed on %d bytes from %s", self.name,
                              len(payload), message.topic.value)
            else:
                self.counts["plans"] += 1
                self._last_plan = digest

    async def _housekeeping(self, acks: AckedPublisher) -> None:
        status_at = time.monotonic() + self.policy.status_s
        pending = self._alerts_pending()
        while True:
            await asyncio.sleep(self.policy.housekeeping_s)
            self.flush_cursors()
            now = time.monotonic()
            if self.policy.uplink_anchors and now >= self._anchor_check_at:
                self._wake.set()
            if now >= status_at or self._alerts_pending() != pending:
                pending = self._alerts_pending()
                await acks.publish(self.topics["status"], self._status("online"), retain=True,
                                   timeout=self.policy.ack_timeout_s)
                status_at = now + self.policy.status_s

    def _alerts_pending(self) -> int:
        return self.journal.count_alerts_after(self._alerts_clear())

    def _status(self, state: str) -> bytes:
        return json.dumps({"gw": self.gateway_id, "state": state,
                           "t_ms": time.time_ns() // 1_000_000, "head_seq": self._tail.head,
                           "alerts_pending": self._alerts_pending()},
                          separators=(",", ":"), sort_keys=True).encode()

    async def _session(self) -> None:
        s = self.settings
        client = aiomqtt.Client(
            s.host, s.port, identifier=self.client_id, username=s.username,
            password=s.password, tls_context=s.tls, keepalive=s.keepalive_s,
            protocol=aiomqtt.ProtocolVersion.V5, timeout=self.policy.ack_timeout_s,
            max_inflight_messages=self.policy.window + 4,
            socket_options=[NO_DELAY],
            will=aiomqtt.Will(self.topics["status"], self._status("offline"), qos=1,
                              retain=True))
        acks = AckedPublisher(client)
        async with client:
            self.counts["connects"] += 1
            if self.on_plan is not None:
                granted = await client.subscribe(self.topics["plans"], qos=1)
                if any(getattr(code, "is_failure", False) for code in granted):
                    log.error("%s: the broker refused our subscription to %s: %s", self.name,
                              self.topics["plans"], granted)
            await acks.publish(self.topics["status"], self._status("online"), retain=True,
                               timeout=self.policy.ack_timeout_s)
            self._reset_lanes()
            self.connected.set()
            self._connected_at = time.monotonic()
            log.info("%s: connected to %s:%d as %s", self.name, s.host, s.port, s.username)
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            tasks = [asyncio.create_task(self._read(client)),
                     asyncio.create_task(self._pump(acks, failed)),
                     asyncio.create_task(self._housekeeping(acks))]
            try:
                done, _ = await asyncio.wait([*tasks, failed],
                                             return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()  # raises what ended the connection
                raise aiomqtt.MqttError("connection tasks ended")  # pragma: no cover
            except asyncio.CancelledError:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(acks.publish(
                        self.topics["status"], self._status("offline"), retain=True,
                        timeout=2.0), 2.0)
                raise
            finally:
                self.connected.clear()
                if failed.done() and not failed.cancelled():
                    failed.exception()  # retrieved: another task may have ended the session
                failed.cancel()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self.flush_cursors()

    async def _watch(self, tail: JournalTail) -> None:
        while True:
            await tail.wait_beyond(tail.head)
            self._wake.set()

    def _next_delay(self, backoff: Backoff) -> float:
        """A link that held for a while starts over at the short delay; one that drops at
        once (a flapping modem, a broker refusing us) backs off like one that cannot connect."""
        if self._connected_at is not None and time.monotonic() - self._connected_at >= STABLE_S:
            backoff.reset()
        return backoff.next()

    async def run(self, tail: JournalTail) -> None:
        """Deliver forever; a broker that is down, drops us or refuses us is retried with
        capped, jittered backoff from the acknowledged positions."""
        self._tail = tail
        watcher = asyncio.create_task(self._watch(tail))
        backoff = Backoff(*self.settings.backoff_s)
        try:
            while True:
                self._connected_at = None
                try:
                    await self._session()
                except PublishRefused as exc:
                    self.counts["refused"] += 1
                    self.last_error = str(exc)
                    self.failed.set()
                    delay = self._next_delay(backoff)
                    self._ratelog.log(logging.ERROR, f"{self.name} refused",
                                      "%s: %s; the MQTT user name must be the gateway id (%s) "
                                      "and the broker ACL must let it write there; nothing is "
                                      "skipped, retrying in %.1fs", self.name, exc,
                                      self.gateway_id, delay)
                except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                    self.counts["disconnects"] += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.failed.set()
                    delay = self._next_delay(backoff)
                    self._ratelog.warning(f"{self.name} down", "%s: %s: %s; reconnecting in "
                                          "%.1fs", self.name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.flush_cursors()


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
