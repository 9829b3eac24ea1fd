"""E-seal readings from MQTT sensor topics, acknowledged only once they are in the journal.

Subscribes (QoS 1) to ``sealtrail/v1/<gw>/sensors/+`` over MQTT 5 with a persistent session (a
fixed client id, clean start off, a session that never expires) and acknowledges each message
itself: the PUBACKs for what arrived are sent by an AfterCommit queued behind its readings, so
they go out only when the readings are durable. A crash before that makes the broker deliver
the messages again, and the authenticator tells such a redelivery from a replay.

How much the broker sends before we acknowledge is ours to say: MQTT 5's Receive Maximum
(``receive_maximum``; Mosquitto honours it above its own ``max_inflight_messages``, which only
binds MQTT 3.1.1 clients). It must cover a whole commit interval of traffic, or the broker waits
for acks and readings trickle in one fsync at a time; it bounds what the agent holds in memory
(messages are at most 64 KiB, announced as Maximum Packet Size; e-seal messages are ~200 bytes);
and the authenticator remembers that many recent deliveries (``recent_window``) to recognise
redeliveries.

Messages are handed over in batches: whatever the socket holds is parsed at once, decoded,
emitted, and acknowledged by one AfterCommit in one write, so a backlog drains in groups of
hundreds (one commit and one fsync each); under live load the socket is read at most every
``batch_s`` (100 ms), one wake-up for what came meanwhile instead of one per message. The
protocol is spoken by `mqtt_wire` rather than paho, whose cost per message is larger than
signing the reading (see there).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from edge_agent.agent import AfterCommit, Emit
from edge_agent.journal import Draft
from edge_agent.sources.mqtt_wire import MqttSubscriber, Publish, WireError
from edge_agent.sources.nmea_fields import Reject
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.seal_codec import decode_json
from edge_agent.stats import ComponentStats
from sealtrail.backoff import Backoff
from sealtrail.mqtt import MqttSettings
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
RECEIVE_MAXIMUM = 512
BATCH_S = 0.1  # under load the socket is read at most this often (mqtt_wire: wake-ups cost)


class MqttSealSource:
    def __init__(self, settings: MqttSettings, gateway_id: str, auth: SealAuthenticator, *,
                 receive_maximum: int = RECEIVE_MAXIMUM, batch_s: float = BATCH_S):
        if not 1 <= receive_maximum <= min(65535, auth.recent_window):
            raise ValueError(f"receive_maximum must be 1..{min(65535, auth.recent_window)} "
                             "(the deliveries the authenticator remembers)")
        self.settings = settings
        self.gateway_id = gateway_id
        self.auth = auth
        self.receive_maximum = receive_maximum
        self.batch_s = batch_s
        self.topic = f"sealtrail/v1/{gateway_id}/sensors/+"
        self.counts: Counter[str] = Counter()
        self.decoded = 0
        self.connected = asyncio.Event()
        self._ratelog = RateLimitedLog(log)

    @property
    def name(self) -> str:
        return f"mqtt-seals:{self.settings.host}:{self.settings.port}"

    async def run(self, emit: Emit) -> None:
        """Receive forever; a broker that is down or drops us is retried with backoff."""
        s = self.settings
        backoff = Backoff(*s.backoff_s)
        while True:
            sub = MqttSubscriber(s, receive_maximum=self.receive_maximum, batch_s=self.batch_s)
            try:
                await sub.connect()
                await sub.subscribe(self.topic)
                backoff.reset()
                self.connected.set()
                self.auth.new_connection()
                log.info("%s: subscribed to %s (session %s)", self.name, self.topic,
                         "resumed" if sub.session_present else "new")
                confirmed = 0
                while True:
                    batch = await sub.receive()
                    await self._handle(batch, sub, emit)
                    if sub.confirmed > confirmed or not all(m.dup for m in batch):
                        self.auth.redeliveries_over()  # the broker has moved on to new ones
                    if sub.confirmed > confirmed:  # acknowledgements the broker has processed
                        self.auth.confirm(sub.confirmed - confirmed)
                        confirmed = sub.confirmed
            except WireError as exc:
                self.counts["disconnects"] += 1
                delay = backoff.next()
                self._ratelog.warning(f"{self.name} down", "%s: %s; reconnecting in %.1fs",
                                      self.name, exc, delay)
            finally:
                self.connected.clear()
                await sub.close()  # acks still queued behind commits are now void
            await asyncio.sleep(delay)

    async def _handle(self, batch: list[Publish], sub: MqttSubscriber, emit: Emit) -> None:
        drafts: list[Draft] = []
        for message in batch:
            drafts += self._check(message)
        ring = self.auth.remember()
        if ring:  # with the batch's first reading: whatever of it commits is remembered
            drafts[0] = drafts[0]._replace(state={**(drafts[0].state or {}), **ring})
        for draft in drafts:
            await emit(draft)
        ids = [m.packet_id for m in batch if m.qos]
        if ids:
            accepted = sum(1 for d in drafts if d.kind == "seal")
            await emit(AfterCommit(self._acknowledge(sub, ids, accepted)))

    def _check(self, message: Publish) -> list[Draft]:
        self.counts["messages"] += 1
        seal_id = message.topic.rsplit("/", 1)[-1]
        try:
            msg = decode_json(seal_id, message.payload)
        except Reject as rej:
            self.counts[f"seal_{rej.args[0]}"] += 1
            self._ratelog.warning(f"{self.name} reject", "%s: dropped a message on %s: %s",
                                  self.name, message.topic, rej.args[0])
            return []
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill us
            self.counts["seal_internal_error"] += 1
            return []
        self.decoded += 1
        return self.auth.check(msg, "mqtt", packet_id=message.packet_id or None,
                               redelivered=message.dup)

    def _acknowledge(self, sub: MqttSubscriber, ids: list[int],
                     accepted: int) -> Callable[[], None]:
        """The PUBACKs of a batch, marked with how many deliveries it added to the
        authenticator's unconfirmed ones (what the broker's PINGRESP will confirm)."""
        def acknowledge() -> None:
            if sub.ack(ids, marker=accepted):
                self.counts["acked"] += len(ids)
        return acknowledge

    def stats(self) -> ComponentStats:
        """Messages decoded, readings accepted, drops by reason; messages received, PUBACKs
        sent and disconnects as events."""
        counts = dict(self.counts)
        rejected = {k: counts.pop(k) for k in list(counts) if k.startswith("seal_")}
        part = self.auth.stats("mqtt", decoded=self.decoded, rejected=rejected)
        return replace(part, events={**part.events, **counts},
                       connected=self.connected.is_set())

