"""E-seal readings from MQTT sensor topics, acknowledged only once they are in the journal.

Subscribes (QoS 1) to ``sealtrail/v1/<gw>/sensors/+`` with a persistent session and a fixed
client id, and turns off paho's automatic acknowledgement: the PUBACK for a message is sent by
an AfterCommit queued behind its reading, so it goes out only when the reading is durable. A
crash before that makes the broker deliver the message again, and the authenticator tells that
redelivery from a replay. The broker's in-flight window (Mosquitto: 20 unacknowledged messages
per client) is what bounds how much we hold in memory: it sends no more until we acknowledge.

aiomqtt does not expose manual acknowledgement yet (aiomqtt issue #345, PR #346), so we use
its paho client for two calls, ``manual_ack_set`` and ``ack``; see ``sealtrail.mqtt.ManualAck``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

import aiomqtt

from edge_agent.agent import AfterCommit, Emit
from edge_agent.sources.nmea_fields import Reject
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.seal_codec import decode_json
from sealtrail.mqtt import ManualAck, MqttSettings
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


class MqttSealSource:
    def __init__(self, settings: MqttSettings, gateway_id: str, auth: SealAuthenticator):
        self.settings = settings
        self.gateway_id = gateway_id
        self.auth = auth
        self.topic = f"sealtrail/v1/{gateway_id}/sensors/+"
        self.counts: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._ratelog = RateLimitedLog(log)

    @property
    def name(self) -> str:
        return f"mqtt-seals:{self.settings.host}:{self.settings.port}"

    async def run(self, emit: Emit) -> None:
        """Receive forever; a broker that is down or drops us is retried with backoff."""
        s = self.settings
        delay = s.backoff_s[0]
        generation = 0
        while True:
            client = aiomqtt.Client(s.host, s.port, identifier=s.client_id, clean_session=False,
                                    username=s.username, password=s.password,
                                    tls_context=s.tls, keepalive=s.keepalive_s)
            acker = ManualAck(client)
            generation += 1
            acker.generation = generation
            try:
                async with client:
                    await client.subscribe(self.topic, qos=1)
                    delay = s.backoff_s[0]
                    self.connected.set()
                    log.info("%s: subscribed to %s", self.name, self.topic)
                    async for message in client.messages:
                        await self._handle(message, acker, generation, emit)
            except aiomqtt.MqttError as exc:
                self.counts["disconnects"] += 1
                self._ratelog.warning(f"{self.name} down", "%s: %s; reconnecting in %.1fs",
                                      self.name, exc, delay)
            finally:
                self.connected.clear()
                acker.generation = -1  # acks still queued behind commits are now void
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, s.backoff_s[1])

    async def _handle(self, message: aiomqtt.Message, acker: ManualAck, generation: int,
                      emit: Emit) -> None:
        self.counts["messages"] += 1
        topic = message.topic.value
        seal_id = topic.rsplit("/", 1)[-1]
        payload = message.payload if isinstance(message.payload, bytes) else b""
        redelivered = acker.redelivered(message.mid)
        try:
            msg = decode_json(seal_id, payload)
        except Reject as rej:
            self.counts[f"seal_{rej.args[0]}"] += 1
            self._ratelog.warning(f"{self.name} reject", "%s: dropped a message on %s: %s",
                                  self.name, topic, rej.args[0])
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill us
            self.counts["seal_internal_error"] += 1
        else:
            for draft in self.auth.check(msg, "mqtt", packet_id=message.mid,
                                         redelivered=redelivered):
                await emit(draft)
        mid, qos = message.mid, message.qos

        def acknowledge() -> None:
            if acker.ack(mid, qos, generation):
                self.counts["acked"] += 1

        await emit(AfterCommit(acknowledge))

    def stats(self) -> dict[str, int]:
        merged = Counter(self.counts)
        merged.update({f"auth_{k}": v for k, v in self.auth.counts.items()})
        return dict(merged)
