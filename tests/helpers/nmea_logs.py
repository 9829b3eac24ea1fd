"""Receiver logs (tests/fixtures/nmea) and the binary protocols receivers mix into them."""

from __future__ import annotations

import random
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nmea"


def load(name: str) -> list[bytes]:
    text = (FIXTURES / f"{name}.nmea").read_bytes()
    lines = (line.rstrip(b"\r") for line in text.split(b"\n"))
    return [line for line in lines if line and not line.startswith(b"#")]


def ubx(cls: int, msg_id: int, payload: bytes) -> bytes:
    """A UBX frame (u-blox): sync B5 62, class, id, little-endian length, Fletcher checksum."""
    body = bytes([cls, msg_id]) + len(payload).to_bytes(2, "little") + payload
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return b"\xb5\x62" + body + bytes([a, b])


def sirf(payload: bytes) -> bytes:
    """A SiRF binary frame: A0 A2, 15-bit length, payload, 15-bit sum, B0 B3."""
    return (b"\xa0\xa2" + len(payload).to_bytes(2, "big") + payload
            + (sum(payload) & 0x7FFF).to_bytes(2, "big") + b"\xb0\xb3")


def binary_frame(rng: random.Random, *, no_newline: bool = False) -> bytes:
    size = rng.choice([92, 100, 8 + 12 * 50])  # NAV-PVT, NAV-DOP-ish, NAV-SAT of 50 SVs
    payload = rng.randbytes(size)
    if no_newline:  # a run of binary with no line end at all before the next `$`
        payload = payload.replace(b"\n", b"\x0b")
    if rng.random() < 0.5:
        return ubx(0x01, rng.choice([0x07, 0x35, 0x04]), payload)
    return sirf(payload)


def with_binary(lines: list[bytes], seed: int, *, no_newline: bool) -> bytes:
    """The log as a port mixing binary and NMEA delivers it: frames between sentences, and
    always more than a line's worth (512 bytes) before some of them."""
    rng = random.Random(seed)
    out = bytearray()
    for line in lines:
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 3)):
                out += binary_frame(rng, no_newline=no_newline)
        out += line + b"\r\n"
    return bytes(out)
