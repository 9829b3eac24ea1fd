"""The customs receiver's MQTT side: take messages in groups, verify and store each group in
one transaction, acknowledge them to the gateway (signed) and to the broker, in that order.

Nothing may be lost across a receiver restart: the session is persistent (fixed client id, MQTT
5 clean start off, a long session expiry) and every subscription is QoS 1, so the broker queues
what gateways publish while the receiver is down. The broker is acknowledged (PUBACK, manual:
``sealtrail.mqtt.ManualAck``) only after the group's transaction committed; a receiver killed in
between gets the messages again, and the store's keys make the redelivery a counted duplicate.

Several receivers share the stream with an MQTT 5 shared subscription (``group``:
``$share/<group>/sealtrail/v1/+/alerts`` ...): the broker hands each message to one member.
They may store a gateway's messages out of order; the store orders by the gateway's seq.

After each commit, every gateway that had alerts in the group (new or again) is sent a signed
acknowledgement (``ledger_client.acks``) of how far customs now holds its alerts without a gap,
retained on ``sealtrail/v1/<gw>/acks``: the gateway keeps alerts pending until then.

Store and trust work runs on one worker thread, so a slow ledger node or database never stalls
the MQTT keepalive. A store that is down makes the group wait (retried with backoff, messages
unacknowledged); a broker that goes away is reconnected with backoff, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from customs.receive import SUBSCRIPTIONS, Outcome, Receiver, outcomes
from customs.store import Part, StoreUnavailable, WriteResult
from customs.webhook import WebhookForwarder
from ledger_client.acks import make_ack
from sealtrail.backoff import Backoff
from sealtrail.mqtt import ManualAck, MqttSettings, take_queued
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps a receiver's queue while it is away (MQTT 5 session expiry)."""
MAX_GROUP = 500
CHANGES_KEPT_MS = 24 * 3600 * 1000


class Watcher:
    """Runs until cancelled or ``stop`` is set; ``on_outcome`` sees every outcome (display)."""

    def __init__(self, settings: MqttSettings, receiver: Receiver, *,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 webhook: WebhookForwarder | None = None, recheck_s: float = 60.0,
                 group: str | None = None, service_key: Ed25519PrivateKey | None = None,
                 max_group: int = MAX_GROUP):
        self.settings = settings
        self.receiver = receiver
        self.on_outcome = on_outcome
        self.webhook = webhook
        self.recheck_s = recheck_s
        self.service_key = service_key
        self.max_group = max_group
        self.topics = tuple(f"$share/{group}/{t}" if group else t for t in SUBSCRIPTIONS)
        self.connected = asyncio.Event()
        self.connections = 0
        self.disconnects = 0
        self.groups = 0
        self.acks_sent = 0
        self.store_waits = 0
        self._changed = asyncio.Condition()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="customs-store")
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="customs-checks")
        self._ratelog = RateLimitedLog(log)

    @property
    def name(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        tasks = [asyncio.create_task(self._mqtt(), name="customs-mqtt"),
                 asyncio.create_task(self._housekeeping(), name="customs-recheck")]
        if self.webhook is not None:
            tasks.append(asyncio.create_task(self.webhook.run(), name="customs-webhook"))
        try:
            if stop is None:
                await asyncio.gather(*tasks)
            else:
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                for task in tasks:  # a task that ended with an error re-raises it here
                    if task.done():
                        task.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._executor.shutdown(wait=True)
            self._checker.shutdown(wait=True)
            self.receiver.close()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Return once ``predicate()`` holds, re-tested after each stored group."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_EXPIRY_S
        connect.ReceiveMaximum = 65535  # what bounds in-flight is the broker's setting
        return aiomqtt.Client(s.host, s.port, identifier=s.client_id,
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                              properties=connect, username=s.username, password=s.password,
                              tls_context=s.tls, keepalive=s.keepalive_s)

    async def _mqtt(self) -> None:
        s = self.settings
        backoff = Backoff(*s.backoff_s)
        while True:
            client = self._client()
            acker = ManualAck(client)
            try:
                async with client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    backoff.reset()
                    self.connections += 1
                    self.connected.set()
                    log.info("connected to %s as %s; subscribed to %s", self.name, s.client_id,
                             ", ".join(self.topics))
                    await self._notify()
                    await self._consume(client, acker)
            except aiomqtt.MqttError as exc:
                self.disconnects += 1
                delay = backoff.next()
                self._ratelog.warning("broker down", "broker %s: %s; reconnecting in %.1fs",
                                      self.name, exc, delay)
            else:
                delay = backoff.next()
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)

    async def _consume(self, client: aiomqtt.Client, acker: ManualAck) -> None:
        """Two stages: group N+1 is checked (signatures verified, on the checks thread) while
        group N is written (on the store thread). Groups commit in arrival order, so the
        broker's acknowledgements go out in order too."""
        loop = asyncio.get_running_loop()
        messages = client.messages
        writing: asyncio.Task[None] | None = None
        waiting: asyncio.Future[aiomqtt.Message] | None = None
        try:
            while True:
                waiting = asyncio.ensure_future(anext(messages))
                if writing is not None:  # a commit that fails must not wait for more traffic
                    await asyncio.wait({waiting, writing}, return_when=asyncio.FIRST_COMPLETED)
                    if writing.done():
                        writing.result()
                first = await waiting
                group = [first, *take_queued(client, self.max_group - 1)]
                items = [(m.topic.value, m.payload if isinstance(m.payload, bytes) else b"")
                         for m in group]
                checks = loop.run_in_executor(self._checker, self.receiver.check_batch, items)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._settle(client, acker, group, items, checks))
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            if writing is not None and not writing.done():
                with contextlib.suppress(aiomqtt.MqttError):  # commit; acks may find no link
                    await asyncio.shield(writing)

    async def _settle(self, client: aiomqtt.Client, acker: ManualAck,
                      group: list[aiomqtt.Message], items: list[tuple[str, bytes]],
                      checks: asyncio.Future[list[Part]]) -> None:
        result = await self._store(items, checks)
        await self._acknowledge(client, result)
        for message in group:
            acker.ack(message.mid, message.qos, acker.generation)
        self.groups += 1
        self._report(outcomes(result))
        await self._notify()

    async def _store(self, items: list[tuple[str, bytes]],
                     checks: asyncio.Future[list[Part]]) -> WriteResult:
        """The group's transaction, retried while the store is unavailable (the MQTT
        connection stays up meanwhile, so nothing is redelivered to another receiver)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self.settings.backoff_s)
        while True:
            try:
                parts = await checks
                return await loop.run_in_executor(self._executor, self.receiver.write_batch,
                                                  items, parts)
            except StoreUnavailable as exc:
                self.store_waits += 1
                delay = backoff.next()
                self._ratelog.warning("store down", "store unavailable: %s; %d message(s) "
                                      "held, retrying in %.1fs", exc, len(items), delay)
                await asyncio.sleep(delay)
                checks = loop.run_in_executor(self._checker, self.receiver.check_batch, items)

    async def _acknowledge(self, client: aiomqtt.Client, result: WriteResult) -> None:
        if self.service_key is None or not result.frontiers:
            return
        now = time.time_ns() // 1_000_000
        await asyncio.gather(*(
            client.publish(f"sealtrail/v1/{gw}/acks", make_ack(self.service_key, gw, seq, now),
                           qos=1, retain=True)
            for gw, seq in sorted(result.frontiers.items())))
        self.acks_sent += len(result.frontiers)

    def _report(self, found: list[Outcome]) -> None:
        if self.webhook is not None and any(o.kind == "alert" for o in found):
            self.webhook.wake()
        if self.on_outcome is not None:
            for outcome in found:
                self.on_outcome(outcome)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _housekeeping(self) -> None:
        """At start and every ``recheck_s``: re-verify quarantined messages whose reason may
        have passed (ledger back up, gateway registered since), forget old feed entries."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                found = await loop.run_in_executor(self._executor, self.receiver.recheck)
                await loop.run_in_executor(
                    self._executor, self.receiver.store.prune_changes,
                    time.time_ns() // 1_000_000 - CHANGES_KEPT_MS)
            except StoreUnavailable as exc:
                self._ratelog.warning("store down", "store unavailable: %s", exc)
                found = []
            if found:
                log.info("re-verified %d quarantined message(s)", len(found))
                self._report(found)
                await self._notify()
            await asyncio.sleep(self.recheck_s)
