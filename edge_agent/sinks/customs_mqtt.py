"""Customs sink over MQTT: signed alerts first, then the bulk uplink, from the journal.

One TLS connection per gateway (MQTT 5, user name = gateway id) publishes, all QoS 1:
- ``sealtrail/v1/<gw>/alerts``: each alert's signed bytes, exactly as journaled;
- ``sealtrail/v1/<gw>/readings``: JSON Lines of signed non-alert records, in seq order;
- ``sealtrail/v1/<gw>/anchors``: a receipt per anchored batch;
- ``sealtrail/v1/<gw>/status``: retained ``online`` on connect and when the alert backlog
  changes; the last will is the retained ``offline`` (its ``t_ms``/``head_seq`` are from when
  that connection was made: the broker sends it without asking us).
It optionally subscribes to ``sealtrail/v1/<gw>/plans`` and hands each new payload to
``on_plan``, and, given customs' keys (``ack_keys``), to ``sealtrail/v1/<gw>/acks``.

Delivery is at least once. With ``ack_keys`` an alert is delivered when customs says it is
stored (customs_acks.py): the ``customs.alerts`` cursor is customs' acknowledgement, alerts
the broker took but customs has not acknowledged are published again, and the status's
``alerts_pending`` counts what customs has not acknowledged. Without ``ack_keys`` (a customs
side that does not acknowledge) the broker's PUBACK counts, as for the other streams: their
cursors (``customs.readings``, ``customs.anchors``) move only past messages the broker has
acknowledged, so a crash, a dropped link or a broker restart means re-sending from the cursor;
the receiver drops repeats by ``alert_id``, which is stable. Ordering: the next message is
always an alert if one is waiting, and a reading (or an anchor receipt) with seq s goes out only
once every alert below s has reached the broker, so bulk uplink never delays or overtakes an
alert.

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
from collections.abc import Callable, Collection

import aiomqtt

from edge_agent.journal import Journal, Stored, off_loop
from edge_agent.sinks.customs_acks import AckPolicy, AckTracker
from edge_agent.sinks.customs_lanes import (
    ALERTS,
    ANCHORS,
    CURSORS,
    READINGS,
    RESEND,
    DeliveryPolicy,
    Lanes,
    Message,
    anchor_receipt,
)
from edge_agent.sinks.mqtt_acks import AckedPublisher, PublishRefused
from edge_agent.sinks.pacing import Progress, TokenBucket
from edge_agent.tail import JournalTail
from edge_agent.ticks import sleep_aligned
from sealtrail.backoff import Backoff
from sealtrail.mqtt import MqttSettings
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
__all__ = ["ALERTS", "ANCHORS", "READINGS", "CustomsMqttSink", "DeliveryPolicy",
           "anchor_receipt"]
STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
"""paho leaves Nagle on: an alert published while an earlier packet is unacknowledged would
wait for the broker's delayed ACK (40 ms on Linux)."""


class CustomsMqttSink(Lanes):
    settles = True  # shutdown waits (bounded) for alerts to reach the broker; not for uplink

    def __init__(self, journal: Journal, settings: MqttSettings, *,
                 policy: DeliveryPolicy | None = None,
                 on_plan: Callable[[bytes], None] | None = None,
                 client_id: str | None = None, name: str = "customs-mqtt",
                 ack_keys: Collection[bytes] | None = None, ack_policy: AckPolicy | None = None,
                 problems: Callable[[], list[str]] = list):
        self.journal = journal
        self.settings = settings
        self.policy = policy or DeliveryPolicy()
        self.on_plan = on_plan
        self.problems = problems  # conditions the status reports (the agent's diskFull)
        self.gateway_id = journal.gateway_id
        # not settings.client_id: the agent's MQTT seal source may share these settings, and
        # two connections with one client id take turns kicking each other off the broker
        self.client_id = client_id or f"{self.gateway_id}-customs"
        self.name = name
        self.topics = {leaf: f"sealtrail/v1/{self.gateway_id}/{leaf}"
                       for leaf in (ALERTS, READINGS, ANCHORS, "status", "plans", "acks")}
        self.counts: Counter[str] = Counter()
        self.taken = 0  # records published (again after a reconnect), for stats()
        self.max_in_flight = 0
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()  # set at every lost or refused connection (tests, metrics)
        self.ack_seen = asyncio.Event()  # set at every message on the acks topic (tests)
        self.last_error: str | None = None
        self._saved = {CURSORS[lane]: journal.cursor(CURSORS[lane]) for lane in CURSORS}
        self.acks = (AckTracker(journal, ack_keys, policy=ack_policy, head=lambda: self._tail.head)
                     if ack_keys is not None else None)
        self._alerts = Progress(self._saved[CURSORS[ALERTS]])
        self._alert_scanned = self._alerts.done
        self._alert_queue: deque[Stored] = deque()
        self._resend_queue: deque[Stored] = deque()
        self._flushed_at = time.monotonic()
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
                if item.lane != RESEND:
                    self.taken += item.records
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                task = asyncio.create_task(self._send(acks, item, failed))
                sends.add(task)
                task.add_done_callback(sends.discard)
        finally:
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)

    async def _send(self, acks: AckedPublisher, item: Message,
                    failed: asyncio.Future[None]) -> None:
        try:
            await acks.publish(item.topic, item.payload, timeout=self.policy.ack_timeout_s)
        except (aiomqtt.MqttError, PublishRefused, TimeoutError) as exc:
            if not failed.done():
                failed.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            self._wake.set()
        if item.lane in (ALERTS, RESEND) and self.acks is not None:
            self.acks.took(item.upto)
        lane = {ALERTS: self._alerts, READINGS: self._readings, ANCHORS: self._anchors}
        if item.lane == RESEND or lane[item.lane].ack(item.upto) or item.lane == ALERTS:
            self._advanced()
        self.counts[f"{item.lane}_sent"] += 1
        self.counts[f"{item.lane}_records"] += item.records

    async def _read(self, client: aiomqtt.Client) -> None:
        """Plans and acks for this gateway; also how a dropped connection is noticed."""
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if message.topic.value == self.topics["acks"]:
                self._on_ack(payload)
                continue
            if self.on_plan is None or not payload:
                continue
            digest = hashlib.sha256(payload).digest()
            if digest == self._last_plan:
                continue  # the retained plan again, after a reconnect
            try:
                await off_loop(self.on_plan, payload)  # it journals the plan: an fsync
            except Exception:
                self.counts["plans_failed"] += 1
                log.exception("%s: the plan handler failed on %d bytes from %s", self.name,
                              len(payload), message.topic.value)
            else:
                self.counts["plans"] += 1
                self._last_plan = digest

    def _on_ack(self, payload: bytes) -> None:
        assert self.acks is not None  # subscribed only with ack_keys
        outcome = self.acks.on_message(payload)
        self.ack_seen.set()
        if outcome == "rewound":
            self._rewind(self.acks.acked)
        elif outcome == "advanced":
            self._advanced()
            self._wake.set()  # the housekeeping's status shows the new pending count

    async def _housekeeping(self, acks: AckedPublisher) -> None:
        status_at = time.monotonic() + self.policy.status_s
        shown = (self.alerts_pending(), self.problems())
        while True:
            await sleep_aligned(self.policy.housekeeping_s)
            now = time.monotonic()
            if now - self._flushed_at >= self.policy.cursor_flush_s:
                await self.flush_cursors()
            if self.acks is not None:
                resend = self.acks.resend_due()
                if resend:
                    self._resend_queue.extend(resend)
                    self._wake.set()
            if self.policy.uplink_anchors and now >= self._anchor_check_at:
                self._wake.set()
            current = (self.alerts_pending(), self.problems())
            if now >= status_at or current != shown:
                shown = current
                await acks.publish(self.topics["status"], self._status("online"), retain=True,
                                   timeout=self.policy.ack_timeout_s)
                status_at = now + self.policy.status_s

    def _status(self, state: str) -> bytes:
        doc = {"gw": self.gateway_id, "state": state, "t_ms": time.time_ns() // 1_000_000,
               "head_seq": self._tail.head, "alerts_pending": self.alerts_pending()}
        problems = self.problems() if state == "online" else []
        if problems:
            doc["problems"] = problems
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

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
            wanted = ([self.topics["plans"]] if self.on_plan is not None else []) + \
                ([self.topics["acks"]] if self.acks is not None else [])
            for topic in wanted:
                granted = await client.subscribe(topic, qos=1)
                if any(getattr(code, "is_failure", False) for code in granted):
                    log.error("%s: the broker refused our subscription to %s: %s%s", self.name,
                              topic, granted, "; customs' acknowledgements cannot arrive, so "
                              "alerts will be sent again and again" if topic.endswith("/acks")
                              else "")
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
                await self.flush_cursors()

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
            await self.flush_cursors()
