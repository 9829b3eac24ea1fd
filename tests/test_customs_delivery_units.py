"""The customs sink's logic without a broker: acknowledged progress, pacing, and the
order in which it picks messages from a real journal file (alerts first; no reading ahead of
an unacknowledged earlier alert; cursors only past acknowledged messages)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.customs_mqtt import (
    ALERTS,
    ANCHORS,
    READINGS,
    CustomsMqttSink,
    DeliveryPolicy,
)
from edge_agent.sinks.pacing import Progress, TokenBucket
from edge_agent.sinks.tls import TlsConfigError, client_context
from edge_agent.tail import JournalTail
from sealtrail.mqtt import MqttSettings

T0 = 1_790_000_000_000


def test_progress_moves_only_over_a_contiguous_acknowledged_prefix() -> None:
    p = Progress(10)
    for upto in (12, 15, 20):
        p.issue(upto)
    assert (p.done, p.issued, p.in_flight, p.first_open()) == (10, 20, 3, 12)
    assert not p.ack(15)  # out of order: 12 still open
    assert p.done == 10 and p.in_flight == 2
    assert p.ack(12)
    assert p.done == 15 and p.first_open() == 20
    with pytest.raises(ValueError, match="in order"):
        p.issue(20)
    p.reset()  # the connection dropped with 20 unacknowledged: it will be issued again
    assert (p.done, p.issued, p.in_flight, p.first_open()) == (15, 15, 0, None)
    assert not p.ack(20)  # a late acknowledgement from the old connection changes nothing
    p.issue(20)
    assert p.ack(20) and p.done == 20


def test_token_bucket_lets_a_burst_out_then_paces_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=100.0, burst=3, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay() == pytest.approx(0.01)  # one token's worth at 100/s
    now[0] += 0.01  # the caller waited it out
    assert bucket.delay() == pytest.approx(0.01)
    now[0] += 10.0  # idle: the allowance refills, but only up to the burst
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay() > 0
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_delivery_policy_refuses_nonsense() -> None:
    for bad in ({"window": 0}, {"max_rate": 0}, {"readings_per_message": 0},
                {"ack_timeout_s": -1}):
        with pytest.raises(ValueError):
            DeliveryPolicy(**bad)  # type: ignore[arg-type]


def test_tls_context_verifies_and_names_a_bad_file(tmp_path: Path) -> None:
    ctx = client_context()
    assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        client_context(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsConfigError, match=r"junk\.pem"):
        client_context(tmp_path / "junk.pem")
    with pytest.raises(TlsConfigError, match="needs its certificate"):
        client_context(key=tmp_path / "client.key")


def _sink(tmp_path: Path, drafts: list[Draft], **policy: object) -> CustomsMqttSink:
    journal = Journal(tmp_path / "j.db", gateway_id="gw-a", key=Ed25519PrivateKey.generate())
    journal.append(drafts)
    sink = CustomsMqttSink(journal, MqttSettings("127.0.0.1"),
                           policy=DeliveryPolicy(readings_linger_s=0, **policy))  # type: ignore[arg-type]
    sink._tail = JournalTail(journal.head()[0])
    sink._reset_lanes()  # what a new connection does
    return sink


def _draft(seq: int, alerts: set[int]) -> Draft:
    if seq in alerts:
        return Draft(T0 + seq, "alert", "rules", {"alert_id": str(uuid.uuid4()), "type": "t",
                                                  "severity": "info"})
    return Draft(T0 + seq, "gps", "gps0", {"lat_e7": seq, "lon_e7": 0})


def _next(sink: CustomsMqttSink) -> tuple[str, int, list[int]] | None:
    """What the connection's pump would publish next (lane, upto, seqs in the payload)."""
    sink._scan_alerts()
    item = sink._next_item()
    if item is None:
        return None
    seqs = [int(line.split(b'"seq":')[1].split(b",")[0]) for line in item.payload.split(b"\n")] \
        if item.lane != ANCHORS else []
    return item.lane, item.upto, seqs


def _ack(sink: CustomsMqttSink, lane: str, upto: int) -> None:
    {ALERTS: sink._alerts, READINGS: sink._readings, ANCHORS: sink._anchors}[lane].ack(upto)
    sink._advanced()


def test_alerts_go_first_and_no_reading_passes_an_unacknowledged_earlier_alert(
        tmp_path: Path) -> None:
    alerts = {4, 9}
    sink = _sink(tmp_path, [_draft(s, alerts) for s in range(1, 15)], readings_per_message=100,
                 uplink_anchors=False)
    assert _next(sink) == (ALERTS, 4, [4])
    assert _next(sink) == (ALERTS, 9, [9])
    assert _next(sink) == (READINGS, 3, [1, 2, 3])  # below the first alert: free to go
    assert _next(sink) is None  # 5.. wait for alert 4's PUBACK
    _ack(sink, ALERTS, 9)
    assert _next(sink) is None  # 9 is in, but 4 is not
    _ack(sink, ALERTS, 4)
    assert _next(sink) == (READINGS, 14, [5, 6, 7, 8, 10, 11, 12, 13, 14])
    assert sink.delivered() == {ALERTS: 14, READINGS: 0, ANCHORS: 0}
    asyncio.run(sink.flush_cursors())  # 1..14 published, none acknowledged: cursor stays
    assert sink.journal.cursor("customs.readings") == 0
    assert sink.journal.cursor("customs.alerts") == 14
    _ack(sink, READINGS, 14)
    assert sink.delivered()[READINGS] == 0  # the message with 1..3 is still open
    _ack(sink, READINGS, 3)
    asyncio.run(sink.flush_cursors())
    assert sink.journal.cursor("customs.readings") == 14


def test_a_new_connection_sends_again_whatever_was_not_acknowledged(tmp_path: Path) -> None:
    alerts = {2, 3, 6}
    sink = _sink(tmp_path, [_draft(s, alerts) for s in range(1, 9)], readings_per_message=2,
                 uplink_anchors=False)
    assert [_next(sink) for _ in range(4)] == [(ALERTS, 2, [2]), (ALERTS, 3, [3]),
                                               (ALERTS, 6, [6]), (READINGS, 1, [1])]
    _ack(sink, ALERTS, 2)
    _ack(sink, READINGS, 1)
    sink._reset_lanes()  # dropped: 3 and 6 were never acknowledged
    assert _next(sink) == (ALERTS, 3, [3])
    assert _next(sink) == (ALERTS, 6, [6])
    assert _next(sink) is None  # the reading after alert 2 waits again for alert 3
    _ack(sink, ALERTS, 3)
    _ack(sink, ALERTS, 6)
    # two records per message, alerts left out: 3-4, 5-6, 7-8
    assert [_next(sink) for _ in range(4)] == [(READINGS, 4, [4]), (READINGS, 6, [5]),
                                               (READINGS, 8, [7, 8]), None]


def test_the_next_anchor_receipt_waits_for_its_batch_to_be_anchored(tmp_path: Path) -> None:
    sink = _sink(tmp_path, [_draft(s, set()) for s in range(1, 5)], uplink_readings=False)
    journal = sink.journal
    assert _next(sink) is None  # no batch yet
    journal.add_batch(1, 4, b"\x01" * 32, closed_ms=T0, reason="flush", cursor="anchor")
    sink._anchor_check_at = 0.0
    assert _next(sink) is None  # built, not anchored
    journal.update_batch(1, status="anchored", tx_hash=b"\x02" * 32, block_hash=b"\x03" * 32,
                         block_number=1, log_index=0, chain_id=1, contract="0x" + "00" * 20)
    sink._anchor_check_at = 0.0
    assert _next(sink) == (ANCHORS, 1, [])
