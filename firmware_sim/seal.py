"""E-seal firmware: a keyed, counting, battery-powered seal and its two wire formats.

The seal authenticates every message with a truncated HMAC over its fields and a counter that
only goes up, so a gateway can tell a genuine reading from a forged (wrong key) or replayed
(old counter) one. Wire contract (DESIGN.md "Sensors on the wire"):

* MAC input: ASCII ``<seal_id>,<ctr>,<state>,<battery_pct>,<seal_t_ms>``; ``mac`` = the first
  16 bytes of HMAC-SHA256(seal key, input) as 32 lower-case hex digits. Same for both
  transports, so a reading relayed from serial to MQTT keeps its proof.
* Serial reader: ``$PSTSL,<fields>,<mac>*<XOR checksum>\\r\\n``.
* MQTT: a JSON object with the same fields (integers as JSON numbers).

Like ``nmea.py`` this encoder shares no code with the agent's decoder on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass

from firmware_sim.nmea import checksum

SEAL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
STATES = ("C", "O", "T")
"""Closed, opened, tampered."""

MAC_BYTES = 16
KEY_BYTES = 32


def mac_input(seal_id: str, ctr: int, state: str, battery_pct: int, seal_t_ms: int) -> bytes:
    """The bytes the MAC covers: every field before ``mac``, comma-separated ASCII."""
    return f"{seal_id},{ctr},{state},{battery_pct},{seal_t_ms}".encode("ascii")


def compute_mac(key: bytes, seal_id: str, ctr: int, state: str, battery: int, t_ms: int) -> str:
    """First 16 bytes of HMAC-SHA256(key, mac_input(...)) as lower-case hex."""
    digest = hmac.new(key, mac_input(seal_id, ctr, state, battery, t_ms), hashlib.sha256)
    return digest.digest()[:MAC_BYTES].hex()


@dataclass(frozen=True, slots=True)
class SealMessage:
    """One message as the seal sends it; encoding to either transport is lossless."""

    seal_id: str
    ctr: int
    state: str
    battery_pct: int
    seal_t_ms: int
    mac: str

    def sentence(self) -> bytes:
        """The serial reader's ``$PSTSL`` line, CRLF-terminated."""
        payload = (
            f"PSTSL,{self.seal_id},{self.ctr},{self.state},{self.battery_pct},"
            f"{self.seal_t_ms},{self.mac}"
        )
        return f"${payload}*{checksum(payload)}\r\n".encode("ascii")

    def json_payload(self) -> bytes:
        """The MQTT payload: compact JSON, fields in contract order."""
        obj = {
            "seal_id": self.seal_id,
            "ctr": self.ctr,
            "state": self.state,
            "battery_pct": self.battery_pct,
            "seal_t_ms": self.seal_t_ms,
            "mac": self.mac,
        }
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def check_seal_id(seal_id: str) -> str:
    """Return ``seal_id`` if it fits the wire contract, else raise ``ValueError``."""
    if not SEAL_ID_RE.fullmatch(seal_id):
        raise ValueError(f"seal id must match [A-Za-z0-9_-]{{1,32}}, got {seal_id!r}")
    return seal_id


class Seal:
    """One e-seal: key, counter, state, battery and clock.

    ``ctr`` is the counter of the last message sent (0 = none yet); every message, heartbeat or
    event, takes the next value, as firmware that persists its counter in flash would. The
    battery drains linearly with time since ``t0_ms`` and is reported in whole percent.
    """

    def __init__(
        self,
        seal_id: str,
        key: bytes,
        *,
        ctr: int = 0,
        state: str = "C",
        battery_pct: float = 100.0,
        drain_pct_per_h: float = 0.0,
        clock_skew_ms: int = 0,
        t0_ms: int = 0,
    ) -> None:
        check_seal_id(seal_id)
        if len(key) != KEY_BYTES:
            raise ValueError(f"seal key must be {KEY_BYTES} bytes, got {len(key)}")
        if ctr < 0:
            raise ValueError("ctr must be >= 0")
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        if not (math.isfinite(battery_pct) and 0 <= battery_pct <= 100):
            raise ValueError(f"battery_pct must be 0..100, got {battery_pct!r}")
        if not (math.isfinite(drain_pct_per_h) and drain_pct_per_h >= 0):
            raise ValueError(f"drain_pct_per_h must be >= 0, got {drain_pct_per_h!r}")
        self.seal_id = seal_id
        self.key = key
        self.ctr = ctr
        self.state = state
        self.battery_start = float(battery_pct)
        self.drain_pct_per_h = float(drain_pct_per_h)
        self.clock_skew_ms = clock_skew_ms
        self.t0_ms = t0_ms

    def battery_at(self, t_ms: int) -> int:
        """Whole percent left at ``t_ms`` (true time); never below 0."""
        hours = max(0, t_ms - self.t0_ms) / 3_600_000
        return max(0, math.floor(self.battery_start - self.drain_pct_per_h * hours))

    def message(self, t_ms: int, extra_skew_ms: int = 0) -> SealMessage:
        """Take the next counter value and sign a message stamped by the seal's own clock."""
        self.ctr += 1
        seal_t_ms = self.clock(t_ms) + extra_skew_ms
        return self.sign(self.ctr, self.state, self.battery_at(t_ms), seal_t_ms)

    def clock(self, t_ms: int) -> int:
        """The seal's own clock reading at true time ``t_ms``."""
        return t_ms + self.clock_skew_ms

    def sign(self, ctr: int, state: str, battery: int, seal_t_ms: int) -> SealMessage:
        """A message with arbitrary fields, MAC'd with this seal's key (no counter change)."""
        mac = compute_mac(self.key, self.seal_id, ctr, state, battery, seal_t_ms)
        return SealMessage(self.seal_id, ctr, state, battery, seal_t_ms, mac)

    def set_state(self, state: str) -> None:
        """Opening or tampering is sticky in real seals; closing again is allowed for tests."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self.state = state


def forge(message: SealMessage, wrong_key: bytes) -> SealMessage:
    """The same fields MAC'd with ``wrong_key``: what an attacker without the key can send."""
    mac = compute_mac(
        wrong_key,
        message.seal_id,
        message.ctr,
        message.state,
        message.battery_pct,
        message.seal_t_ms,
    )
    return SealMessage(
        message.seal_id, message.ctr, message.state, message.battery_pct, message.seal_t_ms, mac
    )
