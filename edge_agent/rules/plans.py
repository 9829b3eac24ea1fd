"""Loading customs-signed plans and fence bundles into the rules, through the journal.

``announce`` verifies an envelope (geofences.open_envelope: trusted signer, good signature,
valid payload) and journals a ``status`` record from src ``rules`` — ``planLoaded`` {plan_id,
digest, ...} or ``fencesLoaded`` {bundle_id, version, digest, ...} — with the envelope itself
saved in the state table under ``rules/plans/<digest>``, in one transaction. The rules switch
when they *read* that record, so records before it are judged under the previous plan and
records after it under the new one, re-evaluation after a crash switches at the same seq, and
every alert can quote the record that tied it to its plan (``details.plan_seq``).

After a restart the envelope is taken back from the state table and its signature checked
again (against the signer it names: it was checked against the trusted keys when it was
loaded, and a later key rotation must not silently drop a trip in progress).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from edge_agent.journal import Draft, Journal, Stored
from geofences import FenceBundle, GeofenceError, TransitPlan, open_envelope
from geofences.envelope import read_envelope

log = logging.getLogger(__name__)

PLAN_LOADED, FENCES_LOADED = "planLoaded", "fencesLoaded"
Document = TransitPlan | FenceBundle


def envelope_key(digest: str) -> str:
    return f"rules/plans/{digest}"


def kind_of(doc: Document) -> str:
    return "plan" if isinstance(doc, TransitPlan) else "fences"


def verify(envelope: bytes, trusted_keys: Collection[bytes], source: str) -> Document:
    """The opened document, or SignatureError / GeofenceError naming ``source``."""
    return open_envelope(bytes(envelope), trusted_keys, source=source)


def announce(journal: Journal, doc: Document, envelope: bytes, t_ms: int) -> Stored:
    """Journal the status record that switches the rules to ``doc``, with its envelope."""
    body: dict[str, Any]
    if isinstance(doc, TransitPlan):
        body = {"event": PLAN_LOADED, "plan_id": doc.plan_id, "digest": doc.digest,
                "declaration_ref": doc.declaration_ref, "vehicle": doc.vehicle,
                "valid_from_ms": doc.valid_from_ms, "deadline_ms": doc.deadline_ms}
    else:
        body = {"event": FENCES_LOADED, "bundle_id": doc.bundle_id, "version": doc.version,
                "digest": doc.digest}
    if doc.signer is not None:
        body["signer"] = doc.signer
    text = bytes(envelope).decode("utf-8")
    return journal.append([Draft(t_ms, "status", "rules", body)],
                          state={envelope_key(doc.digest): text})[-1]


def reopen(journal: Journal, digest: str) -> Document | None:
    """The document a planLoaded/fencesLoaded record names, from the journal's state table."""
    text = journal.state(envelope_key(digest))
    if not text:
        log.error("rules: no stored envelope for digest %s; plan not restored", digest)
        return None
    data = text.encode("utf-8")
    try:
        signer = read_envelope(data, source=envelope_key(digest)).signer
        doc = open_envelope(data, [signer], source=envelope_key(digest))
    except GeofenceError as exc:
        log.error("rules: stored plan %s no longer opens: %s", digest, exc)
        return None
    if doc.digest != digest:
        log.error("rules: stored envelope %s holds digest %s", digest, doc.digest)
        return None
    return doc
