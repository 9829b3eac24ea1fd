"""The e-seal source's MQTT 5 subset (edge_agent/sources/mqtt_wire.py) on bytes: whatever the
broker (or something pretending to be one) sends, parsing ends in packets or a WireError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sources.mqtt_wire import (
    PUBLISH,
    WireError,
    _packet,
    _string,
    parse_publish,
    puback_packets,
    split_packets,
    varint,
)


def publish(topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> bytes:
    body = _string(topic) + struct.pack("!H", packet_id) + b"\x00" + payload
    return _packet(PUBLISH, (8 if dup else 0) | 2, body)


def test_packets_split_whole_and_leave_a_partial_one_for_the_next_read() -> None:
    stream = publish("sealtrail/v1/gw/sensors/S1", b"x" * 300, 7) + \
        publish("sealtrail/v1/gw/sensors/S2", b"{}", 8, dup=True) + b"\xd0\x00"  # PINGRESP
    for cut in range(len(stream) + 1):
        buf = bytearray(stream[:cut])
        packets, used = split_packets(buf)
        assert stream[:used] == b"".join(_packet(k, f, b) for k, f, b in packets)
        rest, _ = split_packets(bytearray(stream[used:]))
        assert len(packets) + len(rest) == 3
    packets, _ = split_packets(bytearray(stream))
    first, second = (parse_publish(f, b) for k, f, b in packets[:2])
    assert (first.topic, first.packet_id, first.qos, first.dup) == \
        ("sealtrail/v1/gw/sensors/S1", 7, 1, False)
    assert (second.payload, second.dup) == (b"{}", True)
    assert packets[2][0] == 13


def test_variable_byte_integers_and_pubacks() -> None:
    assert [varint(n) for n in (0, 127, 128, 16383, 16384, 268_435_455)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01", b"\xff\xff\xff\x7f"]
    assert puback_packets([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


@pytest.mark.parametrize("flags, body", [
    (2, b""),  # no topic length
    (2, b"\x00\x05ab"),  # topic longer than the packet
    (2, _string("t")),  # QoS 1 without a packet id
    (2, _string("t") + b"\x00\x00\x00"),  # packet id 0
    (6, _string("t") + b"\x00\x01\x00"),  # QoS 3
    (2, _string("t") + b"\x00\x01\x05"),  # properties beyond the end
    (0, b"\x00\x00\x00"),  # empty topic (no alias is ever set up)
    (2, b"\x00\x02\xff\xfe\x00\x01\x00"),  # topic not UTF-8
])
def test_a_malformed_publish_is_a_wire_error(flags: int, body: bytes) -> None:
    with pytest.raises(WireError):
        parse_publish(flags, body)


def test_an_oversized_or_broken_length_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="above"):
        split_packets(bytearray(b"\x30" + varint(10_000_000)))
    with pytest.raises(WireError, match="longer than 4"):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_packets_or_a_wire_error(data: bytes) -> None:
    try:
        packets, used = split_packets(bytearray(data))
        for kind, flags, body in packets:
            if kind == PUBLISH:
                parse_publish(flags, body)
    except WireError:
        return
    assert 0 <= used <= len(data)
