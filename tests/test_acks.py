"""Customs acknowledgements: only trusted customs, only for this gateway, never altered."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.acks import AckError, make_ack, open_ack


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def test_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    ack = open_ack(make_ack(key, "gw-1", 42, 1_790_000_000_000), {raw(key)}, "gw-1")
    assert (ack.gw, ack.acked_seq, ack.t_ms, ack.signer) == ("gw-1", 42, 1_790_000_000_000,
                                                             raw(key))


def test_refusals() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    good = make_ack(key, "gw-1", 42, 1)
    with pytest.raises(AckError, match="not a trusted customs key"):
        open_ack(make_ack(other, "gw-1", 42, 1), {raw(key)}, "gw-1")
    with pytest.raises(AckError, match="for gateway 'gw-1', not 'gw-2'"):
        open_ack(good, {raw(key)}, "gw-2")
    altered = json.loads(good)
    altered["acked_seq"] = 43
    with pytest.raises(AckError, match="does not verify"):
        open_ack(json.dumps(altered).encode(), {raw(key)}, "gw-1")
    for junk in (b"", b"[" * 5000, b'{"format":"sealtrail-ack/1"}', b"\xff", b"1" * 2000):
        with pytest.raises(AckError):
            open_ack(junk, {raw(key)}, "gw-1")
