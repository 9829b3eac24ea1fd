"""Alerts to customs through a real Mosquitto running the deployed TLS + password + ACL config.

Customs' side is the real receiver (customs: signature check against the gateway's
trusted key, duplicates dropped by alert_id, SQLite store); a `Tap` also keeps every message in
arrival order, which is what the ordering rule (no reading ahead of an earlier alert) is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.mosquitto import SecureBroker, make_test_ca, running_secure_mosquitto

from customs.receive import Receiver
from customs.store import Store, open_store
from customs.trust import StaticTrust
from customs.watch import Watcher
from edge_agent.agent import Agent
from edge_agent.journal import Draft, Journal
from edge_agent.sinks.customs_mqtt import CustomsMqttSink, DeliveryPolicy, anchor_receipt
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.serial_seal import SerialSealSource
from edge_agent.tail import JournalTail
from firmware_sim.pty import PtyPair
from firmware_sim.seal import SealMessage, compute_mac
from ledger_client.keys import create_key, public_hex
from sealtrail.mqtt import MqttSettings

pytestmark = pytest.mark.integration
GW = "gw-a"
T0 = 1_790_000_000_000
NS = uuid.UUID("0b6a1f3e-9a53-4c1e-8f55-3c2b7d0e4a11")
ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("pki"))


def alert(n: int) -> Draft:
    return Draft(T0 + n, "alert", "rules", {
        "alert_id": str(uuid.uuid5(NS, f"alert/{n}")), "type": "routeDeviation",
        "severity": "critical", "asset": {"vehicle": "truck-1"}, "plan_id": None,
        "position": {"lat_e7": -349000000 + n, "lon_e7": -562000000}, "evidence": [],
        "details": {"n": n}})


def reading(n: int) -> Draft:
    return Draft(T0 + n, "gps", "gps0", {"lat_e7": -349000000 + n, "lon_e7": -562000000,
                                         "fix_quality": 1, "sats": 9, "hdop_x10": 8})


def mixed(first: int, count: int, every: int) -> list[Draft]:
    """Readings with an alert every `every` records."""
    return [alert(n) if n % every == 3 else reading(n) for n in range(first, first + count)]


QUICK = DeliveryPolicy(readings_linger_s=0.02)  # tests wait for the last readings too


def settings(broker: SecureBroker, user: str, **kw: Any) -> MqttSettings:
    return MqttSettings(broker.host, broker.port, username=user,
                        password=broker.passwords[user], tls=broker.tls(),
                        backoff_s=(0.05, 0.2), **kw)


def alerts_of(journal: Journal) -> dict[str, bytes]:
    return {s.record()["body"]["alert_id"]: s.signed for s in journal.alerts_after(0, 100_000)}


def readings_of(journal: Journal) -> set[int]:
    return {s.seq for s in journal.read_after(0, 100_000) if s.kind != "alert"}


def stored_alerts(store: Store) -> dict[str, bytes]:
    return {row.alert_id: row.signed for row in store.alerts()}


def stored_readings(store: Store) -> set[int]:
    return {row.seq for row in store.records(GW) if row.kind != "alert"}


class Tap:
    """Customs subscribed to one gateway's topics: every message in arrival order, each also
    handed to the real receiver (verify, drop duplicates, store)."""

    def __init__(self, broker: SecureBroker, receiver: Receiver, gw: str = GW):
        self.client = aiomqtt.Client(broker.host, broker.port, username="customs",
                                     password=broker.passwords["customs"], tls_context=broker.tls())
        self.receiver = receiver
        self.topic = f"sealtrail/v1/{gw}/#"
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tap:
        await self.client.__aenter__()
        await self.client.subscribe(self.topic, qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.messages.append((message.topic.value, payload))
            self.receiver.handle(message.topic.value, payload)
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(done)

    def on(self, leaf: str) -> list[bytes]:
        return [p for t, p in self.messages if t.endswith("/" + leaf)]

    def statuses(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on("status")]


def assert_no_reading_ahead_of_an_alert(messages: list[tuple[str, bytes]],
                                        alert_seqs: set[int]) -> None:
    arrived: set[int] = set()
    for topic, payload in messages:
        if topic.endswith("/alerts"):
            arrived.add(json.loads(payload)["seq"])
        elif topic.endswith("/readings"):
            top = max(json.loads(line)["seq"] for line in payload.split(b"\n"))
            early = sorted(s for s in alert_seqs if s < top and s not in arrived)
            assert not early, f"readings up to seq {top} arrived before alerts {early[:5]}"


def run(scenario: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """A scenario that hangs fails instead (every wait inside is on an event)."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def new_journal(path: Path, gw: str = GW) -> tuple[Journal, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return Journal(path, gateway_id=gw, key=key), key


def receiver_for(target: str, keys: dict[str, Ed25519PrivateKey]) -> Receiver:
    return Receiver(open_store(target),
                    StaticTrust({gw: public_hex(k) for gw, k in keys.items()}))


def test_customs_verifies_every_alert_reading_and_anchor_and_no_reading_overtakes_an_alert(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    journal, key = new_journal(tmp_path / "journal.db")
    journal.append(mixed(0, 600, 25))  # 24 alerts among 576 readings, before any connection
    journal.add_batch(1, 256, b"\x11" * 32, closed_ms=T0, reason="max_leaves", cursor="anchor")
    journal.update_batch(1, status="anchored", chain_id=1337, contract="0x" + "ab" * 20,
                         tx_hash=b"\x22" * 32, block_number=7, block_hash=b"\x33" * 32,
                         log_index=0)
    journal.add_batch(257, 100, b"\x44" * 32, closed_ms=T0, reason="max_leaves",
                      cursor="anchor")  # built, not anchored: no receipt yet
    receiver = receiver_for(store_target, {GW: key})
    plans: list[bytes] = []

    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker:
        async def scenario() -> Tap:
            async with Tap(broker, receiver) as tap:
                tail = JournalTail(journal.head()[0])
                sink = CustomsMqttSink(journal, settings(broker, GW), on_plan=plans.append,
                                       policy=DeliveryPolicy(housekeeping_s=0.05,
                                                             readings_linger_s=0.02))
                task = asyncio.create_task(sink.run(tail))
                await sink.wait_delivered(600, readings=True)
                # live traffic on the same connection, and a plan from customs
                stored = journal.append(mixed(600, 150, 25))
                await tail.advanced(stored[-1].seq)
                await tap.client.publish(f"sealtrail/v1/{GW}/plans", b"plan-1", qos=1,
                                         retain=True)
                await sink.wait_delivered(750, readings=True)
                await tap.wait(lambda: len(receiver.store.alerts()) == 30
                               and len(stored_readings(receiver.store)) == 720
                               and len(tap.on("anchors")) == 1 and len(plans) == 1)
                await stop(task)  # a graceful stop says "offline" itself
                await tap.wait(lambda: tap.statuses()[-1]["state"] == "offline")
                assert sink.counts["connects"] == 1 and not sink.counts["refused"]
                stats = sink.stats()  # every alert and reading the broker took, once
                assert stats.written - sink.counts["anchors_records"] == 750
                assert stats.added >= stats.written and stats.queue_depth == 0
                return tap

        tap = run(scenario())

    assert stored_alerts(receiver.store) == alerts_of(journal)  # the journal's bytes exactly
    assert stored_readings(receiver.store) == readings_of(journal)
    # the stand-in plan ("plan-1") is not a signed envelope: customs files it, like any bytes
    assert receiver.store.counts()["quarantine"] == {"malformed_plan": 1}
    assert not receiver.counts["duplicates"]
    assert_no_reading_ahead_of_an_alert(tap.messages, {s.seq for s in journal.alerts_after(0)})
    batch = journal.batch(1)
    assert batch is not None and tap.on("anchors") == [anchor_receipt(batch)]
    assert json.loads(anchor_receipt(batch)) == {
        "batch_seq": 1, "first_seq": 1, "tree_size": 256, "root": "11" * 32, "chain_id": 1337,
        "contract": "0x" + "ab" * 20, "tx_hash": "0x" + "22" * 32, "block_number": 7,
        "block_hash": "0x" + "33" * 32, "log_index": 0}
    first = tap.statuses()[0]
    assert first["state"] == "online" and first["gw"] == GW
    assert first["head_seq"] == 600 and first["alerts_pending"] == 24
    assert plans == [b"plan-1"]
    assert (journal.cursor("customs.alerts"), journal.cursor("customs.readings"),
            journal.cursor("customs.anchors")) == (750, 750, 1)


def test_a_broker_restart_mid_stream_loses_no_alert_and_no_reading(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    journal, key = new_journal(tmp_path / "journal.db")
    receiver = receiver_for(store_target, {GW: key})

    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker:
        async def scenario() -> tuple[int, CustomsMqttSink, Watcher]:
            watcher = Watcher(settings(broker, "customs", client_id="customs-test"), receiver)
            watching = asyncio.Event()
            watch = asyncio.create_task(watcher.run(watching))
            await watcher.connected.wait()
            tail = JournalTail(0)
            sink = CustomsMqttSink(journal, settings(broker, GW), policy=QUICK)
            task = asyncio.create_task(sink.run(tail))
            producing = True

            async def produce() -> None:
                n = 0
                while producing:  # one alert and five readings at a time, like a busy truck
                    stored = journal.append([alert(n), *(reading(n + i) for i in range(1, 6))])
                    await tail.advanced(stored[-1].seq)
                    n += 6
                    await asyncio.sleep(0.005)  # the gateway's pace, not a synchronisation

            producer = asyncio.create_task(produce())
            await watcher.wait_until(lambda: receiver.counts["alerts"] >= 20)
            await asyncio.to_thread(broker.stop)
            before = receiver.counts["alerts"]
            await asyncio.to_thread(broker.start)
            await watcher.wait_until(lambda: receiver.counts["alerts"] >= before + 20)
            producing = False
            await producer
            await sink.wait_delivered(journal.head()[0], readings=True)
            expected = len(alerts_of(journal))
            await watcher.wait_until(lambda: receiver.counts["alerts"] == expected
                                     and len(stored_readings(receiver.store))
                                     == len(readings_of(journal)))
            await stop(task)
            watching.set()
            await watch
            return before, sink, watcher

        before, sink, watcher = run(scenario())

    assert stored_alerts(receiver.store) == alerts_of(journal)
    assert stored_readings(receiver.store) == readings_of(journal)
    assert 20 <= before <= len(alerts_of(journal)) - 20  # the restart really was mid-stream
    assert sink.counts["connects"] >= 2 and watcher.connections >= 2
    assert not receiver.store.counts()["quarantine"]


CHILD = """
import asyncio, os, sys
from edge_agent.journal import Journal
from ledger_client.keys import load_key
from edge_agent.sinks.customs_mqtt import CustomsMqttSink, DeliveryPolicy
from edge_agent.sinks.tls import client_context
from sealtrail.mqtt import MqttSettings
from edge_agent.tail import JournalTail

async def main():
    db, key, gw, port, ca = sys.argv[1:6]
    journal = Journal(db, gateway_id=gw, key=load_key(key))
    settings = MqttSettings("127.0.0.1", int(port), username=gw,
                            password=os.environ["MQTT_PASSWORD"], tls=client_context(ca))
    # cursors are stored only every hour: a kill always lands after PUBACK, before the cursor
    sink = CustomsMqttSink(journal, settings, policy=DeliveryPolicy(housekeeping_s=3600,
                                                                    readings_linger_s=0.02))
    task = asyncio.create_task(sink.run(JournalTail(journal.head()[0])))
    await sink.wait_delivered(journal.head()[0], readings=True)
    print("delivered", flush=True)
    await task

asyncio.run(main())
"""


def test_a_gateway_killed_after_puback_resends_and_customs_drops_the_duplicates(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    key_path = tmp_path / "gw.key"
    key = create_key(key_path)
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=key)
    journal.append(mixed(0, 200, 10))  # 20 alerts
    alerts = alerts_of(journal)
    receiver = receiver_for(store_target, {GW: key})

    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker:
        async def scenario() -> CustomsMqttSink:
            watcher = Watcher(settings(broker, "customs", client_id="customs-test"), receiver)
            watching = asyncio.Event()
            watch = asyncio.create_task(watcher.run(watching))
            await watcher.connected.wait()
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(journal.path), str(key_path), GW,
                 str(broker.port), str(broker.ca_path)], stdout=subprocess.PIPE,
                env={**os.environ, "MQTT_PASSWORD": broker.passwords[GW]}, cwd=ROOT)
            try:
                assert child.stdout is not None
                line = await asyncio.to_thread(child.stdout.readline)
                assert line == b"delivered\n"
                await watcher.wait_until(lambda: receiver.counts["alerts"] == len(alerts))
            finally:
                child.kill()  # like a power cut: no goodbye, so the broker sends the last will
                child.wait()
            assert journal.cursor("customs.alerts") == 0  # acknowledged, but not yet stored
            await watcher.wait_until(lambda: receiver.store.gateways()[GW].state == "offline")

            tail = JournalTail(journal.head()[0])
            sink = CustomsMqttSink(journal, settings(broker, GW), policy=QUICK)  # booted again
            task = asyncio.create_task(sink.run(tail))
            await sink.wait_delivered(journal.head()[0], readings=True)
            await watcher.wait_until(lambda: receiver.counts["duplicates"] == len(alerts)
                                     and receiver.store.gateways()[GW].state == "online")
            await stop(task)
            watching.set()
            await watch
            return sink

        sink = run(scenario())

    assert stored_alerts(receiver.store) == alerts  # each once, although each arrived twice
    assert receiver.store.counts()["duplicates"] == len(alerts)
    assert stored_readings(receiver.store) == readings_of(journal)
    assert sink.counts["alerts_sent"] == len(alerts)
    assert journal.cursor("customs.alerts") == journal.head()[0]


def test_a_gateway_using_another_gateways_identity_is_refused_and_skips_nothing(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    journal, key = new_journal(tmp_path / "journal.db", gw="gw-b")
    journal.append(mixed(0, 50, 10))
    receiver = receiver_for(store_target, {"gw-b": key})

    with running_secure_mosquitto(tmp_path, pki, users=("gw-a", "gw-b", "customs")) as broker:
        async def scenario() -> tuple[CustomsMqttSink, Tap]:
            async with Tap(broker, receiver, gw="+") as tap:
                # gw-b's journal, logged in as gw-a: the ACL refuses every publish
                wrong = CustomsMqttSink(journal, settings(broker, "gw-a"), policy=QUICK)
                task = asyncio.create_task(wrong.run(JournalTail(journal.head()[0])))
                await wrong.failed.wait()
                await stop(task)
                async with aiomqtt.Client(broker.host, broker.port, username="gw-a",
                                          password=broker.passwords["gw-a"],
                                          tls_context=broker.tls()) as gw_a:
                    await gw_a.publish("sealtrail/v1/gw-a/status", b"marker", qos=1)
                await tap.wait(lambda: tap.on("status") == [b"marker"])
                assert journal.cursor("customs.alerts") == 0
                right = CustomsMqttSink(journal, settings(broker, "gw-b"), policy=QUICK)
                task = asyncio.create_task(right.run(JournalTail(journal.head()[0])))
                await right.wait_delivered(journal.head()[0], readings=True)
                await tap.wait(lambda: len(receiver.store.alerts()) == 5)
                await stop(task)
                return wrong, tap

        wrong, tap = run(scenario())

    assert wrong.counts["refused"] >= 1 and not wrong.counts["alerts_sent"]
    assert wrong.last_error is not None and "Not authorized" in wrong.last_error
    assert stored_alerts(receiver.store) == alerts_of(journal)
    assert tap.messages[0] == ("sealtrail/v1/gw-a/status", b"marker")  # nothing from gw-a
    # before the marker, nothing of gw-b's got through under gw-a's name


def test_after_an_outage_the_backlog_drains_paced_alerts_first(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    journal, key = new_journal(tmp_path / "journal.db")
    journal.append(mixed(0, 1200, 40))  # 30 alerts, 1,170 readings piled up while offline
    receiver = receiver_for(store_target, {GW: key})
    policy = DeliveryPolicy(window=4, max_rate=150.0, burst=4, readings_per_message=20,
                            housekeeping_s=0.05, readings_linger_s=0.02)

    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs"), start=False) as broker:
        async def scenario() -> tuple[CustomsMqttSink, Tap]:
            sink = CustomsMqttSink(journal, settings(broker, GW), policy=policy)
            task = asyncio.create_task(sink.run(JournalTail(journal.head()[0])))
            await sink.failed.wait()  # the gateway booted before the broker was reachable
            await asyncio.to_thread(broker.start)
            async with Tap(broker, receiver) as tap:
                await sink.wait_delivered(1200, readings=True)
                await tap.wait(lambda: len(stored_readings(receiver.store)) == 1170
                               and tap.statuses()[-1]["alerts_pending"] == 0)
                await stop(task)
                return sink, tap

        sink, tap = run(scenario())

    assert stored_alerts(receiver.store) == alerts_of(journal)
    assert stored_readings(receiver.store) == readings_of(journal)
    assert sink.max_in_flight == policy.window  # the window was used, and never exceeded
    assert sink.counts["paced"] > 0  # past the burst, the token bucket set the pace
    assert max(len(p.split(b"\n")) for p in tap.on("readings")) <= policy.readings_per_message
    assert_no_reading_ahead_of_an_alert(tap.messages, {s.seq for s in journal.alerts_after(0)})


def test_a_forged_seal_sentence_on_a_serial_port_reaches_customs_as_a_verified_alert(
        tmp_path: Path, pki: Path, store_target: str) -> None:
    journal, key = new_journal(tmp_path / "journal.db")
    seal_key = bytes(range(32))
    receiver = receiver_for(store_target, {GW: key})
    forged = SealMessage("SEAL0001", 7, "C", 90, T0,
                         compute_mac(b"\x99" * 32, "SEAL0001", 7, "C", 90, T0))

    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker, \
            PtyPair() as pty:
        async def scenario() -> None:
            async with Tap(broker, receiver) as tap:
                auth = SealAuthenticator(journal, {"SEAL0001": seal_key}, alert_interval_s=0)
                source = SerialSealSource(pty.path, auth, reader_id="lane1")
                sink = CustomsMqttSink(journal, settings(broker, GW))
                agent = Agent(journal, [source], [sink])
                halt = asyncio.Event()
                running = asyncio.create_task(agent.run(halt))
                await source.connected.wait()
                os.write(pty.master_fd, forged.sentence())
                await tap.wait(lambda: len(receiver.store.alerts()) == 1)
                halt.set()
                await running

        run(scenario())

    (row,) = receiver.store.alerts()
    assert row.type == "sensorAuthFailure" and row.trust.startswith("static trust")
    assert row.body["details"]["reason"] == "bad_mac"
    assert row.signed == journal.alerts_after(0)[0].signed
