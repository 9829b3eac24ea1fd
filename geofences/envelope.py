"""Signed envelopes: how customs hands a plan or fence bundle to a gateway it cannot otherwise
authenticate (a file on a USB stick, a retained MQTT message relayed by anyone).

```
{"format": "sealtrail-signed/1", "kind": "plan" | "fences", "signer": "<Ed25519 pub hex>",
 "payload": "<the plan/bundle JSON text, exactly as signed>", "sig": "<hex Ed25519>"}
```

The signature covers ``b"sealtrail-signed/1\\n" + kind + b"\\n" + payload`` (UTF-8): the kind is
bound so a fence bundle can never be replayed as a plan, and the payload is the exact signed
text, never re-serialised, so every verifier hashes and checks the same bytes (``digest`` =
SHA-256 of them). Error split: ``SignatureError`` means "these bytes are not provably from a
trusted customs key" (malformed envelope, unsigned, unknown signer, bad signature); a plain
``GeofenceError`` means "authentic, but the payload is unusable". Either way the caller keeps the
plan it had.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from geofences.corridor import GeofenceError
from geofences.geojson import loads_strict
from geofences.plan import (
    FENCES_FORMAT,
    PLAN_FORMAT,
    FenceBundle,
    TransitPlan,
    parse_fences,
    parse_plan,
)
from sealtrail.errors import EXIT_FAILED, EXIT_USAGE

ENVELOPE_FORMAT = "sealtrail-signed/1"
KINDS = ("plan", "fences")
_PAYLOAD_FORMAT = {"plan": PLAN_FORMAT, "fences": FENCES_FORMAT}


MALFORMED = "malformed"
UNSIGNED = "unsigned"
UNKNOWN_SIGNER = "unknown_signer"
BAD_SIGNATURE = "bad_signature"


class SignatureError(GeofenceError):
    """The envelope is malformed, unsigned, from an untrusted key, or its signature is wrong.

    ``reason`` says which: ``malformed`` | ``unsigned`` | ``unknown_signer`` | ``bad_signature``.
    A malformed envelope is bad input (exit 2); the other reasons are a refusal (exit 1), which
    a script must be able to tell from "wrong file".
    """

    def __init__(self, message: str, reason: str = MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_code = EXIT_USAGE if reason == MALFORMED else EXIT_FAILED


def signing_input(kind: str, payload: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    return ENVELOPE_FORMAT.encode() + b"\n" + kind.encode() + b"\n" + payload


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Envelope:
    """A structurally sound envelope, not yet verified (``verify`` does that)."""

    kind: str
    signer: bytes
    payload: bytes
    sig: bytes

    @property
    def signer_hex(self) -> str:
        return self.signer.hex()

    def verify(self, trusted_keys: Collection[bytes], source: str = "<envelope>") -> None:
        """Raise ``SignatureError`` unless the signer is trusted and the signature is good."""
        if self.signer not in {bytes(k) for k in trusted_keys}:
            raise SignatureError(
                f"{source}: unknown signer {self.signer_hex}: not among the "
                f"{len(trusted_keys)} trusted customs key(s)",
                UNKNOWN_SIGNER,
            )
        try:
            Ed25519PublicKey.from_public_bytes(self.signer).verify(
                self.sig, signing_input(self.kind, self.payload)
            )
        except InvalidSignature:
            raise SignatureError(
                f"{source}: bad signature: the {self.kind} was altered after signing or was "
                f"not signed by {self.signer_hex}",
                BAD_SIGNATURE,
            ) from None


def read_envelope(data: bytes, source: str = "<envelope>") -> Envelope:
    """Parse an envelope's structure; ``SignatureError`` if it is not a signed envelope."""
    try:
        doc = loads_strict(data, "envelope")
    except GeofenceError as exc:
        raise SignatureError(f"{source}: {exc}") from None
    if not isinstance(doc, dict):
        raise SignatureError(f"{source}: not a signed envelope (expected a JSON object)")
    fmt = doc.get("format")
    if fmt in (PLAN_FORMAT, FENCES_FORMAT):
        raise SignatureError(
            f"{source}: unsigned {fmt} document; customs must sign it "
            f"(`sealtrail plan sign`) and the gateway accepts only the signed envelope",
            UNSIGNED,
        )
    if fmt != ENVELOPE_FORMAT:
        raise SignatureError(f"{source}: format is {fmt!r}, expected {ENVELOPE_FORMAT!r}")
    unknown = sorted(set(doc) - {"format", "kind", "signer", "payload", "sig"})
    if unknown:
        raise SignatureError(f"{source}: unknown envelope field(s) {', '.join(unknown)}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise SignatureError(f"{source}: kind is {kind!r}, expected 'plan' or 'fences'")
    sig_hex = doc.get("sig")
    if sig_hex is None or sig_hex == "":
        raise SignatureError(f"{source}: unsigned {kind}: the envelope has no 'sig'", UNSIGNED)
    signer = _hex_field(doc, "signer", 32, source)
    sig = _hex_field(doc, "sig", 64, source)
    payload = doc.get("payload")
    if not isinstance(payload, str):
        raise SignatureError(f"{source}: 'payload' must be the signed JSON text (a string)")
    try:
        payload_bytes = payload.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(f"{source}: payload is not valid Unicode text") from None
    return Envelope(kind, signer, payload_bytes, sig)


def _hex_field(doc: dict[str, object], name: str, size: int, source: str) -> bytes:
    value = doc.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise SignatureError(f"{source}: '{name}' must be {size} bytes of hex, got {value!r}")
    return raw


def sign_envelope(
    kind: str, payload: bytes, private_key: Ed25519PrivateKey, *, check: bool = True
) -> bytes:
    """Sign ``payload`` (the exact plan/bundle text) and return the envelope bytes.

    With ``check`` (default) the payload is parsed first, so customs cannot sign a plan a gateway
    would refuse; ``GeofenceError`` says why.
    """
    if kind not in KINDS:
        raise GeofenceError(f"kind must be 'plan' or 'fences', got {kind!r}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GeofenceError(f"payload is not UTF-8: {exc}") from None
    if check:
        (parse_plan if kind == "plan" else parse_fences)(payload, source=f"<{kind}>")
    sig = private_key.sign(signing_input(kind, payload))
    env = {
        "format": ENVELOPE_FORMAT,
        "kind": kind,
        "signer": _raw_public(private_key.public_key()).hex(),
        "payload": text,
        "sig": sig.hex(),
    }
    return (json.dumps(env, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def open_envelope(
    data: bytes, trusted_keys: Collection[bytes], source: str = "<envelope>"
) -> TransitPlan | FenceBundle:
    """Verify an envelope against trusted customs keys, then parse its payload.

    ``SignatureError`` before any payload is looked at if the bytes are not authentic;
    ``GeofenceError`` if an authentic payload is unusable (or its format contradicts ``kind``).
    """
    env = read_envelope(data, source)
    env.verify(trusted_keys, source)
    if env.kind == "plan":
        plan = parse_plan(env.payload, source=f"{source} (plan)")
        return replace(plan, signer=env.signer_hex)
    bundle = parse_fences(env.payload, source=f"{source} (fences)")
    return replace(bundle, signer=env.signer_hex)


def load_trusted_keys(path: str | Path) -> list[bytes]:
    """Customs public keys (hex, one per line; ``#`` starts a comment) as 32-byte raw keys."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeofenceError(f"{p}: cannot read trusted keys: {exc}") from None
    keys: list[bytes] = []
    for n, line in enumerate(text.splitlines(), start=1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        try:
            raw = bytes.fromhex(word)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise GeofenceError(
                f"{p}:{n}: not an Ed25519 public key (64 hex digits expected): {word!r}"
            )
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise GeofenceError(f"{p}:{n}: not a usable Ed25519 public key: {exc}") from None
        if raw not in keys:
            keys.append(raw)
    if not keys:
        raise GeofenceError(f"{p}: no trusted keys in the file")
    return keys
