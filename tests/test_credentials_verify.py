"""Our verifier: round trips, and each refusal with its own exit code."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.credentials import T0, sample_alert_facts, sample_trip

from customs.credentials import errors, proof
from customs.credentials.dates import xsd_datetime
from customs.credentials.did import PinSet, did_web_document, method_id
from customs.credentials.errors import (
    CredentialError,
    Expired,
    InvalidSignature,
    MalformedCredential,
    NotYetValid,
    UnknownContext,
    UnsupportedProof,
    UntrustedIssuer,
    WrongProofPurpose,
)
from customs.credentials.issue import issue
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import did_key
from customs.credentials.verify import verify_credential

NOW = T0 + 3_600_000
WEB = "did:web:customs.example.gov:offices:uymvd"


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def issuer(key: Ed25519PrivateKey) -> str:
    return did_key(public_bytes(key))


@pytest.fixture(scope="module")
def trip(key: Ed25519PrivateKey, issuer: str) -> dict[str, Any]:
    return issue(sample_trip(), key, issuer, at_ms=NOW - 60_000)


def _pins(issuer: str) -> PinSet:
    return PinSet.of([issuer])


def test_trip_and_alert_credentials_round_trip(key: Ed25519PrivateKey, issuer: str,
                                               trip: dict[str, Any]) -> None:
    verified = verify_credential(trip, _pins(issuer), now_ms=NOW)
    assert verified.issuer == issuer
    assert verified.verification_method == method_id(issuer, public_bytes(key))
    assert verified.types == ("VerifiableCredential", "TransitTripCredential")
    assert verified.status is None and verified.valid_from_ms == NOW - 60_000
    alert = issue(sample_alert_facts(), key, issuer, at_ms=NOW)
    assert verify_credential(alert, _pins(issuer), now_ms=NOW).types[1] == \
        "TransitAlertCredential"


def test_a_did_web_issuer_verifies_against_its_pinned_document(key: Ed25519PrivateKey) -> None:
    cred = issue(sample_trip(), key, WEB, at_ms=NOW)
    pins = PinSet.of([did_web_document(WEB, [public_bytes(key)])])
    assert verify_credential(cred, pins, now_ms=NOW).issuer == WEB
    with pytest.raises(UntrustedIssuer):
        verify_credential(cred, PinSet.of([did_web_document(WEB, [public_bytes(
            Ed25519PrivateKey.generate())])]), now_ms=NOW)


def test_an_issuer_given_as_an_object_is_understood(key: Ed25519PrivateKey,
                                                    issuer: str) -> None:
    doc = issue(sample_trip(), key, issuer, at_ms=NOW)
    unsigned = {k: v for k, v in doc.items() if k != "proof"}
    unsigned["issuer"] = {"id": issuer, "name": "Aduana de Montevideo"}
    resigned = proof.add_proof(unsigned, key, verification_method=doc["proof"][
        "verificationMethod"], created=doc["proof"]["created"])
    assert verify_credential(resigned, _pins(issuer), now_ms=NOW).issuer == issuer


def _edit(trip: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(trip)
    change(doc)
    return doc


def _resign(doc: dict[str, Any], key: Ed25519PrivateKey, *, purpose: str = "assertionMethod",
            vm: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sign ``doc`` again with a proof we choose, so only the intended check can fail."""
    unsigned = {k: v for k, v in doc.items() if k != "proof"}
    options = proof.proof_options(unsigned, verification_method=vm or doc["proof"][
        "verificationMethod"], created=doc["proof"]["created"], purpose=purpose)
    options.update(extra or {})
    value = proof.serialize(proof.hash_data(proof.transform(unsigned, options),
                                            proof.configure(options)), key)
    return {**unsigned, "proof": {**options, "proofValue": value}}


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "subject field": lambda d: d["credentialSubject"]["usedTransportMeans"].update(
        identifier="XYZ 9999"),
    "seal id": lambda d: d["credentialSubject"]["transportEquipment"][0]["affixedSeal"][0]
    .update(identifier="SEAL-999"),
    "alert resolution": lambda d: d["credentialSubject"]["alert"][0]["resolution"].update(
        resolutionState="dismissed"),
    "record hash": lambda d: d["credentialSubject"]["departureEvent"]["gatewayRecord"].update(
        recordHash="f" * 64),
    "proof created": lambda d: d["proof"].update(created="2020-01-01T00:00:00Z"),
    "validFrom": lambda d: d.update(validFrom="2020-01-01T00:00:00Z"),
    "signed context": lambda d: d["proof"].update(
        {"@context": ["https://www.w3.org/ns/credentials/v2"]}),
    "dropped alert": lambda d: d["credentialSubject"].update(alert=[]),
}


@pytest.mark.parametrize("name", TAMPERS)
def test_a_tampered_credential_fails_with_exit_7(name: str, issuer: str,
                                                 trip: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignature) as err:
        verify_credential(_edit(trip, TAMPERS[name]), _pins(issuer), now_ms=NOW)
    assert err.value.code == 24


def test_a_changed_issuer_is_not_the_key_owner(issuer: str, trip: dict[str, Any]) -> None:
    other = did_key(public_bytes(Ed25519PrivateKey.generate()))
    doc = _edit(trip, lambda d: d.update(issuer=other))
    with pytest.raises(UntrustedIssuer, match="not to the issuer"):
        verify_credential(doc, PinSet.of([issuer, other]), now_ms=NOW)


def test_a_key_of_another_did_cannot_sign_for_the_issuer(issuer: str,
                                                         trip: dict[str, Any]) -> None:
    other_key = Ed25519PrivateKey.generate()
    other = did_key(public_bytes(other_key))
    forged = _resign(trip, other_key, vm=method_id(other, public_bytes(other_key)))
    with pytest.raises(UntrustedIssuer) as err:
        verify_credential(forged, PinSet.of([issuer, other]), now_ms=NOW)
    assert err.value.code == 23


def test_an_unpinned_issuer_is_refused_even_with_a_good_signature(trip: dict[str, Any]) -> None:
    with pytest.raises(UntrustedIssuer, match="is not pinned"):
        verify_credential(trip, PinSet(), now_ms=NOW)


def test_wrong_purpose_is_exit_5(key: Ed25519PrivateKey, issuer: str,
                                 trip: dict[str, Any]) -> None:
    with pytest.raises(WrongProofPurpose) as err:
        verify_credential(_resign(trip, key, purpose="authentication"), _pins(issuer),
                          now_ms=NOW)
    assert err.value.code == 22


@pytest.mark.parametrize(("change", "pattern"), [
    (lambda d: d.pop("proof"), "no proof"),
    (lambda d: d["proof"].update(type="Ed25519Signature2020"), "proof type"),
    (lambda d: d["proof"].update(cryptosuite="eddsa-rdfc-2022"), "cryptosuite"),
    (lambda d: d["proof"].update(cryptosuite="ecdsa-jcs-2019"), "cryptosuite"),
    (lambda d: d.update(proof=[d["proof"], d["proof"]]), "proof set"),
    (lambda d: d["proof"].update(proofValue="uAAAA"), "base58btc"),
    (lambda d: d["proof"].update(proofValue="z3P6rH"), "not an Ed25519 signature"),
    (lambda d: d["proof"].update(created="yesterday"), "dateTimeStamp"),
    (lambda d: d["proof"].update(verificationMethod={"id": "x"}), "URL string"),
    (lambda d: d["proof"].update(previousProof="urn:uuid:1"), "chains"),
])
def test_unsupported_or_malformed_proofs_are_exit_4(issuer: str, trip: dict[str, Any],
                                                   change: Callable[[dict[str, Any]], None],
                                                   pattern: str) -> None:
    with pytest.raises(UnsupportedProof, match=pattern) as err:
        verify_credential(_edit(trip, change), _pins(issuer), now_ms=NOW)
    assert err.value.code == 21


def test_a_single_proof_in_a_list_is_accepted(issuer: str, trip: dict[str, Any]) -> None:
    doc = _edit(trip, lambda d: d.update(proof=[d["proof"]]))
    assert verify_credential(doc, _pins(issuer), now_ms=NOW).issuer == issuer


@pytest.mark.parametrize(("change", "pattern"), [
    (lambda d: d.update({"@context": ["https://www.w3.org/2018/credentials/v1"]}), "2.0"),
    (lambda d: d.update({"@context": "https://www.w3.org/ns/credentials/v2"}), "list"),
    (lambda d: d.update(type=["TransitTripCredential"]), "VerifiableCredential"),
    (lambda d: d.pop("issuer"), "issuer"),
    (lambda d: d.update(issuer={"name": "x"}), "issuer"),
    (lambda d: d.update(credentialSubject={}), "credentialSubject"),
    (lambda d: d.update(credentialSubject=[]), "credentialSubject"),
    (lambda d: d.update(validFrom="2024-13-01T00:00:00Z"), "validFrom"),
    (lambda d: d.update(validFrom="2024-01-01T00:00:00"), "validFrom"),
    (lambda d: d.update(validUntil="2000-01-01T00:00:00Z"), "before validFrom"),
    (lambda d: d.update(id="not a url"), "id must be a URL"),
    (lambda d: d.update(credentialStatus={"id": "x"}), "credentialStatus"),
    (lambda d: d["credentialSubject"].update(weight=float("nan")), "not a JSON number"),
])
def test_malformed_credentials_are_exit_3(issuer: str, trip: dict[str, Any],
                                          change: Callable[[dict[str, Any]], None],
                                          pattern: str) -> None:
    with pytest.raises(MalformedCredential, match=pattern) as err:
        verify_credential(_edit(trip, change), _pins(issuer), now_ms=NOW)
    assert err.value.code == 20


def test_an_added_context_we_do_not_ship_is_exit_10(issuer: str, trip: dict[str, Any]) -> None:
    # Appending a context after signing keeps the signature valid (the proof's @context is a
    # prefix), which is exactly why an unknown one must be refused on its own.
    doc = _edit(trip, lambda d: d["@context"].append("https://evil.example/redefine.jsonld"))
    with pytest.raises(UnknownContext, match=r"evil\.example") as err:
        verify_credential(doc, _pins(issuer), now_ms=NOW)
    assert err.value.code == 27


def test_not_yet_valid_is_exit_8_and_expired_is_exit_9(key: Ed25519PrivateKey,
                                                       issuer: str) -> None:
    future = issue(sample_trip(), key, issuer, at_ms=NOW + 3_600_000)
    with pytest.raises(NotYetValid) as err:
        verify_credential(future, _pins(issuer), now_ms=NOW)
    assert err.value.code == 25
    assert verify_credential(future, _pins(issuer), now_ms=NOW + 3_600_000).issuer == issuer
    short = issue(sample_trip(), key, issuer, at_ms=NOW - 7_200_000,
                  valid_until_ms=NOW - 3_600_000)
    with pytest.raises(Expired, match="valid until") as err:
        verify_credential(short, _pins(issuer), now_ms=NOW)
    assert err.value.code == 26
    assert verify_credential(short, _pins(issuer), now_ms=NOW - 3_600_000).issuer == issuer


def test_clock_skew_of_a_few_minutes_is_tolerated(key: Ed25519PrivateKey, issuer: str) -> None:
    cred = issue(sample_trip(), key, issuer, at_ms=NOW + 120_000)
    assert verify_credential(cred, _pins(issuer), now_ms=NOW).issuer == issuer
    with pytest.raises(NotYetValid):
        verify_credential(cred, _pins(issuer), now_ms=NOW, max_skew_ms=0)


def test_an_expired_proof_is_exit_9(key: Ed25519PrivateKey, issuer: str,
                                    trip: dict[str, Any]) -> None:
    doc = _resign(trip, key, extra={"expires": xsd_datetime(NOW - 3_600_000)})
    with pytest.raises(Expired, match="proof expired"):
        verify_credential(doc, _pins(issuer), now_ms=NOW)


def test_error_classes_have_distinct_documented_codes() -> None:
    codes = [cls.code for cls in errors.ALL_ERRORS]
    assert len(set(codes)) == len(codes) and errors.EXIT_OK not in codes and 1 not in codes
    assert all(issubclass(cls, CredentialError) for cls in errors.ALL_ERRORS)
    module_doc = errors.__doc__ or ""
    readme = (Path(errors.__file__).parent / "README.md").read_text()
    for cls in errors.ALL_ERRORS:
        assert re.search(rf"^\s*{cls.code}\s+{cls.__name__}\b", module_doc, re.M), cls
        assert re.search(rf"\|\s*{cls.code}\s*\|\s*`{cls.__name__}`", readme), cls
