"""Signed, hash-chained records: the one format readings and alerts share.

The format is the contract in DESIGN.md "Records". Records hold integers only (no floats), so
RFC 8785 (JCS) canonical form is sorted-key compact UTF-8 JSON, which the C JSON encoder produces
quickly. Two invariants make that equality hold and are enforced here rather than trusted:
every number is an integer within +/-(2**53 - 1) (JCS serialises numbers as IEEE doubles), and
every object key is ASCII (JCS sorts keys by UTF-16 code units, Python by code points; the two
orders agree on ASCII).

This module lives in ledger_client, not edge_agent, because customs verifies records with no
gateway code at all; the agent imports it, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_str  # type: ignore[attr-defined]  # the C one
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealtrail import boundedjson
from sealtrail.errors import SealTrailError

VERSION = 1
GENESIS_PREV = "0" * 64
KINDS = frozenset({"gps", "seal", "alert", "status", "audit"})
"""``audit``: an entry of the customs office's audit chain (customs/audit.py), signed by the
customs service key. Same format and checks as a gateway's records, so the same verifiers
(chain, Merkle batches, `sealtrail verify`) work on it."""
MAX_SAFE_INT = 2**53 - 1
FIELDS = ("v", "gw", "seq", "t_ms", "kind", "src", "body", "prev", "sig")
MAX_RECORD_BYTES = 64 * 1024
"""The largest record a gateway may sign (an alert with its evidence list is a few kB): what
anyone receiving records refuses before parsing. ``RecordSigner`` refuses to sign more."""

_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


class RecordError(SealTrailError, ValueError):
    """A record that is malformed or does not verify; `seq` and `field` say where."""

    exit_code = 2  # met by a command, it is a bad input file

    def __init__(self, message: str, *, seq: int | None = None, field: str | None = None):
        where = []
        if seq is not None:
            where.append(f"seq {seq}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.seq = seq
        self.field = field


def check_json_value(value: Any, path: str = "body") -> None:
    """Refuse anything whose JCS form would differ from sorted compact JSON.

    Called on every body before signing, so a float slipping in from a decoder is a loud error
    at the source instead of a record that a JCS verifier elsewhere would reject.
    """
    if type(value) is dict and all(  # the common flat body, checked without recursing
            (type(v) is int and -MAX_SAFE_INT <= v <= MAX_SAFE_INT) or type(v) is str
            for v in value.values()) and all(type(k) is str and k.isascii() for k in value):
        return
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return
        raise RecordError(f"{path}: integer {value} is outside +/-(2**53-1)", field=path)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise RecordError(f"{path}: object keys must be ASCII strings, got {key!r}",
                                  field=path)
            check_json_value(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json_value(item, f"{path}[{i}]")
        return
    raise RecordError(f"{path}: {type(value).__name__} is not allowed (integers only, no floats)",
                      field=path)


def canonical(obj: dict[str, Any]) -> bytes:
    """Canonical bytes (RFC 8785 for integer-only JSON) of a record or any JSON object."""
    return _encoder.encode(obj).encode("utf-8")


def record_hash(signed: bytes) -> bytes:
    """SHA-256 of a record's signed bytes: what the next record's `prev` names."""
    return hashlib.sha256(signed).digest()


def sign_record(unsigned: dict[str, Any], key: Ed25519PrivateKey) -> tuple[dict[str, Any], bytes]:
    """Sign a record (all fields but `sig`); returns the record and its signed bytes.

    The body is validated first, so nothing unsignable ever reaches the journal. The journal
    signs through ``RecordSigner``, which gives the same bytes faster; this is the plain form.
    """
    check_json_value(unsigned.get("body"))
    sig = key.sign(canonical(unsigned)).hex()
    record = dict(unsigned, sig=sig)
    signed = canonical(record)
    if len(signed) > MAX_RECORD_BYTES:
        raise RecordError(f"{len(signed)} bytes: larger than a record may be "
                          f"({MAX_RECORD_BYTES})", seq=unsigned.get("seq"))
    return record, signed


class RecordSigner:
    """Signs the successive records of one gateway: the journal's per-reading hot path.

    The canonical bytes are assembled around the body's encoding instead of encoding the whole
    record twice (once without ``sig`` to sign, once with it to store). The top-level keys are
    fixed, and in sorted order ``sig`` sits between ``seq`` and ``src``, so both byte strings
    share a head and a tail. ``tests/test_records.py`` holds it equal to ``canonical``.
    """

    def __init__(self, gateway_id: str, key: Ed25519PrivateKey):
        self._key = key
        self._gw = _json_str(gateway_id)

    def sign(self, seq: int, t_ms: int, kind: str, src: str, body: Mapping[str, Any],
             prev: str) -> bytes:
        """Signed bytes of record ``seq``; RecordError if the body or a number is unsignable."""
        if type(t_ms) is not int or not -MAX_SAFE_INT <= t_ms <= MAX_SAFE_INT:
            raise RecordError(f"t_ms {t_ms!r} is not an integer within +/-(2**53-1)",
                              field="t_ms")
        head = (f'{{"body":{_body_json(body)},"gw":{self._gw},"kind":{_json_str(kind)},'
                f'"prev":"{prev}","seq":{seq}')
        tail = f',"src":{_json_str(src)},"t_ms":{t_ms},"v":{VERSION}}}'
        unsigned = (head + tail).encode()
        if len(unsigned) > MAX_RECORD_BYTES - 150:  # room for ',"sig":"<128 hex>"'
            raise RecordError(f"{len(unsigned)} bytes: larger than a record may be "
                              f"({MAX_RECORD_BYTES})", seq=seq)
        sig = self._key.sign(unsigned).hex()
        return f'{head},"sig":"{sig}"{tail}'.encode()


def _body_json(body: Mapping[str, Any]) -> str:
    """Canonical JSON of a body; a flat body of ASCII keys and safe integers or strings (every
    reading) is written here in one pass that also does ``check_json_value``'s job."""
    keys = tuple(body)
    layout = _LAYOUTS.get(keys)
    if layout is None:
        layout = _layout(keys)
    if layout is not None:
        parts = []
        for name, head in layout:
            value = body[name]
            kind = type(value)
            if kind is int and -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                parts.append(head + str(value))
            elif kind is str:
                parts.append(head + _json_str(value))
            else:
                break  # nested, bool, None or unsafe: the general path checks and encodes it
        else:
            return "{" + ",".join(parts) + "}"
    check_json_value(body)
    return _encoder.encode(body)


_LAYOUTS: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}
"""Key order -> each key with its encoded ``"key":`` in canonical (sorted) order. A source
builds its bodies with the same keys in the same order, so sorting and encoding the keys is
done once per kind of body rather than once per reading."""


def _layout(keys: tuple[Any, ...]) -> tuple[tuple[str, str], ...] | None:
    """The layout of a body's key order; None (take the general path) if a key is not an
    ASCII string. Only a few dozen orders exist; the bound guards against a generator of
    endless new ones (a bug, or keys derived from input)."""
    if not all(type(k) is str and k.isascii() for k in keys):
        return None
    layout = tuple((k, f"{_json_str(k)}:") for k in sorted(keys))
    if len(_LAYOUTS) < 1024:
        _LAYOUTS[keys] = layout
    return layout


def parse(signed: bytes) -> dict[str, Any]:
    """Parse signed bytes, insisting they are already in canonical form.

    Accepting a non-canonical encoding would let two byte strings carry one record, and the
    Merkle leaf is over the bytes, so the bytes must be the one true form.
    """
    try:
        record = boundedjson.loads(signed, max_bytes=MAX_RECORD_BYTES, decoder=_DECODER)
    except boundedjson.JsonBoundError as exc:
        raise RecordError(f"not a record: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError("a record must be a JSON object")
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    try:
        if not signed.isascii():  # numbers were checked while parsing; keys only matter
            check_json_value(record, "record")  # when something is not ASCII
        same = canonical(record) == signed
    except RecordError as exc:
        raise RecordError(str(exc), seq=seq) from exc
    except UnicodeEncodeError:  # a lone surrogate (\ud800) has no UTF-8 form
        raise RecordError("a string holds a lone surrogate (not valid Unicode)", seq=seq) from None
    if not same:
        raise RecordError("bytes are not in canonical form", seq=seq)
    return record


def _no_float(text: str) -> Any:
    raise ValueError(f"number {text[:40]} is not an integer (records hold integers only)")


def _safe_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise ValueError(f"integer {text[:40]} is outside +/-(2**53-1)")
    return value


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_int=_safe_int,
                            parse_constant=_no_float)
"""Refuses floats, NaN and unsafe integers while parsing, in the C scanner's stride."""


def check_schema(record: dict[str, Any], gateway_id: str | None = None) -> None:
    """Check the common fields, naming the first one that is wrong."""
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    for name in FIELDS:
        if name not in record:
            raise RecordError("missing", seq=seq, field=name)
    extra = sorted(set(record) - set(FIELDS))
    if extra:
        raise RecordError("unknown field", seq=seq, field=extra[0])
    if record["v"] != VERSION:
        raise RecordError(f"version must be {VERSION}", seq=seq, field="v")
    if not isinstance(record["gw"], str) or not record["gw"]:
        raise RecordError("must be a non-empty string", seq=seq, field="gw")
    if gateway_id is not None and record["gw"] != gateway_id:
        raise RecordError(f"gateway {record['gw']!r} is not {gateway_id!r}", seq=seq, field="gw")
    if isinstance(record["seq"], bool) or not isinstance(record["seq"], int) or record["seq"] < 1:
        raise RecordError("must be an integer >= 1", seq=seq, field="seq")
    if isinstance(record["t_ms"], bool) or not isinstance(record["t_ms"], int):
        raise RecordError("must be an integer (Unix ms)", seq=seq, field="t_ms")
    if record["kind"] not in KINDS:
        raise RecordError(f"must be one of {sorted(KINDS)}", seq=seq, field="kind")
    if not isinstance(record["src"], str):
        raise RecordError("must be a string", seq=seq, field="src")
    if not isinstance(record["body"], dict):
        raise RecordError("must be an object", seq=seq, field="body")
    for name, length in (("prev", 64), ("sig", 128)):
        value = record[name]
        if not isinstance(value, str) or len(value) != length or not _is_lower_hex(value):
            raise RecordError(f"must be {length} lowercase hex digits", seq=seq, field=name)


_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _is_lower_hex(text: str) -> bool:
    return _LOWER_HEX.fullmatch(text) is not None  # a regex: 6x faster than a per-char loop


def verify_signature(record: dict[str, Any], public_key: Ed25519PublicKey) -> None:
    """Check `sig` over the record without it; RecordError names the record if it fails."""
    unsigned = {k: v for k, v in record.items() if k != "sig"}
    try:
        public_key.verify(bytes.fromhex(record["sig"]), canonical(unsigned))
    except (InvalidSignature, ValueError) as exc:
        raise RecordError("signature does not verify with the gateway key",
                          seq=record.get("seq"), field="sig") from exc


def verify_signed(signed: bytes, record: dict[str, Any], public_key: Ed25519PublicKey) -> None:
    """``verify_signature`` for bytes that ``parse`` returned ``record`` from (so canonical),
    without encoding the record again: the unsigned form is the signed bytes minus
    ``,"sig":"<hex>"``. In canonical order ``sig`` comes after body, gw, kind, prev and seq and
    before src, t_ms and v; nothing after it (a string, two integers) can hold that text with
    bare quotes, so the last occurrence is the record's own. A receiver's hot path."""
    sig = record["sig"]
    marker = b',"sig":"' + sig.encode() + b'"'
    at = signed.rfind(marker)
    try:
        if at < 0:
            raise ValueError("no signature field")
        public_key.verify(bytes.fromhex(sig), signed[:at] + signed[at + len(marker):])
    except (InvalidSignature, ValueError) as exc:
        raise RecordError("signature does not verify with the gateway key",
                          seq=record.get("seq"), field="sig") from exc


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a clean chain verification covered."""

    first_seq: int
    last_seq: int
    count: int
    head_hash: bytes


def verify_chain(
    signed_records: Iterable[bytes],
    public_key: Ed25519PublicKey,
    *,
    gateway_id: str | None = None,
    expect_first_seq: int = 1,
    prev_hash: bytes | None = None,
) -> ChainReport:
    """Verify a contiguous run of signed records; raise at the first broken field or link.

    `prev_hash` is the hash of the record before `expect_first_seq` when verifying a run that
    does not start at 1 (for seq 1 the genesis value of 64 zeros is required).
    """
    expected_seq = expect_first_seq
    expected_prev = GENESIS_PREV if expect_first_seq == 1 else (prev_hash or b"").hex()
    count = 0
    head = b""
    for signed in signed_records:
        record = parse(signed)
        check_schema(record, gateway_id)
        gateway_id = record["gw"]
        if record["seq"] != expected_seq:
            kind = "gap" if record["seq"] > expected_seq else "repeated or out of order"
            raise RecordError(f"{kind}: expected seq {expected_seq}, found {record['seq']}",
                              seq=record["seq"], field="seq")
        verify_signature(record, public_key)
        if expected_prev and record["prev"] != expected_prev:
            raise RecordError(f"does not link to seq {expected_seq - 1} "
                              f"(expected {expected_prev[:16]}…, found {record['prev'][:16]}…)",
                              seq=record["seq"], field="prev")
        head = record_hash(signed)
        expected_prev = head.hex()
        expected_seq += 1
        count += 1
    return ChainReport(expect_first_seq, expected_seq - 1, count, head)
