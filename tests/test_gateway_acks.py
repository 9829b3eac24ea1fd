"""Delivered means stored at customs: alerts stay pending at the gateway until customs' signed
acknowledgement says so, through the deployed broker (TLS, passwords, ACL).

Customs here is the real receiver (customs.watch.Watcher, verifying and storing in SQLite, then
publishing its signed acknowledgement), run in a thread by tests/helpers/customs_receiver.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.customs_receiver import CustomsReceiver
from helpers.mosquitto import SecureBroker, make_test_ca, running_secure_mosquitto

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.customs_acks import AckPolicy, AckTracker
from edge_agent.sinks.customs_mqtt import CustomsMqttSink, DeliveryPolicy
from edge_agent.tail import JournalTail
from ledger_client.acks import make_ack
from ledger_client.keys import public_hex
from sealtrail.mqtt import MqttSettings

pytestmark = pytest.mark.integration
GW = "gw-a"
T0 = 1_790_000_000_000
NS = uuid.UUID("5d4c1a0e-2b7f-4c55-9d0e-7a11ac4b0001")
T = TypeVar("T")
QUICK = DeliveryPolicy(readings_linger_s=0.02, housekeeping_s=0.05)
PROMPT = AckPolicy(timeout_s=0.5, resend_max_s=2.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("pki"))


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def drafts(first: int, count: int, every: int = 3) -> list[Draft]:
    out = []
    for n in range(first, first + count):
        if n % every == 0:
            out.append(Draft(T0 + n, "alert", "rules", {
                "alert_id": str(uuid.uuid5(NS, f"alert/{n}")), "type": "routeDeviation",
                "severity": "critical", "asset": {"vehicle": "truck-1"}, "plan_id": None,
                "evidence": [], "details": {"n": n}}))
        else:
            out.append(Draft(T0 + n, "gps", "gps0", {"lat_e7": n, "lon_e7": 0}))
    return out


def settings(broker: SecureBroker, user: str, **kw: Any) -> MqttSettings:
    return MqttSettings(broker.host, broker.port, username=user,
                        password=broker.passwords[user], tls=broker.tls(),
                        backoff_s=(0.05, 0.3), **kw)


def receiver(broker: SecureBroker, path: Path, key: Ed25519PrivateKey,
             gateway: Ed25519PrivateKey) -> CustomsReceiver:
    return CustomsReceiver(broker.host, broker.port, store=path, service_key=key,
                           gateways={GW: public_hex(gateway)}, username="customs",
                           password=broker.passwords["customs"], tls=broker.tls())


def alerts_of(journal: Journal) -> dict[int, bytes]:
    return {s.seq: s.signed for s in journal.alerts_after(0, 100_000)}


def run(scenario: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_alerts_a_crashed_broker_lost_while_customs_was_away_reach_customs_when_it_is_back(
        tmp_path: Path, pki: Path) -> None:
    """Customs' receiver is offline; the broker takes 82 alerts (PUBACK) and then dies before
    saving them. The gateway, which holds them pending until customs acknowledges, sends them
    again once customs is back: every alert arrives, and the prev_alert chain lets customs
    acknowledge each one."""
    gw_key, customs_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=gw_key)
    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker:
        customs = receiver(broker, tmp_path / "customs.db", customs_key, gw_key).start()
        customs.stop()  # its session (and queue) stays at the broker: the receiver is "away"

        async def scenario() -> CustomsMqttSink:
            tail = JournalTail(0)
            sink = CustomsMqttSink(journal, settings(broker, GW), policy=QUICK,
                                   ack_keys=[raw(customs_key)], ack_policy=PROMPT)
            task = asyncio.create_task(sink.run(tail))
            await sink.connected.wait()
            stored = journal.append(drafts(1, 246))  # 82 alerts
            await tail.advanced(stored[-1].seq)
            await sink.wait_sent(stored[-1].seq)  # the broker has every one (PUBACK) ...
            assert sink.alerts_pending() == 82  # ... and none counts as delivered
            await asyncio.to_thread(broker.kill)  # before its next save
            (Path(broker.conf_path).parent / "mosquitto.db").unlink(missing_ok=True)
            await asyncio.to_thread(broker.start)
            await asyncio.to_thread(customs.start)
            last = max(alerts_of(journal))
            await asyncio.to_thread(customs.wait, lambda c: c.acked(GW) == last, 60)
            await sink.wait_delivered(stored[-1].seq)
            await stop(task)
            return sink

        sink = run(scenario())
        customs.stop()
    assert customs.stored(GW) == alerts_of(journal)  # every alert, exactly as journaled
    assert sink.acks is not None and sink.acks.counts["resent"] >= 1
    assert sink.alerts_pending() == 0
    assert journal.cursor("customs.alerts") == max(customs.stored(GW))
    chain = [json.loads(b)["body"]["prev_alert"] for _, b in sorted(customs.stored(GW).items())]
    assert chain == [0, *sorted(customs.stored(GW))[:-1]]  # each names the one before it


def test_an_ack_below_rewinds_one_beyond_the_head_or_untrusted_is_ignored(
        tmp_path: Path, pki: Path) -> None:
    gw_key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=gw_key)
    customs_key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with running_secure_mosquitto(tmp_path, pki, users=(GW, "customs")) as broker:
        customs = receiver(broker, tmp_path / "customs.db", customs_key, gw_key).start()

        async def scenario() -> CustomsMqttSink:
            tail = JournalTail(0)
            sink = CustomsMqttSink(journal, settings(broker, GW), policy=QUICK,
                                   ack_keys=[raw(customs_key)], ack_policy=PROMPT)
            task = asyncio.create_task(sink.run(tail))
            stored = journal.append(drafts(1, 30))  # alerts at 3, 6, ..., 30
            await tail.advanced(stored[-1].seq)
            await sink.wait_delivered(30)
            assert sink.acks is not None and sink.acks.acked == 30

            async with aiomqtt.Client(broker.host, broker.port, username="customs",
                                      password=broker.passwords["customs"],
                                      tls_context=broker.tls()) as c:
                # a customs instance restored from an old backup says it holds up to 12: the
                # gateway sends 15-30 again, and the receiver (which has them) says 30 again
                topic = f"sealtrail/v1/{GW}/acks"
                now = time.time_ns() // 1_000_000
                duplicates = customs.outcomes.get("duplicate", 0)
                sink.ack_seen.clear()
                await c.publish(topic, make_ack(customs_key, GW, 12, now), qos=1, retain=True)
                await sink.ack_seen.wait()
                await asyncio.to_thread(customs.wait, lambda r: r.outcomes.get(
                    "duplicate", 0) >= duplicates + 6, 30)  # 15, 18, 21, 24, 27, 30
                await sink.wait_delivered(30)

                # acknowledgements the gateway must not act on; a genuine one comes last, so
                # when it has been seen the others have been too (one publisher, in order)
                before = sink.acks.counts["acks"]  # the receiver's are all in by now
                for payload in (make_ack(customs_key, GW, 10_000, now),  # beyond the head
                                make_ack(stranger, GW, 30, now),  # not customs' key
                                make_ack(customs_key, "gw-b", 30, now),  # another gateway
                                b'{"format":"sealtrail-ack/1"}', b"\xff" * 50):
                    await c.publish(topic, payload, qos=1)
                await c.publish(topic, make_ack(customs_key, GW, 30, now), qos=1, retain=True)
                while sink.acks.counts["acks"] < before + 2:  # the one ahead, the last one
                    sink.ack_seen.clear()
                    await sink.ack_seen.wait()
            await stop(task)
            return sink

        sink = run(scenario())
        customs.stop()
    acks = sink.acks
    assert acks is not None
    assert acks.counts["acks_rewound"] == 1 and acks.counts["acks_ahead"] == 1
    assert acks.counts["acks_bad"] == 4
    assert acks.acked == 30 and journal.cursor("customs.alerts") == 30
    assert customs.stored(GW) == alerts_of(journal)  # each once, exactly as journaled


def test_resends_back_off_and_any_ack_or_new_connection_makes_them_prompt_again(
        tmp_path: Path) -> None:
    """AckTracker alone, on a journal file and a clock of our own."""
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=Ed25519PrivateKey.generate())
    journal.append(drafts(1, 12))  # alerts 3, 6, 9, 12
    key = Ed25519PrivateKey.generate()
    now = [0.0]
    tracker = AckTracker(journal, [raw(key)], policy=AckPolicy(timeout_s=10, resend_max_s=40,
                                                                per_round=2),
                         clock=lambda: now[0])
    for seq in (3, 6, 9, 12):
        tracker.took(seq)
    assert tracker.resend_due() == []  # not yet: customs has 10 s
    rounds = []
    for t in (10, 20, 30, 40, 50, 70, 110, 150):
        now[0] = t
        rounds.append((t, [a.seq for a in tracker.resend_due()]))
    # oldest first, two a round; the delay doubles: 10, 20, 40, then stays at 40
    assert [t for t, seqs in rounds if seqs] == [10, 30, 70, 110, 150]
    assert all(seqs == [3, 6] for _, seqs in rounds if seqs)
    assert tracker.on_message(make_ack(key, GW, 6, 1)) == "advanced"  # customs is back
    now[0] = 155.0
    assert [a.seq for a in tracker.resend_due()] == []  # prompt again: 10 s from the ack
    now[0] = 160.0
    assert [a.seq for a in tracker.resend_due()] == [9, 12]
    assert tracker.unacked() == (2, T0 + 9)
    assert tracker.delivered_through(12) == 8
    assert tracker.on_message(make_ack(key, GW, 13, 1)) == "ahead"  # head is 12
    assert tracker.on_message(make_ack(key, GW, 12, 1)) == "advanced"
    assert tracker.resend_due() == [] and tracker.unacked() == (0, None)
