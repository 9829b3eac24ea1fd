"""Inclusion proofs as customs receives them, and offline checks of a whole log.

A proof object is the DESIGN.md "Anchoring" shape: it carries what a verifier needs besides the
record itself and a JSON-RPC endpoint. `verify_log` is the auditor's view of a journal dump:
the hash chain proves nothing was changed or reordered, and recomputing every anchored batch
root proves nothing was dropped from the end of a batch, which the chain alone cannot show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.merkle import ALG, MerkleTree, ProofError, leaf_hash, verify_inclusion
from ledger_client.records import RecordError, parse, verify_chain


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
    def from_dict(cls, data: dict[str, Any]) -> Proof:
        try:
            anchor = AnchorRef(**data["anchor"]) if data.get("anchor") else None
            return cls(**{**data, "anchor": anchor})
        except (TypeError, KeyError) as exc:
            raise ProofError(f"malformed proof object: {exc}") from exc

    def check(self, signed: bytes) -> None:
        """Offline part: the record is the leaf, and the audit path leads to `root`."""
        if self.alg != ALG:
            raise ProofError(f"unsupported proof algorithm {self.alg!r} (expected {ALG})")
        leaf = leaf_hash(signed)
        if leaf.hex() != self.leaf_hash:
            raise ProofError("the record's leaf hash is not the one in the proof")
        seq = parse(signed)["seq"]
        if seq - self.first_seq != self.leaf_index:
            raise ProofError(f"seq {seq} is not leaf {self.leaf_index} of a batch starting at "
                             f"seq {self.first_seq}")
        verify_inclusion(leaf, self.leaf_index, self.tree_size,
                         [bytes.fromhex(h) for h in self.audit_path], bytes.fromhex(self.root))


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


def verify_log(signed_records: Iterable[bytes], public_key: Ed25519PublicKey,
               batches: Sequence[BatchRoot], *, gateway_id: str | None = None) -> LogReport:
    """Verify a whole log from seq 1: chain links, signatures, and every batch root.

    Raises RecordError (broken field or link) or ProofError (a batch root that the records no
    longer produce, which is how a deleted or added record inside an anchored range shows).
    """
    ordered = sorted(batches, key=lambda b: b.first_seq)
    expected_first = 1
    for batch in ordered:
        if batch.first_seq != expected_first:
            raise ProofError(f"batches leave a gap or overlap at seq {expected_first}")
        expected_first = batch.first_seq + batch.tree_size
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
            if current is None:
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

    verify_chain(collect(), public_key, gateway_id=gateway_id)
    if current is not None:
        raise RecordError(f"log ends at seq {seen}, inside the anchored batch covering seq "
                          f"{current.first_seq}..{current.first_seq + current.tree_size - 1}: "
                          "records are missing", seq=seen + 1)
    return LogReport(seen, anchored_through, seen - anchored_through)
