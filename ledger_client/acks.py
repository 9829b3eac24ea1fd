"""Delivery acknowledgements: customs tells a gateway which of its alerts are stored for good.

A broker's PUBACK only says the broker has the message; a broker that dies before saving it, or
a receiver that never comes back for its queue, loses it. So an alert stays pending at the
gateway, and is sent again, until customs says it is committed in the customs store. Customs
says it with a small message signed by the customs service's key, on a topic only customs may
write (``sealtrail/v1/<gw>/acks``, retained, so a gateway that reconnects learns the latest one
at once)::

    {"format": "sealtrail-ack/1", "gw": "<gateway id>", "acked_seq": N, "t_ms": T,
     "signer": "<Ed25519 public key hex>", "sig": "<hex>"}

``acked_seq`` is the highest alert seq S such that customs holds every alert of that gateway
with seq <= S. Customs can tell because each alert body names the seq of the gateway's previous
alert (``prev_alert``, 0 for the first), signed with the rest: it follows those links from the
last acknowledged alert. An ack lower than the one the gateway holds means customs lost data
(a store restored from a backup, a new store): the gateway sends again everything after it.

The signature covers ``b"sealtrail-ack/1\\n"`` + the canonical JSON of the message without
``sig`` (domain separated from records, plans and fence bundles signed by the same key).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger_client.records import MAX_SAFE_INT, canonical
from sealtrail import boundedjson
from sealtrail.errors import SealTrailError

FORMAT = "sealtrail-ack/1"
MAX_ACK_BYTES = 1024
_FIELDS = frozenset({"format", "gw", "acked_seq", "t_ms", "signer", "sig"})


class AckError(SealTrailError):
    """An acknowledgement that is malformed, for another gateway, or not from trusted customs."""


@dataclass(frozen=True, slots=True)
class Ack:
    gw: str
    acked_seq: int
    t_ms: int
    signer: bytes


def _signing_input(unsigned: dict[str, object]) -> bytes:
    return FORMAT.encode() + b"\n" + canonical(unsigned)


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_ack(key: Ed25519PrivateKey, gw: str, acked_seq: int, t_ms: int) -> bytes:
    """The signed acknowledgement message customs publishes for gateway ``gw``."""
    unsigned: dict[str, object] = {"format": FORMAT, "gw": gw, "acked_seq": acked_seq,
                                   "t_ms": t_ms, "signer": _raw(key.public_key()).hex()}
    sig = key.sign(_signing_input(unsigned)).hex()
    return canonical({**unsigned, "sig": sig})


def open_ack(payload: bytes, trusted: Collection[bytes], gw: str) -> Ack:
    """Check an acknowledgement for gateway ``gw`` against the raw customs keys ``trusted``."""
    try:
        doc = boundedjson.loads(payload, max_bytes=MAX_ACK_BYTES, max_depth=1)
    except boundedjson.JsonBoundError as exc:
        raise AckError(f"not an acknowledgement: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc["format"] != FORMAT:
        raise AckError(f"not a {FORMAT} message")
    seq, t_ms = doc["acked_seq"], doc["t_ms"]
    if not all(type(v) is int and 0 <= v <= MAX_SAFE_INT for v in (seq, t_ms)):
        raise AckError("acked_seq and t_ms must be integers >= 0")
    if doc["gw"] != gw:
        raise AckError(f"an acknowledgement for gateway {doc['gw']!r}, not {gw!r}")
    try:
        signer, sig = bytes.fromhex(doc["signer"]), bytes.fromhex(doc["sig"])
    except (TypeError, ValueError):
        raise AckError("signer and sig must be hex") from None
    if signer not in trusted:
        raise AckError(f"signed by {doc['signer'][:16]}…, not a trusted customs key")
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    try:
        Ed25519PublicKey.from_public_bytes(signer).verify(sig, _signing_input(unsigned))
    except (InvalidSignature, ValueError):
        raise AckError("signature does not verify") from None
    return Ack(gw, seq, t_ms, signer)

