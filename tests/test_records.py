"""Canonical form, signing and the hash chain (pure: no services)."""

from __future__ import annotations

import json

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_client.records import (
    GENESIS_PREV,
    RecordError,
    RecordSigner,
    canonical,
    check_schema,
    parse,
    record_hash,
    sign_record,
    verify_chain,
    verify_signature,
)

json_ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | json_ints | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=6), inner,
                      max_size=4),
    max_leaves=12,
)


@settings(deadline=None)
@given(st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8),
                       json_values, max_size=6))
def test_canonical_form_equals_rfc8785_for_integer_json(obj: dict) -> None:
    assert canonical(obj) == rfc8785.dumps(obj)


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": [1, "é\n"], "c": {"z": None, "y": True}}) == \
        '{"a":[1,"é\\n"],"b":1,"c":{"y":true,"z":null}}'.encode()


def _chain(n: int, key: Ed25519PrivateKey, gw: str = "gw-1") -> list[bytes]:
    out, prev = [], GENESIS_PREV
    for seq in range(1, n + 1):
        _, signed = sign_record({"v": 1, "gw": gw, "seq": seq, "t_ms": 1_700_000_000_000 + seq,
                                 "kind": "gps", "src": "gps0",
                                 "body": {"lat_e7": -349_000_000 + seq, "lon_e7": -562_000_000},
                                 "prev": prev}, key)
        out.append(signed)
        prev = record_hash(signed).hex()
    return out


@pytest.mark.parametrize("bad", [1.5, 2**53, float("nan"), {"é": 1}, object()])
def test_unsignable_bodies_are_refused_before_signing(bad) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(RecordError):
        sign_record({"v": 1, "gw": "g", "seq": 1, "t_ms": 0, "kind": "gps", "src": "s",
                     "body": {"x": bad}, "prev": GENESIS_PREV}, key)


def test_sign_then_verify_and_wrong_key_fails() -> None:
    key = Ed25519PrivateKey.generate()
    signed = _chain(1, key)[0]
    record = parse(signed)
    check_schema(record, "gw-1")
    verify_signature(record, key.public_key())
    with pytest.raises(RecordError, match="signature"):
        verify_signature(record, Ed25519PrivateKey.generate().public_key())


def test_clean_chain_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    chain = _chain(12, key)
    report = verify_chain(chain, key.public_key(), gateway_id="gw-1")
    assert (report.first_seq, report.last_seq, report.count) == (1, 12, 12)
    assert report.head_hash == record_hash(chain[-1])
    tail = verify_chain(chain[5:], key.public_key(), expect_first_seq=6,
                        prev_hash=record_hash(chain[4]))
    assert tail.count == 7


def _resign(signed: bytes, key: Ed25519PrivateKey, **changes) -> bytes:
    record = {k: v for k, v in json.loads(signed).items() if k != "sig"}
    record.update(changes)
    return sign_record(record, key)[1]


@pytest.mark.parametrize(("mutate", "field", "seq", "message"), [
    (lambda c, k: c[:3] + c[4:], "seq", 5, "gap: expected seq 4, found 5"),
    (lambda c, k: [*c[:4], c[2], *c[4:]], "seq", 3, "repeated or out of order"),
    (lambda c, k: [*c[:3], _resign(c[3], k, prev="ab" * 32), *c[4:]], "prev", 4, "not link"),
    (lambda c, k: [*c[:3], _resign(c[3], Ed25519PrivateKey.generate()), *c[4:]], "sig", 4,
     "signature"),
    (lambda c, k: [*c[:3], _resign(c[3], k, gw="gw-2"), *c[4:]], "gw", 4, "gateway"),
    (lambda c, k: [*c[:3], c[3].replace(b'"kind":"gps"', b'"kind":"zzz"'), *c[4:]], "kind", 4,
     "must be one of"),
    (lambda c, k: [*c[:3], c[3].replace(b'{"body"', b'{ "body"'), *c[4:]], None, 4, "canonical"),
])
def test_breaks_are_found_and_named(mutate, field, seq, message) -> None:
    key = Ed25519PrivateKey.generate()
    broken = mutate(_chain(8, key), key)
    with pytest.raises(RecordError, match=message) as info:
        verify_chain(broken, key.public_key(), gateway_id="gw-1")
    assert (info.value.field, info.value.seq) == (field, seq)


def test_first_record_must_link_to_genesis() -> None:
    key = Ed25519PrivateKey.generate()
    chain = _chain(3, key)
    forged = _resign(chain[0], key, prev="11" * 32)
    with pytest.raises(RecordError, match="does not link"):
        verify_chain([forged, *chain[1:]], key.public_key())



@given(body=st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), json_values,
                            max_size=6),
       src=st.text(), gw=st.text(min_size=1))
@settings(max_examples=300, deadline=None)
def test_signed_bytes_are_the_canonical_form_of_the_signed_record(body, src, gw) -> None:
    # sign_record splices the signature into the unsigned bytes; it must equal a re-encoding
    record, signed = sign_record({"v": 1, "gw": gw, "seq": 1, "t_ms": 0, "kind": "gps",
                                  "src": src, "body": body, "prev": "0" * 64},
                                 Ed25519PrivateKey.generate())
    assert signed == canonical(record)


flat_values = st.one_of(json_ints, st.text(), st.integers(), st.booleans(), st.none())


@given(body=st.one_of(
           st.dictionaries(st.text(max_size=8), flat_values, max_size=8),  # flat: the fast path
           st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), json_values,
                           max_size=6)),
       src=st.text(), gw=st.text(min_size=1), seq=st.integers(1, 2**53 - 1),
       t_ms=st.integers(-(2**53 - 1), 2**53 - 1), kind=st.sampled_from(["gps", "seal"]))
@settings(max_examples=400, deadline=None)
def test_record_signer_gives_exactly_the_canonical_signed_bytes(body, src, gw, seq, t_ms,
                                                                 kind) -> None:
    """The journal's signer assembles the bytes by hand; they must be the canonical form of the
    signed record, verify, and it must refuse exactly what sign_record refuses."""
    key = Ed25519PrivateKey.generate()
    unsigned = {"v": 1, "gw": gw, "seq": seq, "t_ms": t_ms, "kind": kind, "src": src,
                "body": body, "prev": "ab" * 32}
    try:
        sign_record(unsigned, key)
    except RecordError:
        with pytest.raises(RecordError):
            RecordSigner(gw, key).sign(seq, t_ms, kind, src, body, "ab" * 32)
        return
    signed = RecordSigner(gw, key).sign(seq, t_ms, kind, src, body, "ab" * 32)
    record = parse(signed)
    assert signed == canonical(record) == rfc8785.dumps(record)
    assert {k: v for k, v in record.items() if k != "sig"} == unsigned
    verify_signature(record, key.public_key())


@pytest.mark.parametrize("t_ms", [1.5, 2**53, True])
def test_record_signer_refuses_a_time_json_readers_would_change(t_ms) -> None:
    with pytest.raises(RecordError, match="t_ms"):
        RecordSigner("gw", Ed25519PrivateKey.generate()).sign(1, t_ms, "gps", "s", {}, "0" * 64)


@given(st.lists(st.sampled_from([0, -(2**53 - 1), "é\u2028", "", None, True, [1], {"k": 2},
                                 2**53, 1.5]), min_size=3, max_size=3),
       st.permutations(["lat_e7", "z", "a"]))
@settings(max_examples=300, deadline=None)
def test_a_cached_key_layout_gives_the_canonical_bytes_whatever_the_values(values, order):
    """The signer remembers each key order's sorted layout; bodies that share an order but not
    value types (a nested value, a float, an unsafe integer) must still come out canonical, or
    be refused exactly as sign_record refuses them."""
    key = Ed25519PrivateKey.generate()
    for body in ({name: 1 for name in order}, dict(zip(order, values, strict=True))):
        unsigned = {"v": 1, "gw": "gw", "seq": 1, "t_ms": 0, "kind": "gps", "src": "s",
                    "body": body, "prev": "ab" * 32}
        try:
            expected = sign_record(unsigned, key)[0]
        except RecordError:
            with pytest.raises(RecordError):
                RecordSigner("gw", key).sign(1, 0, "gps", "s", body, "ab" * 32)
            continue
        signed = RecordSigner("gw", key).sign(1, 0, "gps", "s", body, "ab" * 32)
        assert signed == canonical(expected) == rfc8785.dumps(parse(signed))


def test_a_non_ascii_key_takes_the_checked_path_and_is_refused() -> None:
    with pytest.raises(RecordError, match="ASCII"):
        RecordSigner("gw", Ed25519PrivateKey.generate()).sign(1, 0, "gps", "s", {"é": 1}, "0" * 64)


def test_verify_signed_agrees_with_verify_signature_on_good_and_altered_records() -> None:
    """The receiver's fast path cuts the signature out of the bytes instead of re-encoding;
    it must accept and refuse exactly what the plain check does, including a body that holds
    the record's own signature text."""
    from ledger_client.records import verify_signed

    key = Ed25519PrivateKey.generate()
    body = {"note": ',"sig":"', "n": 1}
    record, signed = sign_record({"v": 1, "gw": "gw-1", "seq": 3, "t_ms": 5, "kind": "status",
                                  "src": "x", "body": body, "prev": "0" * 64}, key)
    verify_signed(signed, parse(signed), key.public_key())
    nested = dict(record["body"], copy={"sig": record["sig"]})
    _, signed2 = sign_record({**{k: v for k, v in record.items() if k != "sig"},
                                    "body": nested}, key)
    verify_signed(signed2, parse(signed2), key.public_key())
    altered = signed.replace(b'"n":1', b'"n":2')
    with pytest.raises(RecordError):
        verify_signed(altered, parse(altered), key.public_key())
    with pytest.raises(RecordError):
        verify_signed(signed, parse(signed), Ed25519PrivateKey.generate().public_key())
