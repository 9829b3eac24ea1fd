"""A small MQTT 5 subscriber: one persistent session, QoS 1 in, acknowledgements sent by us.

Why not paho (through aiomqtt) as elsewhere: the e-seal source receives hundreds of small
messages a second, and paho spends more CPU per message than signing the reading does (a
packet read in several 1-byte system calls, a Properties object, a threading.Condition per
message, an event-loop task per message through aiomqtt); on a Raspberry Pi that alone would
not keep up. This client reads whatever the socket holds in one call and parses every complete
packet in it, and writes the PUBACKs of a whole commit in one call. It speaks only what the
source needs (MQTT 5.0, OASIS standard, sections 3.1-3.14):

- CONNECT with clean start off, a session that does not expire, Receive Maximum (how many
  QoS 1 messages the broker may send before we acknowledge) and Maximum Packet Size (anything
  bigger is not sent to us: a message is bounded before it takes memory);
- SUBSCRIBE (QoS 1) and its SUBACK; PUBLISH in, with its DUP flag and packet id; PUBACK out
  (reason "success" omitted, section 3.4.2.1); PINGREQ every ``keepalive/2`` and a link that
  stays silent for ``1.5 x keepalive`` is dead; DISCONNECT out (normal: the session stays) and in.
- A PINGREQ after each batch of PUBACKs: the broker handles a client's packets in order, so its
  PINGRESP says those acknowledgements arrived (``confirmed`` counts what the caller marked
  them with): what is confirmed cannot be redelivered after a crash.

Waking up costs more than the work: at a port's 200 messages a second, one event-loop turn per
message (an epoll wake-up, a task switch) cost a quarter of the agent's CPU. So when messages
keep coming (a batch within ``2 x batch_s`` of the previous one), the socket is not read for
``batch_s`` after a batch: the kernel buffers what comes meanwhile (TCP flow control holds the
broker back if it is a lot) and the next read takes it all at once. A message on a quiet link
is read at once; under load it waits at most ``batch_s``. Its acknowledgement waits for the
commit anyway, and an alert it raises is still committed at once.
No topic aliases (we announce none), no QoS 2 (the broker downgrades to our QoS 1), no AUTH.
Every malformed or unexpected packet from the broker is a `WireError`: the connection is
dropped and the caller reconnects; nothing a broker sends can raise anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from dataclasses import dataclass

from edge_agent.ticks import aligned
from sealtrail.mqtt import MqttSettings

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"
READ_CHUNK = 64 * 1024
MAX_PACKET = 64 * 1024


class WireError(Exception):
    """The broker refused us, broke the protocol, or the link died: reconnect."""


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    packet_id: int  # 0 for QoS 0
    qos: int
    dup: bool  # the broker says it may have sent this before (section 3.3.1.1)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect_packet(client_id: str, *, keepalive: int, receive_maximum: int,
                   username: str | None, password: str | None,
                   session_expiry: int = 0xFFFFFFFF, max_packet: int = MAX_PACKET) -> bytes:
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    props = (b"\x11" + struct.pack("!I", session_expiry) + b"\x21"
             + struct.pack("!H", receive_maximum) + b"\x27" + struct.pack("!I", max_packet))
    body = (_string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
            + varint(len(props)) + props + _string(client_id))
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT, 0, body)


def subscribe_packet(packet_id: int, topic: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE, 2, struct.pack("!H", packet_id) + b"\x00" + _string(topic)
                   + bytes([qos]))


def puback_packets(packet_ids: list[int]) -> bytes:
    return b"".join(b"\x40\x02" + struct.pack("!H", pid) for pid in packet_ids)


def _read_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= end:
            raise WireError("truncated variable byte integer")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise WireError("variable byte integer longer than 4 bytes")


def split_packets(buf: bytearray) -> tuple[list[tuple[int, int, bytes]], int]:
    """Complete packets at the start of `buf` as (type, flags, body), and the bytes they
    took; an incomplete packet at the end is left for the next read."""
    out, pos, end = [], 0, len(buf)
    while pos < end:
        if pos + 2 > end:
            break
        try:
            length, start = _read_varint(buf, pos + 1, end)
        except WireError:
            if end - pos < 5:
                break  # the length itself is not all here yet
            raise
        if length > MAX_PACKET + 16:
            raise WireError(f"a {length}-byte packet, above the {MAX_PACKET} we announced")
        if start + length > end:
            break
        out.append((buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[start:start + length])))
        pos = start + length
    return out, pos


def parse_publish(flags: int, body: bytes) -> Publish:
    try:
        n = struct.unpack_from("!H", body, 0)[0]
        topic = body[2:2 + n].decode()
        pos = 2 + n
        qos = (flags >> 1) & 3
        packet_id = 0
        if qos:
            packet_id = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        props, pos = _read_varint(body, pos, len(body))
    except (struct.error, UnicodeDecodeError) as exc:
        raise WireError(f"malformed PUBLISH: {exc}") from None
    if qos == 3 or pos + props > len(body) or (qos and not packet_id) or n == 0:
        raise WireError("malformed PUBLISH")
    return Publish(topic, body[pos + props:], packet_id, qos, bool(flags & 8))


def _reason(code: int) -> str:
    names = {0x80: "unspecified error", 0x84: "unsupported protocol version",
             0x85: "client identifier not valid", 0x86: "bad user name or password",
             0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
             0x8E: "session taken over", 0x97: "quota exceeded"}
    return f"{names.get(code, 'error')} (0x{code:02x})"


class MqttSubscriber:
    """One connection; `connect`, `subscribe`, then `receive` batches and `ack` them."""

    def __init__(self, settings: MqttSettings, *, receive_maximum: int, batch_s: float = 0.0):
        self.settings = settings
        self.receive_maximum = receive_maximum
        self.batch_s = batch_s
        self.keepalive = settings.keepalive_s
        self._heard = 0.0  # loop time of the last bytes from the broker
        self._silent = False  # `_ping` gave up on a silent broker
        self._markers: deque[int] = deque()  # per PINGREQ sent: what its PINGRESP confirms
        self.confirmed = 0  # sum of the markers of the PINGRESPs received
        self._last_batch = -1.0  # loop time the last batch was handed over
        self.session_present = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._pending: list[Publish] = []
        self._next_id = 0
        self._pinger: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(max(5.0, s.keepalive_s)):
                self._reader, self._writer = await asyncio.open_connection(
                    s.host, s.port, ssl=s.tls, server_hostname=s.host if s.tls else None,
                    limit=READ_CHUNK)
                self._writer.write(connect_packet(
                    s.client_id, keepalive=s.keepalive_s, receive_maximum=self.receive_maximum,
                    username=s.username, password=s.password))
                kind, _flags, body = await self._next_control()
        except TimeoutError:
            await self.close()
            raise WireError(f"no CONNACK from {s.host}:{s.port}") from None
        except OSError as exc:
            await self.close()
            raise WireError(f"cannot connect to {s.host}:{s.port}: {exc}") from None
        if kind != CONNACK or len(body) < 2:
            await self.close()
            raise WireError(f"expected CONNACK, got packet type {kind}")
        if body[1] >= 0x80:
            await self.close()
            raise WireError(f"{s.host}:{s.port} refused the connection: {_reason(body[1])}")
        self.session_present = bool(body[0] & 1)
        self.keepalive = _server_keepalive(body) or s.keepalive_s
        self._pinger = asyncio.create_task(self._ping())

    async def subscribe(self, topic: str) -> None:
        packet_id = self._packet_id()
        assert self._writer is not None
        self._writer.write(subscribe_packet(packet_id, topic))
        kind, _flags, body = await self._next_control()
        if kind != SUBACK or len(body) < 4 or struct.unpack_from("!H", body)[0] != packet_id:
            raise WireError(f"expected the SUBACK of {topic}")
        length, pos = _read_varint(body, 2, len(body))
        code = body[pos + length] if pos + length < len(body) else 0x80
        if code >= 0x80:
            raise WireError(f"subscription to {topic} refused: {_reason(code)}")

    async def receive(self) -> list[Publish]:
        """Every PUBLISH that has arrived (at least one): whatever the socket held."""
        while not self._pending:
            await self._fill()
        out, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        now, last = loop.time(), self._last_batch
        self._last_batch = now
        if self.batch_s > 0 and now - last < 2 * self.batch_s and self._writer is not None:
            transport = self._writer.transport  # busy: see the module docstring
            transport.pause_reading()
            loop.call_later(aligned(self.batch_s, now), _resume, transport)
        return out

    def ack(self, packet_ids: list[int], marker: int = 0) -> bool:
        """PUBACK these, and a PINGREQ, in one write; its PINGRESP adds `marker` to
        `confirmed`. False if this connection is gone (the broker will deliver them again
        on the next one)."""
        if not self.open or not packet_ids:
            return False
        assert self._writer is not None
        self._markers.append(marker)
        self._writer.write(puback_packets(packet_ids) + PINGREQ_BYTES)
        return True

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(Exception):
            if not writer.is_closing():
                writer.write(DISCONNECT_BYTES)
            writer.close()
            async with asyncio.timeout(2.0):
                await writer.wait_closed()

    # -- reading ------------------------------------------------------------------------------

    async def _next_control(self) -> tuple[int, int, bytes]:
        """The next packet that is not a PUBLISH (those are kept for `receive`)."""
        while True:
            packets, used = split_packets(self._buf)
            for i, (kind, flags, body) in enumerate(packets):
                if kind == PUBLISH:
                    self._pending.append(parse_publish(flags, body))
                    continue
                rest = packets[i + 1:]
                del self._buf[:used]
                self._buf[:0] = b"".join(_packet(k, f, b) for k, f, b in rest)
                return kind, flags, body
            del self._buf[:used]
            await self._read()

    async def _fill(self) -> None:
        await self._read()
        packets, used = split_packets(self._buf)
        del self._buf[:used]
        for kind, flags, body in packets:
            if kind == PUBLISH:
                self._pending.append(parse_publish(flags, body))
            elif kind == PINGRESP:
                self.confirmed += self._markers.popleft() if self._markers else 0
            elif kind == DISCONNECT:
                raise WireError(f"the broker disconnected us: {_reason(body[0] if body else 0)}")
            else:
                raise WireError(f"unexpected packet type {kind}")

    async def _read(self) -> None:
        """Read what is there (no timer per read: `_ping` notices a silent link)."""
        if self._reader is None:
            raise WireError("not connected")
        try:
            data = await self._reader.read(READ_CHUNK)
        except OSError as exc:
            raise WireError(f"connection lost: {exc}") from None
        if not data:
            if self._silent:
                raise WireError(f"nothing from the broker for {self.keepalive * 1.5:.0f}s")
            raise WireError("the broker closed the connection")
        self._heard = asyncio.get_running_loop().time()
        self._buf += data

    async def _ping(self) -> None:
        """PINGREQ every keepalive/2; a broker silent for 1.5 keepalives (not even PINGRESP)
        is gone: the connection is closed, which ends the pending read."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        while self.open:
            await asyncio.sleep(self.keepalive / 2)
            if self._writer is None or self._writer.is_closing():
                return
            if loop.time() - self._heard > self.keepalive * 1.5:
                self._silent = True
                self._writer.transport.abort()
                return
            self._markers.append(0)
            self._writer.write(PINGREQ_BYTES)

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id


def _resume(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
        transport.resume_reading()


def _server_keepalive(connack: bytes) -> int | None:
    """Server Keep Alive (0x13) from CONNACK properties, if the broker set one."""
    try:
        length, pos = _read_varint(connack, 2, len(connack))
    except WireError:
        return None
    end = min(len(connack), pos + length)
    sizes = {0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1, 0x16: -2, 0x1A: -1, 0x1C: -1, 0x1F: -1,
             0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x26: -3, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}
    while pos < end:
        prop = connack[pos]
        size = sizes.get(prop)
        pos += 1
        if size is None:
            return None
        if prop == 0x13 and pos + 2 <= end:
            return int(struct.unpack_from("!H", connack, pos)[0]) or None
        if size > 0:
            pos += size
        else:  # strings and binary data: a two-byte length; user properties: two strings
            for _ in range(2 if size == -3 else 1):
                if pos + 2 > end:
                    return None
                pos += 2 + struct.unpack_from("!H", connack, pos)[0]
    return None
