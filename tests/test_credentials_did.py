"""Multibase, Multikey, did:key and did:web, and what a verifier's pins vouch for."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from customs.credentials.did import (
    PinSet,
    did_key_document,
    did_web_document,
    did_web_url,
    method_id,
)
from customs.credentials.errors import InputError, UntrustedIssuer
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import (
    MultikeyError,
    b58decode,
    b58encode,
    decode_public_multikey,
    decode_secret_multikey,
    did_key,
    did_key_public,
    public_multikey,
)

# The W3C vc-di-eddsa test-vector key pair (TestVectors/keyPair.json): public spec data, not a
# secret of ours; it lets the multikey code be checked against published values.
W3C_PUBLIC = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
W3C_SECRET = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"


@given(st.binary(max_size=80))
def test_base58_round_trips_including_leading_zeros(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_known_values() -> None:
    assert b58encode(b"\0\0\x01") == "112"
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
    with pytest.raises(MultikeyError):
        b58decode("0OIl")


def test_the_w3c_secret_multikey_derives_the_w3c_public_multikey() -> None:
    seed = decode_secret_multikey(W3C_SECRET)
    public = public_bytes(Ed25519PrivateKey.from_private_bytes(seed))
    assert public_multikey(public) == W3C_PUBLIC
    assert decode_public_multikey(W3C_PUBLIC) == public
    assert W3C_PUBLIC.startswith("z6Mk")


def test_multikeys_of_other_types_are_refused() -> None:
    p256 = "zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169"  # a P-256 Multikey
    with pytest.raises(MultikeyError):
        decode_public_multikey(p256)
    with pytest.raises(MultikeyError):
        decode_public_multikey("u" + W3C_PUBLIC[1:])  # not base58btc


def test_did_key_document_is_derived_from_the_key_alone() -> None:
    did = "did:key:" + W3C_PUBLIC
    doc = did_key_document(did + "#" + W3C_PUBLIC)
    vm = f"{did}#{W3C_PUBLIC}"
    assert doc["id"] == did
    assert doc["verificationMethod"] == [{"id": vm, "type": "Multikey", "controller": did,
                                          "publicKeyMultibase": W3C_PUBLIC}]
    assert doc["assertionMethod"] == [vm]
    assert doc["@context"][0] == "https://www.w3.org/ns/did/v1"
    assert did_key_public(vm) == decode_public_multikey(W3C_PUBLIC)
    with pytest.raises(InputError):
        did_key_document("did:key:zNotBase58!")


@pytest.mark.parametrize(("did", "url"), [
    ("did:web:customs.example.gov", "https://customs.example.gov/.well-known/did.json"),
    ("did:web:customs.example.gov:offices:uymvd",
     "https://customs.example.gov/offices/uymvd/did.json"),
    ("did:web:localhost%3A8443:dgc", "https://localhost:8443/dgc/did.json"),
])
def test_did_web_urls(did: str, url: str) -> None:
    assert did_web_url(did) == url


@pytest.mark.parametrize("bad", ["did:web:", "did:web:-bad.example", "did:web:a b",
                                 "did:key:z6Mk", "https://customs.example.gov",
                                 "did:web:example.com/path"])
def test_malformed_did_web_is_refused(bad: str) -> None:
    with pytest.raises(InputError):
        did_web_url(bad)


def _key() -> bytes:
    return public_bytes(Ed25519PrivateKey.generate())


def test_pinned_did_web_document_resolves_its_assertion_key() -> None:
    did, k1, k2 = "did:web:customs.example.gov", _key(), _key()
    pins = PinSet.of([did_web_document(did, [k1, k2])])
    for k in (k1, k2):  # the current key and one kept after a rotation
        resolved = pins.resolve(method_id(did, k))
        assert (resolved.did, resolved.public_key) == (did, k)
    assert did in pins and pins.dids == (did,)


def test_unpinned_dids_and_unknown_methods_are_untrusted() -> None:
    did, k = "did:web:customs.example.gov", _key()
    pins = PinSet.of([did_web_document(did, [k]), did_key(_key())])
    other = _key()
    with pytest.raises(UntrustedIssuer, match="not pinned"):
        pins.resolve(method_id("did:web:other.example", k))
    with pytest.raises(UntrustedIssuer, match=r"not pinned.*--pin did:key"):
        pins.resolve(method_id(did_key(other), other))
    with pytest.raises(UntrustedIssuer, match="not in the pinned DID document"):
        pins.resolve(method_id(did, other))


def test_a_key_only_listed_for_authentication_cannot_make_assertions() -> None:
    did, k = "did:web:customs.example.gov", _key()
    doc = did_web_document(did, [k])
    doc["assertionMethod"] = []
    with pytest.raises(UntrustedIssuer, match="does not authorise"):
        PinSet.of([doc]).resolve(method_id(did, k))


def test_relative_ids_embedded_methods_and_json_web_keys_are_understood() -> None:
    did, k = "did:web:customs.example.gov", _key()
    x = base64.urlsafe_b64encode(k).rstrip(b"=").decode()
    doc = {"id": did, "assertionMethod": ["#jwk-1", {
        "id": "#mk-1", "type": "Multikey", "controller": did,
        "publicKeyMultibase": public_multikey(k)}],
        "verificationMethod": [{"id": "#jwk-1", "type": "JsonWebKey", "controller": did,
                                "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": x}},
                               {"id": "#x25519", "type": "X25519KeyAgreementKey2020",
                                "controller": did, "publicKeyMultibase": "z6LS..."}]}
    pins = PinSet.of([doc])
    assert pins.resolve(did + "#jwk-1").public_key == k
    assert pins.resolve(did + "#mk-1").public_key == k
    with pytest.raises(UntrustedIssuer):
        pins.resolve(did + "#x25519")


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(id="https://customs.example.gov"),
    lambda d: d.update(verificationMethod={"id": "#a"}),
    lambda d: d["verificationMethod"][0].update(controller="did:web:someone.else"),
    lambda d: d["verificationMethod"][0].update(publicKeyMultibase="z6Mk"),
    lambda d: d.update(id="did:key:" + W3C_PUBLIC),
])
def test_unusable_pinned_documents_are_input_errors(mutate: object) -> None:
    did = "did:web:customs.example.gov"
    doc = did_web_document(did, [_key()])
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(InputError):
        PinSet.of([doc])


def test_a_did_web_can_only_be_pinned_by_its_document() -> None:
    with pytest.raises(InputError, match="DID document file"):
        PinSet.of(["did:web:customs.example.gov"])
