"""Customs tells each gateway, signed, how far it holds that gateway's alerts without a gap.

The acknowledgement follows the alerts' own links (each names the previous alert's seq in
``prev_alert``), so it moves only when every earlier alert is stored, whatever order the alerts
arrived in, and it never credits a gateway with another gateway's alerts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives import serialization
from helpers.customs_rig import Gateway, alerts_topic, publish
from helpers.mosquitto import running_mosquitto

from customs.receive import Receiver
from customs.store import open_store
from customs.trust import StaticTrust
from customs.watch import Watcher
from ledger_client.acks import open_ack
from ledger_client.keys import create_key
from sealtrail.mqtt import MqttSettings

pytestmark = pytest.mark.integration


def test_the_frontier_follows_the_links_not_the_arrival_order(
        tmp_path: Path, store_target: str) -> None:
    a, b = Gateway(tmp_path, "gw-a"), Gateway(tmp_path, "gw-b")
    a.fixes(3)                                          # seqs 1-3 are readings
    a1 = a.alert(prev_alert=0)                          # seq 4
    a2 = a.alert(prev_alert=4)                          # seq 5
    a3 = a.alert(prev_alert=5)                          # seq 6
    b1 = b.alert(prev_alert=0)                          # gw-b seq 1
    store = open_store(store_target)
    try:
        rx = Receiver(store, StaticTrust({"gw-a": a.pub, "gw-b": b.pub}))
        frontier = lambda parts: rx.handle_batch(parts).frontiers  # noqa: E731
        assert frontier([(alerts_topic("gw-a"), a3)]) == {"gw-a": 0}   # 4 and 5 missing
        assert frontier([(alerts_topic("gw-b"), b1)]) == {"gw-b": 1}   # not gw-a's business
        assert frontier([(alerts_topic("gw-a"), a1)]) == {"gw-a": 4}   # 5 still missing
        assert frontier([(alerts_topic("gw-a"), a2)]) == {"gw-a": 6}   # and 6 was held
        assert frontier([(alerts_topic("gw-a"), a2)]) == {"gw-a": 6}   # a resend: same answer
        assert store.frontier("gw-a") == 6 and store.frontier("gw-b") == 1
    finally:
        store.close()


def test_watch_publishes_signed_retained_acknowledgements_after_commit(
        tmp_path: Path, store_target: str) -> None:
    gw = Gateway(tmp_path, "gw-a")
    first, second = gw.alert(prev_alert=0), gw.alert(prev_alert=1)
    service = create_key(tmp_path / "customs-service.key")
    trusted = {service.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)}
    with running_mosquitto(tmp_path) as broker:
        async def scenario() -> list[int]:
            store = open_store(store_target)
            watcher = Watcher(MqttSettings(broker.host, broker.port, client_id="customs-acks"),
                              Receiver(store, StaticTrust({"gw-a": gw.pub})),
                              service_key=service)
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop))
            try:
                await watcher.wait_until(watcher.connected.is_set)
                publish(broker, [(alerts_topic("gw-a"), first), (alerts_topic("gw-a"), second)])
                await watcher.wait_until(lambda: store.frontier("gw-a") == 2)
                await watcher.wait_until(lambda: watcher.acks_sent >= 1)
            finally:
                stop.set()
                await task
                store.close()
            # a gateway that connects later finds the latest acknowledgement retained
            seen: list[int] = []
            async with aiomqtt.Client(broker.host, broker.port, identifier="gw-a") as client:
                await client.subscribe("sealtrail/v1/gw-a/acks", qos=1)
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    seen.append(open_ack(message.payload, trusted, "gw-a").acked_seq)
                    break
            return seen

        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [2]
