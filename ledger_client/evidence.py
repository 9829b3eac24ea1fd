"""Evidence files: a self-contained bundle customs can check with nothing but an RPC endpoint.

One JSON document holds the selected records as their exact signed bytes (as UTF-8 text, since
signed bytes are canonical JSON), one DESIGN.md "Proof" per record, the anchor reference of
every batch involved, and the gateway, chain and contract they belong to. Nothing in it is
trusted by the verifier: the key comes from the registry, the root from the contract, and a
`status` field only tells a human what the exporter knew. Records whose batch was not anchored
when exported travel with status "pending" (and a proof without anchor, or no proof when not
even batched), so an exporter never has to wait for the ledger and a verifier says exactly why
such a record does not verify yet.

Reading one is bounded like any payload from outside (size and nesting checked on the bytes
first, every field's type checked), because the file comes from whoever hands it over. Checking
one is `verify_file`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger_client.abi import is_address
from ledger_client.merkle import ALG, MerkleTree, ProofError, leaf_hash, verify_inclusion
from ledger_client.proof import AnchorRef, Proof
from sealtrail import boundedjson
from sealtrail.errors import UsageError

if TYPE_CHECKING:
    from ledger_client.verify import Ledger
    from ledger_client.verify_file import RecordResult

FORMAT = "sealtrail-evidence/1"
MAX_EVIDENCE_BYTES = 256 * 1024 * 1024
"""The largest evidence file read (about 150,000 records with their proofs); split bigger
exports by --seq range."""


class EvidenceError(UsageError):
    """An evidence file (or the journal it is exported from) that cannot be used as one: bad
    input, exit 2; the message names the file. Not a verification failure."""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A closed batch as the exporter knows it; `anchor` is None until it is on chain."""

    batch_seq: int
    first_seq: int
    tree_size: int
    root: bytes
    anchor: AnchorRef | None = None
    anchored: bool = False  # the exporter saw enough confirmations

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.tree_size - 1


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    seq: int  # the exporter's label, NOT signed: the verifier reports the record's own seq
    signed: bytes
    proof: Proof | None
    status: str  # anchored | pending


@dataclass
class Evidence:
    gateway_id: str
    records: list[EvidenceRecord]
    chain_id: int | None = None
    contract: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0

    @property
    def pending(self) -> list[EvidenceRecord]:
        return [r for r in self.records if r.status != "anchored"]

    def to_json(self) -> str:
        anchors: dict[int, dict[str, Any]] = {}
        for rec in self.records:
            if rec.proof is not None and rec.proof.anchor is not None:
                a = rec.proof.anchor
                anchors[a.batch_seq] = {"batch_seq": a.batch_seq, "first_seq": rec.proof.first_seq,
                                        "tree_size": rec.proof.tree_size, "root": rec.proof.root,
                                        "tx_hash": a.tx_hash, "block_number": a.block_number,
                                        "block_hash": a.block_hash, "log_index": a.log_index}
        doc = {
            "format": FORMAT, "created_ms": self.created_ms, "gateway_id": self.gateway_id,
            "chain_id": self.chain_id, "contract": self.contract, "selection": self.selection,
            "anchors": [anchors[k] for k in sorted(anchors)],
            "records": [{"seq": r.seq, "status": r.status, "record": r.signed.decode("utf-8"),
                         "proof": r.proof.to_dict() if r.proof else None}
                        for r in self.records],
        }
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def build(gateway_id: str, selected: Iterable[tuple[int, bytes]], batches: Sequence[BatchInfo],
          leaves: Callable[[int, int], list[bytes]], *,
          selection: dict[str, Any] | None = None,
          stored_path: Callable[[int], list[bytes] | None] | None = None) -> Evidence:
    """Evidence for `selected` (seq, signed bytes) records.

    `batches` are the closed batches that may hold them; `leaves(first, last)` returns the
    signed bytes of a seq range, read once per batch to rebuild its tree. A tree that does
    not reproduce the batch's stored root means the local store is corrupt: EvidenceError.
    In a pruned journal the other leaves of a kept record's batch are gone; `stored_path(seq)`
    returns the audit path kept for it when its batch was pruned (checked against the root).
    """
    trees: dict[int, MerkleTree] = {}
    ordered = sorted(batches, key=lambda b: b.first_seq)
    records: list[EvidenceRecord] = []
    refs: set[tuple[int, str]] = set()
    for seq, signed in sorted(dict(selected).items()):
        batch = _batch_of(ordered, seq)
        if batch is None:
            records.append(EvidenceRecord(seq, signed, None, "pending"))
            continue
        index = seq - batch.first_seq
        path = stored_path(seq) if stored_path is not None else None
        if path is None:
            tree = trees.get(batch.batch_seq)
            if tree is None:
                tree = MerkleTree.from_leaves(leaves(batch.first_seq, batch.last_seq))
                if tree.root != batch.root or tree.size != batch.tree_size:
                    raise EvidenceError(f"batch {batch.batch_seq}: the stored records no "
                                        "longer produce its root (journal damaged?)")
                trees[batch.batch_seq] = tree
            path = tree.inclusion_proof(index)
        leaf = leaf_hash(signed)
        try:
            verify_inclusion(leaf, index, batch.tree_size, path, batch.root)
        except ProofError:
            raise EvidenceError(f"seq {seq}: its proof does not lead to the root of batch "
                                f"{batch.batch_seq} (journal damaged?)") from None
        status = "anchored" if batch.anchored and batch.anchor else "pending"
        proof = Proof(ALG, leaf.hex(), index, batch.tree_size, [h.hex() for h in path],
                      batch.root.hex(), batch.anchor, status, batch.first_seq)
        if batch.anchor:
            refs.add((batch.anchor.chain_id, batch.anchor.contract))
        records.append(EvidenceRecord(seq, signed, proof, status))
    if len(refs) > 1:
        raise EvidenceError(f"batches are anchored on more than one chain/contract: {refs}")
    chain_id, contract = next(iter(refs)) if refs else (None, None)
    return Evidence(gateway_id, records, chain_id, contract, selection or {},
                    int(time.time() * 1000))


def _batch_of(batches: Sequence[BatchInfo], seq: int) -> BatchInfo | None:
    for batch in batches:
        if batch.first_seq <= seq <= batch.last_seq:
            return batch
    return None


def read(path: Path) -> Evidence:
    """Read and load an evidence file; EvidenceError (exit 2) names the file and the fault."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as exc:
        raise EvidenceError(f"{path}: {exc.strerror or exc}") from None
    return load(data, source=str(path))


def load(data: bytes | str, *, source: str = "evidence file") -> Evidence:
    """Parse an evidence document; EvidenceError names `source` and what is malformed."""
    try:
        doc = boundedjson.loads(data, max_bytes=MAX_EVIDENCE_BYTES)
    except boundedjson.JsonBoundError as exc:
        raise EvidenceError(f"{source}: not a {FORMAT} file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise EvidenceError(f"{source}: not a {FORMAT} document"
                            + (f" (format {str(found)[:40]!r})" if found is not None else ""))

    def fail(what: str) -> EvidenceError:
        return EvidenceError(f"{source}: malformed {FORMAT} file: {what}")

    gateway_id, chain_id, contract = doc.get("gateway_id"), doc.get("chain_id"), doc.get("contract")
    if not isinstance(gateway_id, str) or not gateway_id:
        raise fail("gateway_id must be a non-empty string")
    if chain_id is not None and type(chain_id) is not int:
        raise fail("chain_id must be an integer or null")
    if contract is not None and not is_address(contract):
        raise fail(f"contract {str(contract)[:60]!r} is not an EVM address")
    entries = doc.get("records")
    if not isinstance(entries, list):
        raise fail("records must be a list")
    records = [_entry(entry, i, fail) for i, entry in enumerate(entries)]
    selection, created = doc.get("selection") or {}, doc.get("created_ms") or 0
    if not isinstance(selection, dict) or type(created) is not int:
        raise fail("selection must be an object and created_ms an integer")
    return Evidence(gateway_id, records, chain_id, contract, selection, created)


def _entry(entry: Any, i: int, fail: Callable[[str], EvidenceError]) -> EvidenceRecord:
    if not isinstance(entry, dict):
        raise fail(f"records[{i}] must be an object")
    seq, text, status = entry.get("seq"), entry.get("record"), entry.get("status", "pending")
    if type(seq) is not int or not isinstance(text, str) or not isinstance(status, str):
        raise fail(f"records[{i}] needs an integer seq, the record as a string and a string "
                   "status")
    try:
        proof = Proof.from_dict(entry["proof"]) if entry.get("proof") is not None else None
    except ProofError as exc:
        raise fail(f"records[{i}] (labelled seq {seq}): {exc}") from None
    # surrogatepass: a lone surrogate cannot be in signed bytes, so the record fails to parse
    # (tampered) instead of the file failing to load
    return EvidenceRecord(seq, text.encode("utf-8", "surrogatepass"), proof, status)


def verify(evidence: Evidence, registry: Ledger, *,
           min_confirmations: int = 0) -> list[RecordResult]:
    """`verify_file.verify`, under the name callers used before it moved there."""
    from ledger_client import verify_file

    return verify_file.verify(evidence, registry, min_confirmations=min_confirmations)


def report(results: list[RecordResult], *, verbose: bool = False) -> tuple[list[str], int]:
    """`verify_file.report`, under the name callers used before it moved there."""
    from ledger_client import verify_file

    return verify_file.report(results, verbose=verbose)

