"""Evidence files: a self-contained bundle customs can check with nothing but an RPC endpoint.

One JSON document holds the selected records as their exact signed bytes (as UTF-8 text, since
signed bytes are canonical JSON), one DESIGN.md "Proof" per record, the anchor reference of
every batch involved, and the gateway, chain and contract they belong to. Nothing in it is
trusted by the verifier: the key comes from the registry, the root from the contract, and a
`status` field only tells a human what the exporter knew. Records whose batch was not anchored
when exported travel with status "pending" (and a proof without anchor, or no proof when not
even batched), so an exporter never has to wait for the ledger and a verifier says exactly why
such a record does not verify yet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger_client.merkle import ALG, MerkleTree, ProofError, leaf_hash, verify_inclusion
from ledger_client.proof import AnchorRef, Proof
from ledger_client.records import RecordError, parse
from ledger_client.verify import VerificationError, Verified, WrongChain, verify_record, worst

if TYPE_CHECKING:  # web3 loads in a second; verifying a file offline does not need it
    from ledger_client.chain import AnchorRegistry

FORMAT = "sealtrail-evidence/1"


class EvidenceError(ValueError):
    """An evidence file that cannot be read as one (not a verification failure)."""


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
    seq: int
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


def load(text: str) -> Evidence:
    """Parse an evidence file; EvidenceError names what is malformed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvidenceError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EvidenceError(f"not a {FORMAT} document")
    try:
        records = [EvidenceRecord(int(r["seq"]), r["record"].encode("utf-8"),
                                  Proof.from_dict(r["proof"]) if r.get("proof") else None,
                                  str(r.get("status", "pending")))
                   for r in doc["records"]]
        return Evidence(str(doc["gateway_id"]), records, doc.get("chain_id"),
                        doc.get("contract"), doc.get("selection") or {},
                        int(doc.get("created_ms") or 0))
    except (KeyError, TypeError, ValueError, AttributeError, ProofError) as exc:
        raise EvidenceError(f"malformed evidence file: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class RecordResult:
    seq: int
    label: str  # kind/type of the record for the report, e.g. "gps" or "alert routeDeviation"
    verified: Verified | None = None
    error: VerificationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def verify(evidence: Evidence, registry: AnchorRegistry, *,
           min_confirmations: int = 0) -> list[RecordResult]:
    """Verify every record of an evidence file; one result per record, failures included."""
    chain_error: WrongChain | None = None
    if evidence.chain_id is not None and (
            evidence.chain_id != registry.chain_id
            or str(evidence.contract).lower() != registry.address.lower()):
        chain_error = WrongChain(f"evidence is for chain {evidence.chain_id} contract "
                                 f"{evidence.contract}; this endpoint is chain "
                                 f"{registry.chain_id} contract {registry.address}")
    results = []
    for rec in evidence.records:
        label = _label(rec.signed)
        if chain_error is not None:
            results.append(RecordResult(rec.seq, label, error=chain_error))
            continue
        try:
            results.append(RecordResult(rec.seq, label, verify_record(
                rec.signed, rec.proof, registry, min_confirmations=min_confirmations)))
        except VerificationError as exc:
            results.append(RecordResult(rec.seq, label, error=exc))
    return results


def report(results: list[RecordResult], *, verbose: bool = False) -> tuple[list[str], int]:
    """One line per record (OK/FAIL, with notes; every check when verbose), a summary line,
    and the exit code: 0 when all verified, else the code of the most serious failure."""
    lines = []
    for res in results:
        if res.verified is not None:
            v = res.verified
            lines.append(f"OK    seq {res.seq} {res.label}: batch {v.batch_seq}, block "
                         f"{v.block_number}, {v.confirmations} confirmations")
            lines += [f"        {line}" for line in (v.steps if verbose else ()) + v.notes]
        elif res.error is not None:
            lines.append(f"FAIL  seq {res.seq} {res.label}: {res.error.label}: {res.error}")
    failures = [r.error for r in results if r.error is not None]
    worst_error = worst(failures)
    code = worst_error.code if worst_error is not None else 0
    counts = Counter(err.label for err in failures)
    detail = ", ".join(f"{label} {n}" for label, n in counts.items())
    lines.append(f"summary: {len(results) - len(failures)} of {len(results)} records verified"
                 + (f"; {len(failures)} failed ({detail}); exit {code}" if failures else ""))
    return lines, code


def _label(signed: bytes) -> str:
    try:
        record = parse(signed)
    except RecordError:
        return "?"
    body = record.get("body")
    if record.get("kind") == "alert" and isinstance(body, dict):
        return f"alert {body.get('type', '?')} {body.get('alert_id', '')}".rstrip()
    return f"{record.get('kind', '?')} {record.get('src', '')}".rstrip()

