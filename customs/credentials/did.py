"""DIDs of customs offices: did:key and did:web documents, and the pins a verifier trusts.

A receiving administration does not fetch anything at verification time: it pins the issuing
office once, either as a did:key string (the key is the identifier) or as the office's did:web
DID document saved to a file (exchanged out of band, or fetched once from
``did_web_url``). ``PinSet.resolve`` then answers, offline, "which public key does this
verification method name, and may it make assertions for its DID?".

The verification method id of our keys is ``<did>#<publicKeyMultibase>`` for both methods,
so a rotated key gets a new id by itself and an old credential still names the key it was
signed with (keep the old key in the DID document while its credentials matter).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from customs.credentials.errors import InputError, UntrustedIssuer
from customs.credentials.multikey import (
    MultikeyError,
    decode_public_multikey,
    did_key,
    did_key_public,
    public_multikey,
)

DID_V1 = "https://www.w3.org/ns/did/v1"
MULTIKEY_V1 = "https://w3id.org/security/multikey/v1"
ASSERTION = "assertionMethod"
_RELATIONSHIPS = ("assertionMethod", "authentication", "capabilityInvocation",
                  "capabilityDelegation")
_DID_WEB = re.compile(r"^did:web:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?:%3A[0-9]{1,5})?"
                      r"(?::[A-Za-z0-9._~-]+)*$")


def method_id(did: str, public_key: bytes) -> str:
    """The verification method id our documents give a key."""
    return f"{did}#{public_multikey(public_key)}"


def _document(did: str, public_keys: Sequence[bytes]) -> dict[str, Any]:
    methods = [{"id": method_id(did, k), "type": "Multikey", "controller": did,
                "publicKeyMultibase": public_multikey(k)} for k in public_keys]
    ids = [m["id"] for m in methods]
    return {"@context": [DID_V1, MULTIKEY_V1], "id": did, "verificationMethod": methods,
            "assertionMethod": ids, "authentication": ids}


def did_key_document(did: str) -> dict[str, Any]:
    """The DID document a did:key resolves to (did:key v0.7, Multikey form)."""
    try:
        public = did_key_public(did)
    except MultikeyError as exc:
        raise InputError(str(exc)) from None
    doc = _document(did.split("#", 1)[0], [public])
    ids = doc["assertionMethod"]
    doc.update(capabilityInvocation=ids, capabilityDelegation=ids)
    return doc


def check_did_web(did: str) -> str:
    if not isinstance(did, str) or not _DID_WEB.match(did):
        raise InputError(f"{did!r} is not a did:web (did:web:host[%3Aport][:path...])")
    return did


def did_web_document(did: str, public_keys: Sequence[bytes]) -> dict[str, Any]:
    """The DID document a customs office publishes at ``did_web_url(did)``; the first key is
    the one it signs with now, later ones are kept for credentials signed before a rotation."""
    check_did_web(did)
    if not public_keys:
        raise InputError("a DID document needs at least one key")
    return _document(did, public_keys)


def did_web_url(did: str) -> str:
    """Where did:web says the document lives (for publishing it; we never fetch it)."""
    host, *path = check_did_web(did)[len("did:web:"):].split(":")
    tail = "/".join(unquote(p) for p in path) if path else ".well-known"
    return f"https://{unquote(host)}/{tail}/did.json"


def issuer_did(issuer: Any) -> str | None:
    """The DID or URL of a credential's ``issuer`` (a string, or an object with ``id``)."""
    if isinstance(issuer, str):
        return issuer
    if isinstance(issuer, Mapping) and isinstance(issuer.get("id"), str):
        return issuer["id"]
    return None


@dataclass(frozen=True, slots=True)
class ResolvedMethod:
    """A verification method the pins vouch for."""

    did: str
    method_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class _Pinned:
    did: str
    keys: Mapping[str, bytes]  # verification method id -> raw Ed25519 public key
    relationships: Mapping[str, frozenset[str]]


class PinSet:
    """The issuers a verifier trusts, each with the keys its pinned DID document lists."""

    def __init__(self, pinned: Iterable[_Pinned] = ()) -> None:
        self._by_did = {p.did: p for p in pinned}

    @classmethod
    def of(cls, pins: Iterable[str | Mapping[str, Any]]) -> PinSet:
        """Pins from did:key strings and DID documents (already parsed JSON objects).
        InputError names the pin that cannot be used."""
        out = []
        for pin in pins:
            if isinstance(pin, str):
                if not pin.startswith("did:key:"):
                    raise InputError(f"{pin[:60]!r}: only a did:key can be pinned as a string; "
                                     "pin a did:web by its DID document file")
                out.append(_parse_document(did_key_document(pin)))
            else:
                out.append(_parse_document(pin))
        return cls(out)

    @property
    def dids(self) -> tuple[str, ...]:
        return tuple(self._by_did)

    def __contains__(self, did: object) -> bool:
        return did in self._by_did

    def resolve(self, verification_method: str, purpose: str = ASSERTION) -> ResolvedMethod:
        """The key of a verification method, if its DID is pinned, the method is in the pinned
        document, and the document authorises it for ``purpose``; else UntrustedIssuer."""
        did = verification_method.split("#", 1)[0]
        pinned = self._by_did.get(did)
        if pinned is None:
            hint = (f"; pass --pin {did} if you trust it" if did.startswith("did:key:")
                    else "; pass --pin with its DID document file if you trust it")
            raise UntrustedIssuer(f"{did[:80]} is not pinned{hint}")
        key = pinned.keys.get(verification_method)
        if key is None:
            raise UntrustedIssuer(f"verification method {verification_method[:100]} is not in "
                                  f"the pinned DID document of {did[:80]}")
        if verification_method not in pinned.relationships.get(purpose, frozenset()):
            raise UntrustedIssuer(f"the pinned DID document of {did[:80]} does not authorise "
                                  f"{verification_method[:100]} for {purpose}")
        return ResolvedMethod(did, verification_method, key)


def _parse_document(doc: Mapping[str, Any]) -> _Pinned:
    if not isinstance(doc, Mapping):
        raise InputError("a DID document must be a JSON object")
    did = doc.get("id")
    if not isinstance(did, str) or not did.startswith("did:") or "#" in did:
        raise InputError(f"DID document id {did!r} is not a DID")
    keys: dict[str, bytes] = {}
    for vm in _list(doc.get("verificationMethod"), "verificationMethod", did):
        _add_method(vm, did, keys)
    relationships: dict[str, frozenset[str]] = {}
    for name in _RELATIONSHIPS:
        ids = set()
        for entry in _list(doc.get(name), name, did):
            if isinstance(entry, str):
                ids.add(_absolute(entry, did))
            else:  # an embedded verification method
                ids.add(_add_method(entry, did, keys))
        relationships[name] = frozenset(ids)
    if did.startswith("did:key:"):
        expected = did_key_public(did)
        if any(k != expected for k in keys.values()):
            raise InputError(f"DID document of {did[:60]} lists a key that is not the did:key's")
    return _Pinned(did, keys, relationships)


def _list(value: Any, name: str, did: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"DID document of {did[:60]}: {name} must be a list")
    return value


def _absolute(ref: str, did: str) -> str:
    return did + ref if ref.startswith("#") else ref


def _add_method(vm: Any, did: str, keys: dict[str, bytes]) -> str:
    """Record an Ed25519 method's key; methods of other key types are skipped (unusable for
    eddsa-jcs-2022, but harmless in a document that also has key-agreement keys)."""
    if not isinstance(vm, Mapping) or not isinstance(vm.get("id"), str):
        raise InputError(f"DID document of {did[:60]}: a verification method needs an id")
    vm_id = _absolute(vm["id"], did)
    if vm.get("controller", did) != did:
        raise InputError(f"DID document of {did[:60]}: method {vm_id[:80]} is controlled by "
                         f"{vm.get('controller')!r}, not by the document's DID")
    try:
        if vm.get("type") in ("Multikey", "Ed25519VerificationKey2020"):
            key = decode_public_multikey(vm.get("publicKeyMultibase", ""))
        elif vm.get("type") in ("JsonWebKey", "JsonWebKey2020"):
            key = _jwk_key(vm.get("publicKeyJwk"))
        else:
            return vm_id
    except (MultikeyError, ValueError) as exc:
        raise InputError(f"DID document of {did[:60]}: method {vm_id[:80]}: {exc}") from None
    keys[vm_id] = key
    return vm_id


def _jwk_key(jwk: Any) -> bytes:
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("publicKeyJwk is not an Ed25519 (OKP) key")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise ValueError("publicKeyJwk has no x")
    raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    if len(raw) != 32:
        raise ValueError("publicKeyJwk x is not 32 bytes")
    return raw


__all__ = ["ASSERTION", "DID_V1", "MULTIKEY_V1", "PinSet", "ResolvedMethod", "check_did_web",
           "did_key", "did_key_document", "did_web_document", "did_web_url", "issuer_did",
           "method_id"]
