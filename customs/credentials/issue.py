"""Issuing: facts + the customs key + the office's DID -> a signed credential.

``issue`` is the one entry point `sealtrail customs attest` calls, whether the facts come
from a file (now) or from the customs store (``--plan ID``, later): only the way the facts
are gathered changes. The issuer must be a did:key of this very key, or a did:web whose DID
document lists it (``did_web_document``); the verification method is ``<did>#<multikey>``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from customs.credentials.build import alert_credential, trip_credential
from customs.credentials.dates import xsd_datetime
from customs.credentials.did import check_did_web, method_id
from customs.credentials.errors import InputError
from customs.credentials.facts import AlertFacts, TripFacts
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import did_key
from customs.credentials.proof import add_proof

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def verification_method(issuer: str, key: Ed25519PrivateKey) -> str:
    """The method id ``key`` signs under for ``issuer``; InputError if the pair cannot work."""
    public = public_bytes(key)
    if issuer.startswith("did:key:"):
        if issuer != did_key(public):
            raise InputError(f"issuer {issuer[:60]} is a did:key of another key; this key's "
                             f"did:key is {did_key(public)}")
    else:
        check_did_web(issuer)
    return method_id(issuer, public)


def sign(document: Mapping[str, Any], key: Ed25519PrivateKey, issuer: str, *,
         at_ms: int) -> dict[str, Any]:
    """The document with our eddsa-jcs-2022 proof, ``created`` at ``at_ms`` (whole seconds)."""
    created = xsd_datetime(at_ms - at_ms % 1000)
    return add_proof(document, key, verification_method=verification_method(issuer, key),
                     created=created)


def issue(facts: TripFacts | AlertFacts, key: Ed25519PrivateKey, issuer: str, *,
          at_ms: int | None = None, credential_id: str | None = None,
          valid_until_ms: int | None = None,
          status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A signed trip or alert credential. ``status`` is a ``statuslist.status_entry`` when the
    credential can be revoked (the store allocates the index); ``valid_until_ms`` bounds it."""
    at = now_ms() if at_ms is None else at_ms
    at -= at % 1000
    cid = credential_id or f"urn:uuid:{uuid.uuid4()}"
    verification_method(issuer, key)  # refuse a mismatched issuer before building anything
    common: dict[str, Any] = dict(issuer=issuer, credential_id=cid, valid_from_ms=at,
                                  valid_until_ms=valid_until_ms, status=status)
    if isinstance(facts, TripFacts):
        unsigned = trip_credential(facts, **common)
    elif isinstance(facts, AlertFacts):
        unsigned = alert_credential(facts.alert, plan_id=facts.plan_id, **common)
    else:
        raise TypeError(f"cannot attest {type(facts).__name__}")
    return sign(unsigned, key, issuer, at_ms=at)
