"""MQTT pieces both sides share: connection settings, and manual acknowledgement.

A gateway's sensor source and the customs receiver both acknowledge a message only after it is
durable (journal commit, store commit): a crash in between makes the broker deliver it again.
aiomqtt does not expose manual acknowledgement yet (aiomqtt issue #345, PR #346), so
``ManualAck`` uses aiomqtt's paho client for two calls, ``manual_ack_set`` and ``ack``; this is
the one place that reaches into aiomqtt's private ``_client``, and pyproject.toml bounds
aiomqtt to the major version it was written against.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int = 1883
    client_id: str = "sealtrail-agent"
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 30
    backoff_s: tuple[float, float] = (0.5, 30.0)


class ManualAck:
    """What aiomqtt does not expose: manual acknowledgement, and the DUP flag of a message.

    An ack is only valid on the connection that received the message (packet ids are per
    session); after a reconnect the broker redelivers instead. DUP is set by the broker itself
    when it re-sends a message to us (a publisher's DUP flag is not passed on, MQTT 3.1.1
    section 3.3.1.1); with the packet id it tells a redelivery from a replay by a third party.
    """

    def __init__(self, client: aiomqtt.Client):
        self._paho: paho.Client = client._client  # private: see the module docstring
        self._paho.manual_ack_set(True)
        self.generation = 0
        self._dup_mids: set[int] = set()
        deliver = self._paho.on_message

        def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
            if message.dup:
                self._dup_mids.add(message.mid)
            if deliver is not None:
                deliver(c, userdata, message)

        self._paho.on_message = on_message

    def redelivered(self, mid: int) -> bool:
        if mid in self._dup_mids:
            self._dup_mids.discard(mid)
            return True
        return False

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        if generation != self.generation or qos == 0:
            return False
        return self._paho.ack(mid, qos) == paho.MQTT_ERR_SUCCESS


def take_queued(client: aiomqtt.Client, limit: int) -> list[aiomqtt.Message]:
    """Up to ``limit`` messages the client has already received, without waiting: what lets a
    consumer take a backlog in groups (one commit per group) instead of one message at a time.
    aiomqtt's iterator creates a task per message; its queue is private (see the docstring)."""
    queue = client._queue  # private: see the module docstring
    taken: list[aiomqtt.Message] = []
    while len(taken) < limit and not queue.empty():
        taken.append(queue.get_nowait())
    return taken
