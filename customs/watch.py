"""The customs receiver's MQTT side: subscribe, hand each message to the Receiver, acknowledge.

Nothing may be lost across a receiver restart, so the session is persistent (fixed client id,
``clean_session=False``) and every subscription is QoS 1: while the receiver is down the broker
queues what gateways publish (Mosquitto: up to ``max_queued_messages`` per client, so the
broker's config must allow for the longest outage customs plans for). Acknowledgement is manual
and comes only after the message's database transaction has committed: a receiver killed between
receiving and storing gets the message again from the broker. paho would acknowledge on receipt;
aiomqtt does not expose manual acknowledgement, so its paho client is used for that one call, as
in ``sealtrail.mqtt``.

Store and trust work (SQLite, a JSON-RPC call to the ledger on a cache miss) runs on one worker
thread, so a slow ledger node never stalls the MQTT keepalive, and messages are still handled one
at a time, in order. A broker that goes away is retried with exponential backoff, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiomqtt
import paho.mqtt.client as paho

from customs.receive import SUBSCRIPTIONS, Outcome, Receiver
from customs.webhook import WebhookForwarder
from sealtrail.mqtt import MqttSettings
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)



class Watcher:
    """Runs until cancelled or ``stop`` is set; ``on_outcome`` sees every outcome (display)."""

    def __init__(self, settings: MqttSettings, receiver: Receiver, *,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 webhook: WebhookForwarder | None = None, recheck_s: float = 60.0):
        self.settings = settings
        self.receiver = receiver
        self.on_outcome = on_outcome
        self.webhook = webhook
        self.recheck_s = recheck_s
        self.connected = asyncio.Event()
        self.connections = 0
        self.disconnects = 0
        self._changed = asyncio.Condition()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="customs-receiver")
        self._ratelog = RateLimitedLog(log)

    @property
    def name(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        tasks = [asyncio.create_task(self._mqtt(), name="customs-mqtt"),
                 asyncio.create_task(self._recheck(), name="customs-recheck")]
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

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Return once ``predicate()`` holds, re-tested after each handled message."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _mqtt(self) -> None:
        s = self.settings
        delay = s.backoff_s[0]
        while True:
            client = aiomqtt.Client(s.host, s.port, identifier=s.client_id, clean_session=False,
                                    username=s.username, password=s.password,
                                    tls_context=s.tls, keepalive=s.keepalive_s)
            acker: paho.Client = client._client  # private: see the module docstring
            acker.manual_ack_set(True)
            try:
                async with client:
                    for topic in SUBSCRIPTIONS:
                        await client.subscribe(topic, qos=1)
                    delay = s.backoff_s[0]
                    self.connections += 1
                    self.connected.set()
                    log.info("connected to %s as %s; subscribed to %s", self.name, s.client_id,
                             ", ".join(SUBSCRIPTIONS))
                    await self._notify()
                    async for message in client.messages:
                        await self._handle(message)
                        if message.qos > 0:
                            acker.ack(message.mid, message.qos)
                        await self._notify()
            except aiomqtt.MqttError as exc:
                self.disconnects += 1
                self._ratelog.warning("broker down", "broker %s: %s; reconnecting in %.1fs",
                                      self.name, exc, delay)
            finally:
                self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, s.backoff_s[1])

    async def _handle(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        loop = asyncio.get_running_loop()
        outcomes = await loop.run_in_executor(self._executor, self.receiver.handle,
                                              message.topic.value, payload)
        self._report(outcomes)

    def _report(self, outcomes: list[Outcome]) -> None:
        if self.webhook is not None and any(o.kind == "alert" for o in outcomes):
            self.webhook.wake()
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(outcome)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _recheck(self) -> None:
        """Re-verify quarantined messages whose reason may have passed (ledger back up, gateway
        registered since), at start and every ``recheck_s``."""
        loop = asyncio.get_running_loop()
        while True:
            outcomes = await loop.run_in_executor(self._executor, self.receiver.recheck)
            if outcomes:
                log.info("re-verified %d quarantined message(s)", len(outcomes))
                self._report(outcomes)
                await self._notify()
            await asyncio.sleep(self.recheck_s)
