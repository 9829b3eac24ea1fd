"""Bitstring Status List: encoding, revoke and un-revoke, and every way a list can't answer."""

from __future__ import annotations

import base64
import copy
import gzip
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.credentials import T0, sample_trip
from hypothesis import given
from hypothesis import strategies as st

from customs.credentials.did import PinSet
from customs.credentials.errors import Revoked, StatusListError, StatusNotChecked
from customs.credentials.issue import issue, sign
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import did_key
from customs.credentials.statuslist import (
    MIN_BITS,
    decode_list,
    encode_list,
    get_bit,
    list_bits,
    list_credential,
    set_status,
    status_entry,
    with_bit,
)
from customs.credentials.verify import verify_credential

NOW = T0 + 3_600_000
LIST_ID = "https://customs.example.gov/status/1"


def test_bit_zero_is_the_most_significant_bit_of_the_first_byte() -> None:
    bits = with_bit(bytes(MIN_BITS // 8), 0, True)
    assert bits[0] == 0x80 and not any(bits[1:])
    bits = with_bit(bits, 9, True)
    assert bits[1] == 0x40
    assert get_bit(bits, 0) and get_bit(bits, 9) and not get_bit(bits, 1)
    assert not get_bit(with_bit(bits, 0, False), 0)


@given(st.sets(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=20))
def test_encoded_lists_round_trip(indices: set[int]) -> None:
    bits = bytes(MIN_BITS // 8)
    for i in indices:
        bits = with_bit(bits, i, True)
    encoded = encode_list(bits)
    assert encoded.startswith("u") and "=" not in encoded
    decoded = decode_list(encoded)
    assert {i for i in range(MIN_BITS) if get_bit(decoded, i)} == indices


def test_lists_gzipped_elsewhere_decode_and_ours_encode_deterministically() -> None:
    # Another issuer's GZIP (here Python's default, with a timestamp in the header) decodes
    # the same; ours has a zero timestamp, so equal lists give equal strings.
    other = "u" + base64.urlsafe_b64encode(gzip.compress(bytes(MIN_BITS // 8))).decode() \
        .rstrip("=")
    assert decode_list(other) == bytes(MIN_BITS // 8)
    assert encode_list(bytes(MIN_BITS // 8)) == encode_list(bytes(MIN_BITS // 8))


@pytest.mark.parametrize("bad", [
    "H4sIAAAA",  # no multibase prefix
    "u!!!",
    "u" + base64.urlsafe_b64encode(b"not gzip").decode(),
    "u" + base64.urlsafe_b64encode(gzip.compress(bytes(100))).decode(),  # too short
    "u" + base64.urlsafe_b64encode(gzip.compress(bytes(17 * 1024 * 1024))).decode(),  # bomb
])
def test_undecodable_lists_are_status_list_errors(bad: str) -> None:
    with pytest.raises(StatusListError):
        decode_list(bad)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def issuer(key: Ed25519PrivateKey) -> str:
    return did_key(public_bytes(key))


def _list(key: Ed25519PrivateKey, issuer: str, *revoked: int, list_id: str = LIST_ID,
          purpose: str = "revocation") -> dict[str, Any]:
    doc = list_credential(list_id, issuer, valid_from_ms=NOW - 60_000, purpose=purpose)
    for index in revoked:
        doc = set_status(doc, index, True, valid_from_ms=NOW - 60_000)
    return sign(doc, key, issuer, at_ms=NOW - 60_000)


def _credential(key: Ed25519PrivateKey, issuer: str, index: int = 94_567) -> dict[str, Any]:
    return issue(sample_trip(), key, issuer, at_ms=NOW - 60_000,
                 status=status_entry(LIST_ID, index))


def test_revoke_and_unrevoke(key: Ed25519PrivateKey, issuer: str) -> None:
    pins, cred = PinSet.of([issuer]), _credential(key, issuer)
    clear = _list(key, issuer)
    assert verify_credential(cred, pins, now_ms=NOW, status_list=clear).status == "active"
    revoked = _list(key, issuer, 94_567)
    with pytest.raises(Revoked, match="revoked: bit 94567") as err:
        verify_credential(cred, pins, now_ms=NOW, status_list=revoked)
    assert err.value.code == 28
    unrevoked = sign(set_status(revoked, 94_567, False, valid_from_ms=NOW), key, issuer,
                     at_ms=NOW)
    assert verify_credential(cred, pins, now_ms=NOW, status_list=unrevoked).status == "active"
    # Neighbouring bits do not leak into this credential's status.
    neighbours = _list(key, issuer, 94_566, 94_568)
    assert verify_credential(cred, pins, now_ms=NOW, status_list=neighbours).status == "active"


def test_the_list_itself_is_a_verifiable_credential(key: Ed25519PrivateKey, issuer: str) -> None:
    status_list = _list(key, issuer, 5)
    verified = verify_credential(status_list, PinSet.of([issuer]), now_ms=NOW)
    assert "BitstringStatusListCredential" in verified.types
    assert status_list["credentialSubject"]["id"] == LIST_ID + "#list"
    assert get_bit(list_bits(status_list), 5)


def test_a_credential_with_status_needs_a_list_or_an_explicit_choice(
        key: Ed25519PrivateKey, issuer: str) -> None:
    cred, pins = _credential(key, issuer), PinSet.of([issuer])
    with pytest.raises(StatusNotChecked) as err:
        verify_credential(cred, pins, now_ms=NOW)
    assert err.value.code == 30
    assert verify_credential(cred, pins, now_ms=NOW, check_status=False).status == "unchecked"


def test_a_list_that_cannot_answer_is_exit_12(key: Ed25519PrivateKey, issuer: str) -> None:
    cred, pins = _credential(key, issuer), PinSet.of([issuer])
    other_key = Ed25519PrivateKey.generate()
    other = did_key(public_bytes(other_key))
    tampered = copy.deepcopy(_list(key, issuer, 94_567))
    tampered["credentialSubject"]["encodedList"] = encode_list(bytes(MIN_BITS // 8))
    cases = {
        "another list": _list(key, issuer, list_id=LIST_ID + "-b"),
        "another issuer": _list(other_key, other),
        "bits changed without re-signing": tampered,
        "another purpose": _list(key, issuer, purpose="suspension"),
        "not signed at all": list_credential(LIST_ID, issuer, valid_from_ms=NOW),
    }
    for name, status_list in cases.items():
        with pytest.raises(StatusListError) as err:
            verify_credential(cred, PinSet.of([issuer, other]), now_ms=NOW,
                              status_list=status_list)
        assert err.value.code == 29, name
    far = _credential(key, issuer, index=MIN_BITS + 1)
    with pytest.raises(StatusListError, match="outside"):
        verify_credential(far, pins, now_ms=NOW, status_list=_list(key, issuer))


def test_suspension_lists_say_suspended(key: Ed25519PrivateKey, issuer: str) -> None:
    cred = issue(sample_trip(), key, issuer, at_ms=NOW - 60_000,
                 status=status_entry(LIST_ID, 7, "suspension"))
    with pytest.raises(Revoked, match="suspended"):
        verify_credential(cred, PinSet.of([issuer]), now_ms=NOW,
                          status_list=_list(key, issuer, 7, purpose="suspension"))


def test_status_entries_are_well_formed() -> None:
    entry = status_entry(LIST_ID, 94_567)
    assert entry == {"id": LIST_ID + "#94567", "type": "BitstringStatusListEntry",
                     "statusPurpose": "revocation", "statusListIndex": "94567",
                     "statusListCredential": LIST_ID}
    for bad in (-1, True, "3"):
        with pytest.raises(StatusListError):
            status_entry(LIST_ID, bad)  # type: ignore[arg-type]
    with pytest.raises(StatusListError):
        status_entry(LIST_ID, 1, "refresh")
