"""E-seal messages off the wire: the serial reader's $PSTSL sentence and the MQTT JSON object.

Pure decoding, no keys: both transports carry the same six fields, and both decode to one
``SealMessage`` so authentication (seal_auth) is written once. Decoding is strict on purpose:
the MAC covers the fields' exact text, so anything that is not the canonical form (a sign, a
leading zero, a float, an extra key) could never verify and is rejected here with its reason.
Nothing raises but ``Reject``.
"""

from __future__ import annotations

import hashlib
import json
import re
from binascii import unhexlify
from typing import Any, NamedTuple

from edge_agent.sources.nmea_fields import Reject, sentence_text, xor_bytes

SEAL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_UINT_RE = re.compile(r"0|[1-9]\d{0,15}")
_MAC_RE = re.compile(r"[0-9a-fA-F]{32}")
STATES = {"C": "closed", "O": "opened", "T": "tampered"}
MAX_INT = 2**53 - 1  # records are JSON: integers must survive any JSON reader
MAX_PAYLOAD = 512
_FIELDS = frozenset({"seal_id", "ctr", "state", "battery_pct", "seal_t_ms", "mac"})


class SealMessage(NamedTuple):
    """One decoded message, not yet authenticated (a NamedTuple: one is built per reading)."""

    seal_id: str
    ctr: int
    state: str  # C, O or T: the wire letter, kept so the MAC can be re-checked from a record
    battery_pct: int
    seal_t_ms: int
    mac: bytes

    def mac_input(self) -> bytes:
        return (f"{self.seal_id},{self.ctr},{self.state},{self.battery_pct},"
                f"{self.seal_t_ms}").encode("ascii")

    def expected_mac(self, key: bytes | MacKey) -> bytes:
        if not isinstance(key, MacKey):
            key = MacKey(key)
        return key.mac(self.mac_input())

    def body(self, via: str) -> dict[str, Any]:
        return {"seal_id": self.seal_id, "ctr": self.ctr, "state": self.state,
                "battery_pct": self.battery_pct, "seal_t_ms": self.seal_t_ms,
                "mac": self.mac.hex(), "via": via}

    def wire_text(self) -> str:
        """A readable rendering for alert details (the transport's exact bytes may not be)."""
        return f"{self.mac_input().decode()},{self.mac.hex()}"


class MacKey:
    """A seal key ready for HMAC-SHA256 (RFC 2104) with the padded key hashed once: a MAC is
    then two hash copies and updates, where hmac.digest sets the key up on every message."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def mac(self, data: bytes) -> bytes:
        """The first 16 bytes of HMAC-SHA256(key, data): what a $PSTSL message carries."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16]


def _message(seal_id: object, ctr: object, state: object, battery: object, seal_t: object,
             mac: object) -> SealMessage:
    if not isinstance(seal_id, str) or SEAL_ID_RE.fullmatch(seal_id) is None:
        raise Reject("bad_seal_id")
    if not isinstance(state, str) or state not in STATES:
        raise Reject("bad_state")
    for value in (ctr, battery, seal_t):
        if type(value) is not int or not 0 <= value <= MAX_INT:
            raise Reject("bad_number")
    assert isinstance(ctr, int) and isinstance(battery, int) and isinstance(seal_t, int)
    if battery > 100:
        raise Reject("bad_number")
    if not isinstance(mac, str) or _MAC_RE.fullmatch(mac) is None:
        raise Reject("bad_mac_field")
    return SealMessage(seal_id, ctr, state, battery, seal_t, bytes.fromhex(mac))


def _uint(text: str) -> int:
    if _UINT_RE.fullmatch(text) is None:
        raise Reject("bad_number")
    return int(text)


_SENTENCE_RE = re.compile(
    rb"\$(PSTSL,([A-Za-z0-9_-]{1,32}),(0|[1-9][0-9]{0,15}),([COT]),(0|[1-9][0-9]?|100),"
    rb"(0|[1-9][0-9]{0,15}),([0-9a-fA-F]{32}))\*([0-9A-Fa-f]{2})[\r\n \t]*")
"""A well-formed line in one match on its bytes (framing, fields and checksum digits); anything
else takes sentence_text and the field-by-field path, which name the reason it is rejected.
Readers send nothing but well-formed lines, so this is the path every reading takes."""


def decode_sentence(line: bytes) -> SealMessage:
    """``$PSTSL,<seal_id>,<ctr>,<state>,<battery_pct>,<seal_t_ms>,<mac>*hh``."""
    start = line.rfind(b"$")
    good = _SENTENCE_RE.fullmatch(line, max(start, 0))
    if good is not None and xor_bytes(good[1]) == int(good[8], 16):
        seal_id, ctr, state, battery, seal_t, mac = good.group(2, 3, 4, 5, 6, 7)
        if int(ctr) <= MAX_INT and int(seal_t) <= MAX_INT:
            return SealMessage(seal_id.decode(), int(ctr), state.decode(), int(battery),
                               int(seal_t), unhexlify(mac))
    text = sentence_text(line)
    fields = text.split(",")
    if fields[0] != "PSTSL":
        raise Reject("unsupported")
    if len(fields) != 7:
        raise Reject("bad_field_count")
    _, seal_id, ctr, state, battery, seal_t, mac = fields
    return _message(seal_id, _uint(ctr), state, _uint(battery), _uint(seal_t), mac)


_JSON_RE = re.compile(
    rb'\{"seal_id":"([A-Za-z0-9_-]{1,32})","ctr":(0|[1-9][0-9]{0,15}),"state":"([COT])",'
    rb'"battery_pct":(0|[1-9][0-9]?|100),"seal_t_ms":(0|[1-9][0-9]{0,15}),'
    rb'"mac":"([0-9a-fA-F]{32})"\}')
"""The payload as seals send it (compact, fields in contract order) in one match; any other
spelling of the same object takes the JSON decoder and the field checks."""


def decode_json(topic_seal_id: str, payload: bytes) -> SealMessage:
    """The MQTT form; the topic's seal id must match the payload's (ACLs are per topic)."""
    if len(payload) > MAX_PAYLOAD:
        raise Reject("too_long")
    good = _JSON_RE.fullmatch(payload)
    if good is not None:
        seal_id, ctr, state, battery, seal_t, mac = good.groups()
        if int(ctr) <= MAX_INT and int(seal_t) <= MAX_INT:
            if seal_id.decode() != topic_seal_id:
                raise Reject("topic_mismatch")
            return SealMessage(topic_seal_id, int(ctr), state.decode(), int(battery),
                               int(seal_t), unhexlify(mac))
    try:
        obj = _DECODER.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Reject("bad_json") from exc
    if not isinstance(obj, dict):
        raise Reject("bad_json")
    if set(obj) != _FIELDS:
        raise Reject("bad_fields")
    msg = _message(obj["seal_id"], obj["ctr"], obj["state"], obj["battery_pct"],
                   obj["seal_t_ms"], obj["mac"])
    if msg.seal_id != topic_seal_id:
        raise Reject("topic_mismatch")
    return msg


def _no_float(text: str) -> Any:
    raise Reject("bad_number")


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float)
