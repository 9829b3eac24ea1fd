"""Verify a credential offline: data model, contexts, proof, issuer pin, validity, status.

The checks run in a fixed order and the first failure decides the exit code (errors.py):
shape (3), contexts (10), proof form (4), purpose (5), issuer and key (6), signature (7),
validity period (8, 9), status (13, 12, 11). Trust comes before the signature: a signature
by a key nobody vouches for proves nothing, so "not pinned" is the answer even when the
signature happens to be good. Expiry comes after the signature, so "expired" always means an
authentic credential whose time is over, never a forgery.

Times are compared with ``max_skew_ms`` of tolerance (5 minutes, as @digitalbazaar/vc), so
the two verifiers agree on credentials issued a moment ago on a clock slightly ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from customs.credentials.dates import parse_datetime_stamp, xsd_datetime
from customs.credentials.did import PinSet, issuer_did
from customs.credentials.errors import (
    Expired,
    MalformedCredential,
    NotYetValid,
    StatusNotChecked,
    UntrustedIssuer,
    WrongProofPurpose,
)
from customs.credentials.loader import CREDENTIALS_V2, check_contexts
from customs.credentials.proof import ASSERTION_METHOD, split_proof, verify_signature

MAX_SKEW_MS = 300_000


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified credential says about itself; ``status`` is "active" when a status list
    was checked, "unchecked" when the caller chose not to, None when it has no status."""

    issuer: str
    verification_method: str
    types: tuple[str, ...]
    credential_id: str | None
    valid_from_ms: int | None
    valid_until_ms: int | None
    created_ms: int | None
    status: str | None = None


def verify_credential(credential: Mapping[str, Any], pins: PinSet, *, now_ms: int,
                      status_list: Mapping[str, Any] | None = None, check_status: bool = True,
                      max_skew_ms: int = MAX_SKEW_MS) -> Verified:
    """Verify everything a receiving administration must before relying on the credential.
    Raises the CredentialError subclass of the first check that fails."""
    issuer, types, valid_from, valid_until = check_data_model(credential)
    check_contexts(credential)
    parts = split_proof(credential)
    if parts.purpose != ASSERTION_METHOD:
        raise WrongProofPurpose(f"proofPurpose is {parts.purpose[:40]!r}; a credential must be "
                                f"signed for {ASSERTION_METHOD}")
    method = pins.resolve(parts.verification_method, ASSERTION_METHOD)
    if method.did != issuer:
        raise UntrustedIssuer(f"the proof's key belongs to {method.did[:80]}, not to the issuer "
                              f"{issuer[:80]}")
    verify_signature(parts, method.public_key)
    if valid_from is not None and valid_from > now_ms + max_skew_ms:
        raise NotYetValid(f"valid from {credential['validFrom']}, which is still to come")
    if valid_until is not None and valid_until < now_ms - max_skew_ms:
        raise Expired(f"valid until {credential['validUntil']}, which has passed")
    if parts.expires_ms is not None and parts.expires_ms < now_ms - max_skew_ms:
        raise Expired(f"the proof expired at {xsd_datetime(parts.expires_ms)}")
    status = None
    if "credentialStatus" in credential:
        if status_list is None:
            if check_status:
                raise StatusNotChecked("the credential has a credentialStatus; pass the issuer's "
                                       "status list (--status-list FILE) to check revocation")
            status = "unchecked"
        else:
            from customs.credentials.statuslist import check_status as _check

            _check(credential, status_list, pins, now_ms=now_ms, max_skew_ms=max_skew_ms)
            status = "active"
    cid = credential.get("id")
    return Verified(issuer, parts.verification_method, types,
                    cid if isinstance(cid, str) else None, valid_from, valid_until,
                    parts.created_ms, status)


def check_data_model(credential: Any) -> tuple[str, tuple[str, ...], int | None, int | None]:
    """VC Data Model 2.0 shape; returns (issuer, types, validFrom ms, validUntil ms)."""
    if not isinstance(credential, Mapping):
        raise MalformedCredential("a credential must be a JSON object")
    ctx = credential.get("@context")
    if not isinstance(ctx, list) or not ctx or ctx[0] != CREDENTIALS_V2:
        raise MalformedCredential(f"@context must be a list starting with {CREDENTIALS_V2} "
                                  "(VC Data Model 2.0)")
    types = credential.get("type")
    types = [types] if isinstance(types, str) else types
    if (not isinstance(types, list) or not all(isinstance(t, str) for t in types)
            or "VerifiableCredential" not in types):
        raise MalformedCredential("type must include VerifiableCredential")
    issuer = issuer_did(credential.get("issuer"))
    if not issuer or ":" not in issuer:
        raise MalformedCredential("issuer must be a URL (a DID), or an object with one as id")
    if "id" in credential and (not isinstance(credential["id"], str) or ":" not in
                               credential["id"]):
        raise MalformedCredential("id must be a URL")
    subjects = credential.get("credentialSubject")
    subjects = [subjects] if isinstance(subjects, Mapping) else subjects
    if (not isinstance(subjects, list) or not subjects
            or not all(isinstance(s, Mapping) and s for s in subjects)):
        raise MalformedCredential("credentialSubject must be a non-empty object (or a list of "
                                  "them)")
    times = []
    for name in ("validFrom", "validUntil"):
        if name in credential:
            try:
                times.append(parse_datetime_stamp(credential[name]))
            except ValueError as exc:
                raise MalformedCredential(f"{name}: {exc}") from None
        else:
            times.append(None)
    valid_from, valid_until = times
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise MalformedCredential("validUntil is before validFrom")
    status = credential.get("credentialStatus")
    for entry in status if isinstance(status, list) else [] if status is None else [status]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            raise MalformedCredential("each credentialStatus must be an object with a type")
    return issuer, tuple(types), valid_from, valid_until
