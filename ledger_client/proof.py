"""Inclusion proofs as customs receives them, and offline checks of a whole log.

A proof object is the DESIGN.md "Anchoring" shape: it carries what a verifier needs besides the
record itself and a JSON-RPC endpoint. `verify_log` is the auditor's view of a journal dump:
the hash chain proves nothing was changed or reordered, and recomputing every anchored batch
root proves nothing was dropped from the end of a batch, which the chain alone cannot show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.merkle import ALG, MerkleTree, ProofError, leaf_hash, verify_inclusion
from ledger_client.records import (
    RecordError,
    check_schema,
    parse,
    verify_chain,
    verify_signature,
)


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Where a batch root sits on the ledger."""

    chain_id: int
    contract: str
    batch_seq: int
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class Proof:
    alg: str
    leaf_hash: str
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    root: str
    anchor: AnchorRef | None = None
    status: str = "unanchored"  # unanchored | pending | anchored
    first_seq: int = 1  # seq of leaf 0 of the batch: leaf_index = seq - first_seq

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Proof:
        """A proof from its JSON object, every field type-checked: a proof arrives in a file
        from whoever handed it over, and a wrong type must be a clear ProofError here, not a
        TypeError deep inside a check."""
        if not isinstance(data, dict):
            raise ProofError(f"a proof must be a JSON object, got {type(data).__name__}")
        anchor = data.get("anchor")
        try:
            if anchor is not None:
                if not isinstance(anchor, dict):
                    raise ProofError("anchor: must be an object or null")
                anchor = AnchorRef(**anchor)
            proof = cls(**{**data, "anchor": anchor})
        except TypeError as exc:
            raise ProofError(f"malformed proof object: {exc}") from None
        _check_fields(proof)
        return proof

    def check(self, signed: bytes, *, seq: int | None = None) -> None:
        """Offline part: the record is the leaf, and the audit path leads to `root`. `seq` is
        the record's signed seq when the caller parsed it already (else it is parsed here)."""
        if self.alg != ALG:
            raise ProofError(f"unsupported proof algorithm {self.alg!r} (expected {ALG})")
        leaf = leaf_hash(signed)
        if leaf.hex() != self.leaf_hash:
            raise ProofError("the record's leaf hash is not the one in the proof")
        if seq is None:
            seq = parse(signed)["seq"]
        if seq - self.first_seq != self.leaf_index:
            raise ProofError(f"seq {seq} is not leaf {self.leaf_index} of a batch starting at "
                             f"seq {self.first_seq}")
        verify_inclusion(leaf, self.leaf_index, self.tree_size,
                         [bytes.fromhex(h) for h in self.audit_path], bytes.fromhex(self.root))


_HEX64 = re.compile(r"[0-9a-f]{64}")
_INTS = {"leaf_index": 0, "tree_size": 1, "first_seq": 1}
_ANCHOR_INTS = {"chain_id": 0, "batch_seq": 1, "block_number": 0, "log_index": 0}


def _check_fields(proof: Proof) -> None:
    def fail(field: str, wanted: str) -> ProofError:
        return ProofError(f"proof field {field!r}: must be {wanted}")

    def uint(value: object, low: int) -> bool:
        return type(value) is int and value >= low

    if not isinstance(proof.alg, str) or not isinstance(proof.status, str):
        raise fail("alg" if not isinstance(proof.alg, str) else "status", "a string")
    for name in ("leaf_hash", "root"):
        if not isinstance(getattr(proof, name), str) or not _HEX64.fullmatch(getattr(proof, name)):
            raise fail(name, "64 lowercase hex digits")
    for name, low in _INTS.items():
        if not uint(getattr(proof, name), low):
            raise fail(name, f"an integer >= {low}")
    if not isinstance(proof.audit_path, list) or len(proof.audit_path) > 64 or not all(
            isinstance(h, str) and _HEX64.fullmatch(h) for h in proof.audit_path):
        raise fail("audit_path", "a list of at most 64 hashes of 64 lowercase hex digits")
    anchor = proof.anchor
    if anchor is None:
        return
    for name, low in _ANCHOR_INTS.items():
        if not uint(getattr(anchor, name), low):
            raise fail(f"anchor.{name}", f"an integer >= {low}")
    for name in ("contract", "tx_hash"):
        if not isinstance(getattr(anchor, name), str):
            raise fail(f"anchor.{name}", "a string")
    if not isinstance(anchor.block_hash, str) or not _HEX64.fullmatch(
            anchor.block_hash.removeprefix("0x").lower()):
        raise fail("anchor.block_hash", "a 32-byte hex hash")


def make_proof(batch_signed: Sequence[bytes], first_seq: int, seq: int,
               anchor: AnchorRef | None = None, status: str = "unanchored") -> Proof:
    """Proof for record `seq` from all the signed records of its batch."""
    tree = MerkleTree.from_leaves(batch_signed)
    index = seq - first_seq
    return Proof(ALG, tree.levels[0][index].hex(), index, tree.size,
                 [h.hex() for h in tree.inclusion_proof(index)], tree.root.hex(),
                 anchor, status, first_seq)


@dataclass(frozen=True, slots=True)
class BatchRoot:
    first_seq: int
    tree_size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class LogReport:
    records: int
    anchored_through: int  # last seq covered by a verified batch root (0 if none)
    unanchored_tail: int  # records after it: deletions there cannot be seen until anchored
    start_seq: int = 1  # where the checked chain starts (after a pruned prefix: its boundary)


def verify_log(signed_records: Iterable[bytes], public_key: Ed25519PublicKey,
               batches: Sequence[BatchRoot], *, gateway_id: str | None = None,
               start_seq: int = 1) -> LogReport:
    """Verify a whole log: chain links, signatures, and every batch root.

    Raises RecordError (broken field or link) or ProofError (a batch root that the records no
    longer produce, which is how a deleted or added record inside an anchored range shows).

    A pruned journal's log starts at `start_seq` > 1, the last seq of a pruned batch: the link
    of that first record to its deleted predecessor cannot be checked here, so the caller must
    prove the record itself (`verify_kept`, an inclusion proof to its batch root); batches
    ending before it are not recomputed (their leaves are gone), later ones are.
    """
    ordered = sorted(batches, key=lambda b: b.first_seq)
    expected_first = 1
    for batch in ordered:
        if batch.first_seq != expected_first:
            raise ProofError(f"batches leave a gap or overlap at seq {expected_first}")
        expected_first = batch.first_seq + batch.tree_size
    if start_seq > 1:
        boundary = [b for b in ordered if b.first_seq + b.tree_size - 1 == start_seq]
        if not boundary:
            raise ProofError(f"the retained log starts at seq {start_seq}, which does not end "
                             "a batch")
        ordered = [b for b in ordered if b.first_seq > start_seq]
    pending: list[bytes] = []
    batch_iter = iter(ordered)
    current = next(batch_iter, None)
    seen = 0
    anchored_through = 0

    def collect() -> Iterable[bytes]:
        nonlocal current, seen, anchored_through
        for signed in signed_records:
            seen += 1
            yield signed
            if current is None or start_seq + seen - 1 < current.first_seq:
                continue
            pending.append(signed)
            if len(pending) == current.tree_size:
                if MerkleTree.from_leaves(pending).root != current.root:
                    raise ProofError(f"batch covering seq {current.first_seq}.."
                                     f"{current.first_seq + current.tree_size - 1}: records do "
                                     "not produce the anchored root")
                anchored_through = current.first_seq + current.tree_size - 1
                pending.clear()
                current = next(batch_iter, None)

    verify_chain(collect(), public_key, gateway_id=gateway_id, expect_first_seq=start_seq)
    last = start_seq + seen - 1
    if current is not None:
        raise RecordError(f"log ends at seq {last}, inside the anchored batch covering seq "
                          f"{current.first_seq}..{current.first_seq + current.tree_size - 1}: "
                          "records are missing", seq=last + 1)
    if start_seq > 1:
        anchored_through = max(anchored_through, start_seq)
    return LogReport(seen, anchored_through, last - anchored_through, start_seq)


def verify_kept(signed: bytes, audit_path: Sequence[bytes], batch: BatchRoot,
                public_key: Ed25519PublicKey, *, gateway_id: str | None = None) -> int:
    """A record kept from a pruned batch: well-formed, signed by `public_key`, and a leaf of
    `batch` by its stored audit path. Returns its seq; raises RecordError or ProofError."""
    record = parse(signed)
    check_schema(record, gateway_id)
    verify_signature(record, public_key)
    seq = record["seq"]
    index = seq - batch.first_seq
    if not 0 <= index < batch.tree_size:
        raise ProofError(f"seq {seq} is not in the batch covering seq {batch.first_seq}.."
                         f"{batch.first_seq + batch.tree_size - 1}")
    try:
        verify_inclusion(leaf_hash(signed), index, batch.tree_size, audit_path, batch.root)
    except ProofError as exc:
        raise ProofError(f"seq {seq}: kept record does not prove into its batch root "
                         f"({exc})") from None
    return int(seq)
