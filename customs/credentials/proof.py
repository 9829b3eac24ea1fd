"""Data Integrity proofs with the eddsa-jcs-2022 cryptosuite (W3C vc-di-eddsa, section 3.3).

The function names follow the specification's algorithms so each step can be held against
its test vectors: ``transform`` (3.3.1, the JCS of the document without its proof),
``configure`` (3.3.5, the JCS of the proof options), ``hash_data`` (3.3.2: SHA-256 of the
proof configuration, then SHA-256 of the document, concatenated: the proof hash comes first),
``serialize`` (3.3.6, Ed25519 over that and base58btc multibase). ``add_proof`` and
``split_proof`` + ``verify_signature`` are the create and verify algorithms around them.

The proof options carry the document's ``@context`` (3.3.5 step 2 since the 2025
Recommendation; the W3C vectors and digitalbazaar's suite do the same). On verification a
proof ``@context`` must be a prefix of the document's, and then stands in for it: a verifier
may add contexts after signing, never change the signed ones.

Only one proof per document: proof sets and chains (``previousProof``) are refused rather
than half-checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customs.credentials import jcs
from customs.credentials.dates import parse_datetime_stamp
from customs.credentials.errors import InvalidSignature, MalformedCredential, UnsupportedProof
from customs.credentials.multikey import MultikeyError, multibase_decode, multibase_encode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-jcs-2022"
ASSERTION_METHOD = "assertionMethod"


def proof_options(document: Mapping[str, Any], *, verification_method: str, created: str,
                  purpose: str = ASSERTION_METHOD) -> dict[str, Any]:
    """The proof configuration to be signed (everything of the proof but ``proofValue``)."""
    parse_datetime_stamp(created)
    options: dict[str, Any] = {"type": PROOF_TYPE, "cryptosuite": CRYPTOSUITE, "created": created,
                               "verificationMethod": verification_method,
                               "proofPurpose": purpose}
    if "@context" in document:
        options["@context"] = document["@context"]
    return options


def _check_suite(options: Mapping[str, Any]) -> None:
    if options.get("type") != PROOF_TYPE:
        raise UnsupportedProof(f"proof type {str(options.get('type'))[:60]!r} is not supported; "
                               f"only {PROOF_TYPE}")
    if options.get("cryptosuite") != CRYPTOSUITE:
        raise UnsupportedProof(f"cryptosuite {str(options.get('cryptosuite'))[:60]!r} is not "
                               f"supported; only {CRYPTOSUITE}")


def transform(unsecured: Mapping[str, Any], options: Mapping[str, Any]) -> bytes:
    """3.3.1 Transformation: the canonical bytes of the document without its proof."""
    _check_suite(options)
    return jcs.canonicalize(unsecured)


def configure(options: Mapping[str, Any]) -> bytes:
    """3.3.5 Proof Configuration: the canonical bytes of the proof options."""
    _check_suite(options)
    if "created" in options:
        try:
            parse_datetime_stamp(options["created"])
        except ValueError as exc:
            raise UnsupportedProof(f"proof created: {exc}") from None
    return jcs.canonicalize(options)


def hash_data(transformed: bytes, proof_config: bytes) -> bytes:
    """3.3.2 Hashing: SHA-256(proof configuration) || SHA-256(transformed document)."""
    return hashlib.sha256(proof_config).digest() + hashlib.sha256(transformed).digest()


def serialize(data: bytes, key: Ed25519PrivateKey) -> str:
    """3.3.6 Proof Serialization: the Ed25519 signature as a base58btc multibase string."""
    return multibase_encode(key.sign(data))


def add_proof(document: Mapping[str, Any], key: Ed25519PrivateKey, *, verification_method: str,
              created: str, purpose: str = ASSERTION_METHOD) -> dict[str, Any]:
    """The document with an eddsa-jcs-2022 proof; refuses one that already has a proof."""
    if "proof" in document:
        raise UnsupportedProof("the document already has a proof; proof sets are not supported")
    unsecured = dict(document)
    options = proof_options(unsecured, verification_method=verification_method, created=created,
                            purpose=purpose)
    value = serialize(hash_data(transform(unsecured, options), configure(options)), key)
    return {**unsecured, "proof": {**options, "proofValue": value}}


@dataclass(frozen=True, slots=True)
class ProofParts:
    """A secured document taken apart for verification (3.3.3 steps 1 to 6)."""

    unsecured: dict[str, Any]
    options: dict[str, Any]
    signature: bytes
    verification_method: str
    purpose: str
    created_ms: int | None
    expires_ms: int | None

    def hash_data(self) -> bytes:
        return hash_data(transform(self.unsecured, self.options), configure(self.options))


def split_proof(secured: Mapping[str, Any]) -> ProofParts:
    """Check the proof's form and rebuild what was signed. UnsupportedProof for a missing,
    foreign or malformed proof; InvalidSignature if the proof's @context is not the start of
    the document's (the document's signed contexts were changed)."""
    if not isinstance(secured, Mapping):
        raise MalformedCredential("a secured document must be a JSON object")
    proof = secured.get("proof")
    if proof is None:
        raise UnsupportedProof("the credential has no proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise UnsupportedProof(f"a proof set of {len(proof)} proofs is not supported")
        proof = proof[0]
    if not isinstance(proof, Mapping):
        raise UnsupportedProof("proof must be a JSON object")
    _check_suite(proof)
    if "previousProof" in proof:
        raise UnsupportedProof("proof chains (previousProof) are not supported")
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    vm = proof.get("verificationMethod")
    if not isinstance(vm, str) or ":" not in vm:
        raise UnsupportedProof("proof verificationMethod must be a URL string")
    purpose = proof.get("proofPurpose")
    if not isinstance(purpose, str):
        raise UnsupportedProof("proof has no proofPurpose")
    try:
        signature = multibase_decode(proof.get("proofValue"))  # type: ignore[arg-type]
    except MultikeyError as exc:
        raise UnsupportedProof(f"proofValue: {exc}") from None
    if len(signature) != 64:
        raise UnsupportedProof(f"proofValue is {len(signature)} bytes, not an Ed25519 signature")
    created_ms, expires_ms = (_optional_time(proof, name) for name in ("created", "expires"))
    unsecured = {k: v for k, v in secured.items() if k != "proof"}
    if "@context" in options:
        proof_ctx, doc_ctx = _as_list(options["@context"]), _as_list(secured.get("@context"))
        if doc_ctx[:len(proof_ctx)] != proof_ctx:
            raise InvalidSignature("the document's @context does not start with the proof's "
                                   "@context: the signed contexts were changed")
        unsecured["@context"] = options["@context"]
    return ProofParts(unsecured, options, signature, vm, purpose, created_ms, expires_ms)


def verify_signature(parts: ProofParts, public_key: bytes) -> None:
    """3.3.3 steps 7 and 8; InvalidSignature if the signature is not over this document."""
    from cryptography.exceptions import InvalidSignature as _Bad
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(parts.signature, parts.hash_data())
    except _Bad:
        raise InvalidSignature("the signature does not verify: the credential or its proof was "
                               "changed after signing, or signed by another key") from None


def _optional_time(proof: Mapping[str, Any], name: str) -> int | None:
    if name not in proof:
        return None
    try:
        return parse_datetime_stamp(proof[name])
    except ValueError as exc:
        raise UnsupportedProof(f"proof {name}: {exc}") from None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
