"""An independent verifier nobody here wrote: digitalbazaar's @digitalbazaar/vc with
@digitalbazaar/data-integrity and @digitalbazaar/eddsa-jcs-2022-cryptosuite, under Node, with
a static document loader (tests/js/verify-vc.mjs). Our credentials must verify there, expand
in JSON-LD safe mode with the shipped contexts, and every tampering must fail there as it
fails in ours. deploy/install.sh installs tests/js/node_modules; without it these skip.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.credentials import sample_alert_facts, sample_trip

from customs.credentials.did import PinSet, did_web_document
from customs.credentials.errors import CredentialError, InvalidSignature
from customs.credentials.issue import issue, now_ms, sign
from customs.credentials.jcs import loads
from customs.credentials.keys import public_bytes
from customs.credentials.loader import shipped
from customs.credentials.multikey import did_key
from customs.credentials.statuslist import list_credential, set_status, status_entry
from customs.credentials.verify import verify_credential

JS = Path(__file__).parent / "js"
CONTEXTS = Path(__file__).resolve().parents[1] / "customs" / "credentials" / "contexts"
NODE = shutil.which("node")
WEB = "did:web:customs.example.gov:offices:uymvd"
LIST_URL = "https://customs.example.gov/status/1"

pytestmark = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "@digitalbazaar" / "vc").is_dir(),
    reason="Node or tests/js/node_modules missing: run deploy/install.sh (npm ci in tests/js)")


def node_verify(tmp: Path, credential: dict[str, Any], *, did_documents: tuple[Any, ...] = (),
                status_list: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run verify-vc.mjs; its JSON report, with ``ok`` for the exit code."""
    cred = tmp / "credential.json"
    cred.write_text(json.dumps(credential))
    argv = [NODE, str(JS / "verify-vc.mjs"), "--contexts", str(CONTEXTS), "--credential",
            str(cred), "--expand"]
    for i, doc in enumerate(did_documents):
        (tmp / f"did-{i}.json").write_text(json.dumps(doc))
        argv += ["--did-document", str(tmp / f"did-{i}.json")]
    if status_list is not None:
        (tmp / "status.json").write_text(json.dumps(status_list))
        argv += ["--status-list", str(tmp / "status.json")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=JS)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    report["ok"] = done.returncode == 0
    return report


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def issuer(key: Ed25519PrivateKey) -> str:
    return did_key(public_bytes(key))


@pytest.fixture(scope="module")
def trip(key: Ed25519PrivateKey, issuer: str) -> dict[str, Any]:
    return issue(sample_trip(), key, issuer)


def test_our_trip_credential_verifies_in_the_node_verifier(tmp_path: Path,
                                                           trip: dict[str, Any]) -> None:
    report = node_verify(tmp_path, trip)
    assert report["ok"] and report["verified"] and report["expanded"], report


def test_our_did_web_alert_credential_verifies_in_the_node_verifier(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    cred = issue(sample_alert_facts(), key, WEB)
    doc = did_web_document(WEB, [public_bytes(key)])
    report = node_verify(tmp_path, cred, did_documents=(doc,))
    assert report["ok"] and report["verified"] and report["expanded"], report
    other = did_web_document(WEB, [public_bytes(Ed25519PrivateKey.generate())])
    assert not node_verify(tmp_path, cred, did_documents=(other,))["ok"]


# name -> (change, the exit code of our verifier: 24 bad signature; 23 for the issuer, because
# ours checks that the key is the issuer's before it checks the signature)
TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], int]] = {
    "one subject field": (lambda d: d["credentialSubject"]["usedTransportMeans"].update(
        identifier="XYZ 9999"), 24),
    "the issuer": (lambda d: d.update(
        issuer=did_key(public_bytes(Ed25519PrivateKey.generate()))), 23),
    "the proof's created": (lambda d: d["proof"].update(created="2020-01-01T00:00:00Z"), 24),
    "an alert's resolution": (lambda d: d["credentialSubject"]["alert"][0]["resolution"]
                              .update(resolutionState="dismissed"), 24),
}


@pytest.mark.parametrize("name", TAMPERS)
def test_tampering_fails_in_both_verifiers(name: str, tmp_path: Path, issuer: str,
                                           trip: dict[str, Any]) -> None:
    change, code = TAMPERS[name]
    doc = copy.deepcopy(trip)
    change(doc)
    with pytest.raises(CredentialError) as err:
        verify_credential(doc, PinSet.of([issuer, doc["issuer"]]), now_ms=now_ms())
    assert err.value.code == code
    report = node_verify(tmp_path, doc)
    assert not report["ok"] and not report["verified"], report
    assert "Invalid signature" in report["error"], report


def test_revocation_is_seen_by_the_node_status_list_checker(tmp_path: Path,
                                                            key: Ed25519PrivateKey,
                                                            issuer: str) -> None:
    at = now_ms()
    cred = issue(sample_trip(), key, issuer, status=status_entry(LIST_URL, 1234))
    clear = sign(list_credential(LIST_URL, issuer, valid_from_ms=at - at % 1000), key, issuer,
                 at_ms=at)
    report = node_verify(tmp_path, cred, status_list=clear)
    assert report["ok"] and report["status"] == {"verified": True, "revoked": False,
                                                 "error": None}, report
    revoked = sign(set_status(clear, 1234, True, valid_from_ms=at - at % 1000), key, issuer,
                   at_ms=at)
    report = node_verify(tmp_path, cred, status_list=revoked)
    assert not report["ok"] and report["status"]["revoked"] is True, report
    unrevoked = sign(set_status(revoked, 1234, False, valid_from_ms=at - at % 1000), key,
                     issuer, at_ms=at)
    assert node_verify(tmp_path, cred, status_list=unrevoked)["ok"]
    forged = copy.deepcopy(revoked)
    forged["credentialSubject"]["encodedList"] = clear["credentialSubject"]["encodedList"]
    report = node_verify(tmp_path, cred, status_list=forged)  # un-revoked without a signature
    assert not report["ok"] and report["status"]["verified"] is False, report


def test_an_undefined_term_fails_safe_mode_expansion(tmp_path: Path, key: Ed25519PrivateKey,
                                                     issuer: str) -> None:
    # The expansion check is real: a term missing from our context is caught there.
    from customs.credentials.build import trip_credential

    unsigned = trip_credential(sample_trip(), issuer=issuer, credential_id="urn:uuid:1",
                               valid_from_ms=now_ms() - 60_000)
    unsigned["credentialSubject"]["cargoColour"] = "red"
    report = node_verify(tmp_path, sign(unsigned, key, issuer, at_ms=now_ms()))
    assert report["verified"] and report["expanded"] is False and not report["ok"], report


def test_another_issuers_credential_with_floats_and_non_ascii_keys_verifies_in_ours(
        tmp_path: Path) -> None:
    # Signed by digitalbazaar's cryptosuite (tests/js/issue-vc.mjs): its JCS of ECMAScript
    # numbers and UTF-16-ordered keys must be ours too, or the signature would not verify.
    seed = Ed25519PrivateKey.generate()
    seed_hex = seed.private_bytes_raw().hex()
    unsigned = {
        "@context": ["https://www.w3.org/ns/credentials/v2",
                     {"@vocab": "https://example.org/vocab#"}],
        "id": "urn:uuid:9a4c2f3e-0d7b-4c55-8f65-2b0e9a7d1c42",
        "type": ["VerifiableCredential", "ForeignInspectionCredential"],
        "validFrom": "2024-01-01T00:00:00Z",
        "credentialSubject": {
            "ratios": [0.1, 1e21, 1e-7, 123456789012345680000.0, -0.0, 5e-324, 2.5],
            "peso_bruto_kg": 18250.75, "inspección": "sin novedad", "\U0001f600": "grin",
            "\uffff": "last in code points, not in UTF-16", "note": "line\u2028sep",
        },
    }
    (tmp_path / "unsigned.json").write_text(json.dumps(unsigned))
    done = subprocess.run([NODE, str(JS / "issue-vc.mjs"), "--contexts", str(CONTEXTS),
                           "--credential", str(tmp_path / "unsigned.json"), "--seed", seed_hex],
                          capture_output=True, text=True, timeout=60, cwd=JS, check=True)
    signed = loads(done.stdout)
    issuer = did_key(public_bytes(seed))
    assert signed["issuer"] == issuer and signed["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    verified = verify_credential(signed, PinSet.of([issuer]), now_ms=now_ms())
    assert verified.types[1] == "ForeignInspectionCredential"
    changed = copy.deepcopy(signed)
    changed["credentialSubject"]["ratios"][0] = 0.10000000000000002
    with pytest.raises(InvalidSignature):
        verify_credential(changed, PinSet.of([issuer]), now_ms=now_ms())


def test_the_shipped_v2_context_is_the_npm_packages_byte_for_byte() -> None:
    npm = JS / "node_modules" / "@digitalbazaar" / "credentials-context" / "contexts" / \
        "v2.jsonld"
    ours = CONTEXTS / shipped()["https://www.w3.org/ns/credentials/v2"]
    assert ours.read_bytes() == npm.read_bytes()
