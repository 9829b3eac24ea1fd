"""Multibase (base58btc), Multikey and did:key for Ed25519: the key forms a DID carries.

An Ed25519 public key travels as ``z`` + base58btc(0xed 0x01 || 32 key bytes), which always
starts ``z6Mk``; ``did:key:`` + that string is a DID whose document is derived from the key
alone, so it resolves offline with nothing fetched. The secret-key form (multicodec 0x8026,
``z3u2...``) is only read, for the W3C test vectors: our keys live in PEM files.
"""

from __future__ import annotations

import re

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
ED25519_PUB_PREFIX = b"\xed\x01"  # multicodec ed25519-pub, varint-encoded
ED25519_PRIV_PREFIX = b"\x80\x26"  # multicodec ed25519-priv, varint-encoded
DID_KEY_PREFIX = "did:key:"
MAX_ENCODED = 256  # base58 decoding is quadratic; no key or signature we read is longer
_DID_KEY = re.compile(r"^did:key:z[1-9A-HJ-NP-Za-km-z]+$")


class MultikeyError(ValueError):
    """A string that is not the multibase or Multikey form it claims to be."""


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (leading zero bytes become leading '1's)."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    if len(text) > MAX_ENCODED:
        raise MultikeyError(f"base58 string of {len(text)} characters is too long")
    n = 0
    for ch in text:
        try:
            n = n * 58 + _INDEX[ch]
        except KeyError:
            raise MultikeyError(f"{ch!r} is not a base58btc character") from None
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def multibase_encode(data: bytes) -> str:
    """Multibase base58btc: the ``z`` prefix names the alphabet."""
    return "z" + b58encode(data)


def multibase_decode(text: str) -> bytes:
    """Only base58btc is accepted: it is what eddsa-jcs-2022 and Multikey prescribe."""
    if not isinstance(text, str) or not text.startswith("z"):
        raise MultikeyError("multibase value must be base58btc (start with 'z')")
    return b58decode(text[1:])


def public_multikey(public_key: bytes) -> str:
    """The ``publicKeyMultibase`` of a raw 32-byte Ed25519 public key (``z6Mk...``)."""
    if len(public_key) != 32:
        raise MultikeyError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return multibase_encode(ED25519_PUB_PREFIX + public_key)


def decode_public_multikey(text: str) -> bytes:
    """Raw 32-byte Ed25519 public key from a ``publicKeyMultibase``; refuses other key types."""
    raw = multibase_decode(text)
    if raw[:2] != ED25519_PUB_PREFIX or len(raw) != 34:
        raise MultikeyError(f"{text[:16]}... is not an Ed25519 public Multikey")
    return raw[2:]


def decode_secret_multikey(text: str) -> bytes:
    """Raw 32-byte Ed25519 seed from a ``secretKeyMultibase`` (test vectors only)."""
    raw = multibase_decode(text)
    if raw[:2] != ED25519_PRIV_PREFIX or len(raw) != 34:
        raise MultikeyError("not an Ed25519 secret Multikey")
    return raw[2:]


def did_key(public_key: bytes) -> str:
    """``did:key:z6Mk...`` for a raw Ed25519 public key."""
    return DID_KEY_PREFIX + public_multikey(public_key)


def did_key_public(did: str) -> bytes:
    """The raw public key a did:key names (a fragment, if any, is ignored)."""
    base = did.split("#", 1)[0]
    if not _DID_KEY.match(base):
        raise MultikeyError(f"{base[:40]!r} is not a did:key")
    return decode_public_multikey(base[len(DID_KEY_PREFIX):])
