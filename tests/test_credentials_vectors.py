"""The W3C vc-di-eddsa eddsa-jcs-2022 test vectors, reproduced byte for byte by our signer.

Source: W3C Recommendation "Data Integrity EdDSA Cryptosuites v1.0", Appendix B (test vectors
for eddsa-jcs-2022, Examples 30-38), the same values as TestVectors/eddsa-jcs-2022/ and
TestVectors/keyPair.json in github.com/w3c/vc-di-eddsa. The secret key below is public
specification data published with the vectors, not a key of ours.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from customs.credentials import proof
from customs.credentials.did import PinSet
from customs.credentials.errors import InvalidSignature, UnknownContext, UntrustedIssuer
from customs.credentials.multikey import decode_public_multikey, decode_secret_multikey
from customs.credentials.verify import verify_credential

PUBLIC_KEY_MULTIBASE = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
SECRET_KEY_MULTIBASE = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"  # public spec data
VERIFICATION_METHOD = f"did:key:{PUBLIC_KEY_MULTIBASE}#{PUBLIC_KEY_MULTIBASE}"
CREATED = "2023-02-24T23:36:38Z"

UNSIGNED = {
    "@context": ["https://www.w3.org/ns/credentials/v2",
                 "https://www.w3.org/ns/credentials/examples/v2"],
    "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
    "type": ["VerifiableCredential", "AlumniCredential"],
    "name": "Alumni Credential",
    "description": "A minimum viable example of an Alumni Credential.",
    "issuer": "https://vc.example/issuers/5678",
    "validFrom": "2023-01-01T00:00:00Z",
    "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"},
}
CANON_DOC = (
    '{"@context":["https://www.w3.org/ns/credentials/v2","https://www.w3.org/ns/credentials/'
    'examples/v2"],"credentialSubject":{"alumniOf":"The School of Examples","id":"did:example:'
    'abcdefgh"},"description":"A minimum viable example of an Alumni Credential.","id":"urn:uuid:'
    '58172aac-d8ba-11ed-83dd-0b3aef56cc33","issuer":"https://vc.example/issuers/5678","name":'
    '"Alumni Credential","type":["VerifiableCredential","AlumniCredential"],"validFrom":'
    '"2023-01-01T00:00:00Z"}')
DOC_HASH = "59b7cb6251b8991add1ce0bc83107e3db9dbbab5bd2c28f687db1a03abc92f19"
PROOF_CANON = (
    '{"@context":["https://www.w3.org/ns/credentials/v2","https://www.w3.org/ns/credentials/'
    'examples/v2"],"created":"2023-02-24T23:36:38Z","cryptosuite":"eddsa-jcs-2022",'
    '"proofPurpose":"assertionMethod","type":"DataIntegrityProof","verificationMethod":'
    '"did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6'
    'pvBQ7XJPt4swbTQ2"}')
PROOF_HASH = "66ab154f5c2890a140cb8388a22a160454f80575f6eae09e5a097cabe539a1db"
COMBINED_HASH = PROOF_HASH + DOC_HASH
SIGNATURE_HEX = ("407cd12654b33d718ecbb99179a1506daaa849450bf3fc523cce3e1c96f8b803"
                 "51da3f253d725c6f00b07c9e5448d50b3ef78012b9ab54255116d069c6dd2808")
PROOF_VALUE = ("z2HnFSSPPBzR36zdDgK8PbEHeXbR56YF24jwMpt3R1eHXQzJDMWS93FCzpvJpwTWd3GAVFuUfjoJd"
               "cnTMuVor51aX")
SIGNED = {**UNSIGNED, "proof": {
    "type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022", "created": CREATED,
    "verificationMethod": VERIFICATION_METHOD, "proofPurpose": "assertionMethod",
    "@context": UNSIGNED["@context"], "proofValue": PROOF_VALUE}}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(decode_secret_multikey(SECRET_KEY_MULTIBASE))


def _options() -> dict:
    return proof.proof_options(UNSIGNED, verification_method=VERIFICATION_METHOD,
                               created=CREATED)


def test_transformation_gives_the_canonical_document() -> None:
    transformed = proof.transform(copy.deepcopy(UNSIGNED), _options())
    assert transformed == CANON_DOC.encode()
    assert hashlib.sha256(transformed).hexdigest() == DOC_HASH


def test_proof_configuration_gives_the_canonical_proof_options() -> None:
    config = proof.configure(_options())
    assert config == PROOF_CANON.encode()
    assert hashlib.sha256(config).hexdigest() == PROOF_HASH


def test_hashing_puts_the_proof_hash_first() -> None:
    data = proof.hash_data(CANON_DOC.encode(), PROOF_CANON.encode())
    assert data.hex() == COMBINED_HASH


def test_signature_and_proof_value(key: Ed25519PrivateKey) -> None:
    data = bytes.fromhex(COMBINED_HASH)
    assert key.sign(data).hex() == SIGNATURE_HEX
    assert proof.serialize(data, key) == PROOF_VALUE


def test_add_proof_reproduces_the_signed_credential(key: Ed25519PrivateKey) -> None:
    signed = proof.add_proof(UNSIGNED, key, verification_method=VERIFICATION_METHOD,
                             created=CREATED)
    assert signed == SIGNED
    assert json.dumps(signed, sort_keys=True) == json.dumps(SIGNED, sort_keys=True)
    assert UNSIGNED.get("proof") is None  # the input is left alone


def test_the_signed_vector_verifies_and_a_change_does_not() -> None:
    public = decode_public_multikey(PUBLIC_KEY_MULTIBASE)
    proof.verify_signature(proof.split_proof(SIGNED), public)
    changed = copy.deepcopy(SIGNED)
    changed["credentialSubject"]["alumniOf"] = "The School of Counterexamples"
    with pytest.raises(InvalidSignature):
        proof.verify_signature(proof.split_proof(changed), public)


def test_the_full_verifier_refuses_the_vector_for_what_it_is_not() -> None:
    # The vector is a good signature, but not a credential a customs verifier may accept:
    # its examples context is not shipped (no fetching at a border post), and its issuer is
    # an https URL while its key is a did:key, so nothing binds that key to that issuer.
    pins = PinSet.of(["did:key:" + PUBLIC_KEY_MULTIBASE])
    with pytest.raises(UnknownContext):
        verify_credential(SIGNED, pins, now_ms=1_700_000_000_000)
    doc = copy.deepcopy(SIGNED)
    doc["@context"] = doc["proof"]["@context"] = doc["@context"][:1]
    with pytest.raises(UntrustedIssuer, match=r"not to the issuer https://vc\.example"):
        verify_credential(doc, pins, now_ms=1_700_000_000_000)
