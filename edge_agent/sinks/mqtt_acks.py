"""QoS 1 publishing that tells "the broker took it" from "the broker refused it".

``aiomqtt.Client.publish`` returns once the PUBACK arrives, whatever it says. Mosquitto
acknowledges a publish its ACL refuses: over MQTT 3.1.1 it drops the message silently, over
MQTT 5 its PUBACK carries reason 0x87 Not authorized. A gateway set up with the wrong user name
would otherwise see every alert "delivered" and move its cursor past alerts nobody received.
So the customs sink speaks MQTT 5 and publishes through aiomqtt's paho client, reading the
reason code in paho's ``on_publish`` (chained to aiomqtt's own handler, which keeps working).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import paho.mqtt.client as paho


class PublishRefused(Exception):
    """The broker acknowledged a publish with a failure reason code (MQTT 5)."""

    def __init__(self, topic: str, code: int, reason: str):
        super().__init__(f"broker refused a publish to {topic}: {reason} (0x{code:02x})")
        self.topic = topic
        self.code = code


class AckedPublisher:
    """QoS 1 publishing on an aiomqtt connection that checks the PUBACK reason code."""

    def __init__(self, client: aiomqtt.Client):
        self._paho: paho.Client = client._client  # private: aiomqtt has no reason codes
        self._waiting: dict[int, asyncio.Future[tuple[int, str]]] = {}
        chained = self._paho.on_publish

        def on_publish(c: paho.Client, userdata: Any, mid: int, reason: Any,
                       properties: Any) -> None:
            fut = self._waiting.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result((int(getattr(reason, "value", reason)), str(reason)))
            if chained is not None:
                chained(c, userdata, mid, reason, properties)

        self._paho.on_publish = on_publish

    async def publish(self, topic: str, payload: bytes, *, timeout: float,
                      retain: bool = False) -> None:
        """Publish and wait for the PUBACK; raise PublishRefused, MqttError or TimeoutError."""
        info = self._paho.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, f"could not publish to {topic}")
        fut: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._waiting[info.mid] = fut
        try:
            async with asyncio.timeout(timeout):
                code, reason = await fut
        finally:
            self._waiting.pop(info.mid, None)
        if code >= 0x80:
            raise PublishRefused(topic, code, reason)
