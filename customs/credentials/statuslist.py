"""Bitstring Status List v1.0: how customs revokes a credential it issued (a trip re-opened
after an appeal), and how a verifier checks that it has not.

The customs service publishes one status-list credential per list: a signed VC whose subject
holds ``encodedList``, multibase base64url (``u``) of the GZIP of a bitstring of at least
131,072 bits (16 KiB, the specification's minimum, so one list hides which credential a
verifier asks about). Bit 0 is the most significant bit of the first byte. A credential points
at its bit with a ``BitstringStatusListEntry``; a set bit means revoked (or suspended, for a
``suspension`` list). Only ``statusSize`` 1 is supported: we have no multi-valued statuses.

Changing a bit re-signs the whole list (``set_status`` then ``proof.add_proof``), with
``validFrom`` moved to the time of the change, so a verifier holding two copies can tell the
newer one.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Mapping
from typing import Any

from customs.credentials.dates import xsd_datetime
from customs.credentials.did import PinSet, issuer_did
from customs.credentials.errors import CredentialError, Revoked, StatusListError
from customs.credentials.loader import CREDENTIALS_V2

MIN_BITS = 131_072
MAX_LIST_BYTES = 16 * 1024 * 1024  # decompression bound: a list this big is an attack
PURPOSES = ("revocation", "suspension")
LIST_TYPE = "BitstringStatusListCredential"
ENTRY_TYPE = "BitstringStatusListEntry"


def encode_list(bits: bytes) -> str:
    """``encodedList`` of a bitstring (GZIP with a zero timestamp, so equal lists encode
    equally)."""
    packed = gzip.compress(bytes(bits), compresslevel=9, mtime=0)
    return "u" + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def decode_list(encoded: Any) -> bytes:
    """The bitstring of an ``encodedList``; StatusListError if it is not one."""
    if not isinstance(encoded, str) or not encoded.startswith("u"):
        raise StatusListError("encodedList must be multibase base64url (start with 'u')")
    body = encoded[1:]
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        bits = inflater.decompress(packed, MAX_LIST_BYTES + 1)
    except (ValueError, zlib.error) as exc:
        raise StatusListError(f"encodedList is not base64url GZIP: {exc}") from None
    if len(bits) > MAX_LIST_BYTES:
        raise StatusListError("encodedList expands beyond 16 MiB")
    if len(bits) * 8 < MIN_BITS:
        raise StatusListError(f"the status list has {len(bits) * 8} bits, fewer than the "
                              f"{MIN_BITS} the specification requires")
    return bits


def get_bit(bits: bytes, index: int) -> bool:
    _check_index(bits, index)
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def with_bit(bits: bytes, index: int, value: bool) -> bytes:
    _check_index(bits, index)
    out = bytearray(bits)
    mask = 0x80 >> (index % 8)
    out[index // 8] = out[index // 8] | mask if value else out[index // 8] & ~mask
    return bytes(out)


def _check_index(bits: bytes, index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(bits) * 8:
        raise StatusListError(f"status index {index!r} is outside the list's "
                              f"{len(bits) * 8} entries")


def status_entry(list_id: str, index: int, purpose: str = "revocation") -> dict[str, Any]:
    """The ``credentialStatus`` a credential carries to point at bit ``index`` of a list."""
    if purpose not in PURPOSES:
        raise StatusListError(f"status purpose must be one of {', '.join(PURPOSES)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MIN_BITS * 128:
        raise StatusListError(f"status index {index!r} is not a list position")
    return {"id": f"{list_id}#{index}", "type": ENTRY_TYPE, "statusPurpose": purpose,
            "statusListIndex": str(index), "statusListCredential": list_id}


def list_credential(list_id: str, issuer: str, *, valid_from_ms: int,
                    purpose: str = "revocation", length_bits: int = MIN_BITS,
                    bits: bytes | None = None) -> dict[str, Any]:
    """An unsigned BitstringStatusListCredential (all bits clear unless ``bits`` is given)."""
    if purpose not in PURPOSES:
        raise StatusListError(f"status purpose must be one of {', '.join(PURPOSES)}")
    if bits is None:
        if length_bits < MIN_BITS or length_bits % 8:
            raise StatusListError(f"a status list has at least {MIN_BITS} bits, in whole bytes")
        bits = bytes(length_bits // 8)
    return {"@context": [CREDENTIALS_V2], "id": list_id,
            "type": ["VerifiableCredential", LIST_TYPE], "issuer": issuer,
            "validFrom": xsd_datetime(valid_from_ms),
            "credentialSubject": {"id": f"{list_id}#list", "type": "BitstringStatusList",
                                  "statusPurpose": purpose, "encodedList": encode_list(bits)}}


def list_bits(list_cred: Mapping[str, Any]) -> bytes:
    subject = list_cred.get("credentialSubject")
    if not isinstance(subject, Mapping) or subject.get("type") != "BitstringStatusList":
        raise StatusListError("the status list's credentialSubject is not a BitstringStatusList")
    return decode_list(subject.get("encodedList"))


def set_status(list_cred: Mapping[str, Any], index: int, value: bool, *,
               valid_from_ms: int) -> dict[str, Any]:
    """The list with bit ``index`` set (revoked) or cleared, unsigned: sign it again."""
    bits = with_bit(list_bits(list_cred), index, value)
    subject = dict(list_cred["credentialSubject"], encodedList=encode_list(bits))
    out = {k: v for k, v in list_cred.items() if k != "proof"}
    out.update(credentialSubject=subject, validFrom=xsd_datetime(valid_from_ms))
    return out


def check_status(credential: Mapping[str, Any], status_list: Mapping[str, Any], pins: PinSet,
                 *, now_ms: int, max_skew_ms: int) -> None:
    """Revoked if the list has the credential's bit set; StatusListError if this list cannot
    answer for the credential (another list, issuer or purpose, or it does not verify)."""
    from customs.credentials.verify import verify_credential

    raw = credential.get("credentialStatus")
    entries = raw if isinstance(raw, list) else [raw]
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("type") != ENTRY_TYPE:
            kind = entry.get("type") if isinstance(entry, Mapping) else entry
            raise StatusListError(f"credentialStatus type {str(kind)[:60]!r} is not supported; "
                                  f"only {ENTRY_TYPE}")
        list_id = entry.get("statusListCredential")
        if list_id != status_list.get("id"):
            raise StatusListError(f"the credential's status list is {str(list_id)[:100]}, the "
                                  f"file given is {str(status_list.get('id'))[:100]}")
        try:
            verified = verify_credential(status_list, pins, now_ms=now_ms, check_status=False,
                                         max_skew_ms=max_skew_ms)
        except CredentialError as exc:
            raise StatusListError(f"the status list does not verify: {exc.message}") from None
        if LIST_TYPE not in verified.types:
            raise StatusListError(f"the status list is not a {LIST_TYPE}")
        if verified.issuer != issuer_did(credential.get("issuer")):
            raise StatusListError(f"the status list is issued by {verified.issuer[:80]}, not by "
                                  "the credential's issuer")
        subject = status_list["credentialSubject"]
        purpose = entry.get("statusPurpose")
        if not isinstance(subject, Mapping) or subject.get("statusPurpose") != purpose:
            raise StatusListError(f"the status list's purpose is not the entry's {purpose!r}")
        if entry.get("statusSize", 1) != 1:
            raise StatusListError("only statusSize 1 is supported")
        index_text = entry.get("statusListIndex")
        if (not isinstance(index_text, str) or not index_text.isascii()
                or not index_text.isdigit() or len(index_text) > 12):
            raise StatusListError(f"statusListIndex {index_text!r} is not a decimal string")
        index = int(index_text)
        if get_bit(list_bits(status_list), index):
            word = "revoked" if purpose == "revocation" else "suspended"
            raise Revoked(f"{word}: bit {index} of status list {str(list_id)[:100]} is set")
