"""deploy/mosquitto as deployed: TLS only, no anonymous or unknown clients, and an ACL that keeps
every gateway to its own topics while customs reads all and publishes plans.

Mosquitto answers an MQTT 5 publish its ACL refuses with PUBACK reason 0x87 and drops an MQTT
3.1.1 one silently; both are checked. "Nothing arrived" is never waited for: the denied message
is followed by an allowed one from the same client, and the allowed one arriving alone proves
the denied one was dropped (the broker forwards one client's messages in order).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import paho.mqtt.client as paho
import pytest
from aiomqtt.client import ProtocolVersion
from helpers.mosquitto import (
    DEPLOY,
    SecureBroker,
    make_test_ca,
    running_secure_mosquitto,
    secure_broker_config,
)

pytestmark = pytest.mark.integration
T = TypeVar("T")
USERS = ("gw-a", "gw-b", "customs")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("broker")
    with running_secure_mosquitto(tmp, make_test_ca(tmp / "pki"), users=USERS) as running:
        yield running


def run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, 30.0))


def client(broker: SecureBroker, user: str | None, password: str | None = None,
           **kw: Any) -> aiomqtt.Client:
    if user is not None and password is None:
        password = broker.passwords[user]
    return aiomqtt.Client(broker.host, broker.port, username=user, password=password,
                          tls_context=kw.pop("tls", broker.tls()), **kw)


class PubackCodes:
    """PUBACK reason codes by message id (aiomqtt's publish does not return them)."""

    def __init__(self, c: aiomqtt.Client):
        self.codes: dict[int, int] = {}
        self.got = asyncio.Event()
        paho_client: paho.Client = c._client
        chained = paho_client.on_publish

        def on_publish(pc: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            self.codes[mid] = reason.value
            self.got.set()
            if chained is not None:
                chained(pc, userdata, mid, reason, props)

        paho_client.on_publish = on_publish
        self._paho = paho_client

    async def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        info = self._paho.publish(topic, payload, qos=1, retain=retain)
        while info.mid not in self.codes:
            self.got.clear()
            await self.got.wait()
        return self.codes[info.mid]


async def first_message(c: aiomqtt.Client) -> tuple[str, bytes]:
    async for message in c.messages:
        assert isinstance(message.payload, bytes)
        return message.topic.value, message.payload
    raise AssertionError("disconnected")


def test_the_test_broker_runs_the_deployed_file_with_only_paths_and_port_changed(
        tmp_path: Path) -> None:
    deployed = (DEPLOY / "mosquitto.conf").read_text()
    conf = secure_broker_config(deployed, port=1234, pki=tmp_path, passwd=tmp_path / "p",
                                acl=tmp_path / "acl", state_dir=tmp_path, log_path=tmp_path / "l")
    kept = [line for line in deployed.splitlines() if line.split()[:1] not in (
        ["listener"], ["cafile"], ["certfile"], ["keyfile"], ["password_file"], ["acl_file"],
        ["persistence_location"], ["pid_file"], ["log_dest"])]
    assert [line for line in conf.splitlines() if line in kept] == kept
    assert "listener 1234 127.0.0.1" in conf.splitlines()
    settings = dict(line.split(None, 1) for line in deployed.splitlines()
                    if line and not line.startswith("#"))
    assert settings["allow_anonymous"] == "false" and settings["persistence"] == "true"
    assert settings["listener"] == "8883"
    with pytest.raises(ValueError, match="listener"):
        secure_broker_config(deployed + "listener 1883\n", port=1, pki=tmp_path,
                             passwd=tmp_path, acl=tmp_path, state_dir=tmp_path,
                             log_path=tmp_path)


def test_a_plaintext_client_gets_no_connack(broker: SecureBroker) -> None:
    # an MQTT 3.1.1 CONNECT with a valid user name and password, sent without TLS
    def field(text: str) -> bytes:
        return struct.pack("!H", len(text)) + text.encode()

    body = (field("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + field("plain")
            + field("gw-a") + field(broker.passwords["gw-a"]))
    packet = bytes([0x10, len(body)]) + body
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(packet)
        try:
            answer = sock.recv(4)
        except ConnectionResetError:
            answer = b""
    assert answer == b""  # closed by the broker: never a CONNACK (0x20 ...)


def test_unauthenticated_unknown_and_wrong_password_clients_are_refused(
        broker: SecureBroker) -> None:
    async def scenario() -> list[str]:
        refusals = []
        for user, password in ((None, None), ("gw-a", "wrong"), ("gw-z", "whatever")):
            with pytest.raises(aiomqtt.MqttCodeError) as caught:
                async with client(broker, user, password):
                    pass
            refusals.append(str(caught.value))
        return refusals

    assert all("Not authorized" in text for text in run(scenario()))


def test_a_client_that_does_not_trust_the_broker_certificate_does_not_connect(
        broker: SecureBroker) -> None:
    async def scenario() -> None:
        with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
            async with client(broker, "gw-a", tls=ssl.create_default_context()):
                pass

    run(scenario())


def test_a_gateway_cannot_publish_under_another_gateways_id(broker: SecureBroker) -> None:
    async def scenario() -> tuple[dict[str, int], tuple[str, bytes]]:
        async with client(broker, "customs") as customs:
            for leaf in ("alerts", "status", "readings", "sensors/#"):  # not retained plans
                await customs.subscribe(f"sealtrail/v1/+/{leaf}", qos=1)
            codes = {}
            async with client(broker, "gw-a", protocol=ProtocolVersion.V5) as gw_a:
                acks = PubackCodes(gw_a)
                for topic in ("sealtrail/v1/gw-b/alerts", "sealtrail/v1/gw-b/status",
                              "sealtrail/v1/gw-a/plans", "sealtrail/v1/gw-a/sensors/S1",
                              "sealtrail/v1/gw-a/alerts"):
                    codes[topic] = await acks.publish(topic, b"from gw-a")
            async with client(broker, "gw-a") as gw_a_311:  # MQTT 3.1.1: dropped silently
                await gw_a_311.publish("sealtrail/v1/gw-b/alerts", b"forged", qos=1)
                await gw_a_311.publish("sealtrail/v1/gw-a/readings", b"marker", qos=1)
            first = await first_message(customs)
            second = await first_message(customs)
            assert first == ("sealtrail/v1/gw-a/alerts", b"from gw-a")
            return codes, second

    codes, second = run(scenario())
    assert codes == {"sealtrail/v1/gw-b/alerts": 0x87, "sealtrail/v1/gw-b/status": 0x87,
                     "sealtrail/v1/gw-a/plans": 0x87, "sealtrail/v1/gw-a/sensors/S1": 0x87,
                     "sealtrail/v1/gw-a/alerts": 0}
    assert second == ("sealtrail/v1/gw-a/readings", b"marker")


def test_a_gateway_reads_only_its_own_plans_and_no_other_gateways_traffic(
        broker: SecureBroker) -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        async with client(broker, "customs", protocol=ProtocolVersion.V5) as customs:
            acks = PubackCodes(customs)
            for gw in ("gw-a", "gw-b"):
                plan = f"plan {gw}".encode()
                code = await acks.publish(f"sealtrail/v1/{gw}/plans", plan, retain=True)
                assert code < 0x80  # success, or 0x10 "no matching subscribers"
        got = []
        async with client(broker, "gw-b") as gw_b:
            # retained messages come with each SUBACK, in order: gw-a's plan would come first
            await gw_b.subscribe("sealtrail/v1/gw-a/plans", qos=1)
            await gw_b.subscribe("sealtrail/v1/gw-b/plans", qos=1)
            got.append(await first_message(gw_b))
            await gw_b.subscribe("sealtrail/v1/#", qos=1)  # all it may read: its own plans
            got.append(await first_message(gw_b))  # the retained plan again, for "#"
            async with client(broker, "gw-a") as gw_a:
                await gw_a.publish("sealtrail/v1/gw-a/alerts", b"gw-a alert", qos=1)
            async with client(broker, "customs") as customs:
                await customs.publish("sealtrail/v1/gw-b/plans", b"plan 2", qos=1)
            got.append(await first_message(gw_b))
        return got

    assert run(scenario()) == [("sealtrail/v1/gw-b/plans", b"plan gw-b"),
                               ("sealtrail/v1/gw-b/plans", b"plan gw-b"),
                               ("sealtrail/v1/gw-b/plans", b"plan 2")]


def test_only_customs_writes_acks_and_a_gateway_reads_only_its_own(broker: SecureBroker) -> None:
    """Acknowledgements decide what a gateway stops re-sending: a gateway must not be able to
    acknowledge its own alerts, nor learn or forge another gateway's."""
    async def scenario() -> tuple[dict[str, int], list[tuple[str, bytes]]]:
        codes = {}
        async with client(broker, "gw-a", protocol=ProtocolVersion.V5) as gw_a:
            acks = PubackCodes(gw_a)
            for topic in ("sealtrail/v1/gw-a/acks", "sealtrail/v1/gw-b/acks"):
                codes[f"gw-a -> {topic}"] = await acks.publish(topic, b"forged", retain=True)
        async with client(broker, "customs", protocol=ProtocolVersion.V5) as customs:
            acks = PubackCodes(customs)
            for gw in ("gw-a", "gw-b"):
                topic = f"sealtrail/v1/{gw}/acks"
                codes[f"customs -> {topic}"] = await acks.publish(topic, f"ack {gw}".encode(),
                                                                  retain=True)
        got = []
        async with client(broker, "gw-b") as gw_b:
            # retained messages come with each SUBACK, in order: gw-a's would come first
            await gw_b.subscribe("sealtrail/v1/gw-a/acks", qos=1)
            await gw_b.subscribe("sealtrail/v1/gw-b/acks", qos=1)
            got.append(await first_message(gw_b))
        return codes, got

    codes, got = run(scenario())
    assert codes["gw-a -> sealtrail/v1/gw-a/acks"] == 0x87
    assert codes["gw-a -> sealtrail/v1/gw-b/acks"] == 0x87
    assert codes["customs -> sealtrail/v1/gw-a/acks"] < 0x80
    assert codes["customs -> sealtrail/v1/gw-b/acks"] < 0x80
    assert got == [("sealtrail/v1/gw-b/acks", b"ack gw-b")]
