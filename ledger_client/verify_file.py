"""Verify an evidence file: every record against the ledger, and what only the file shows.

A record can be genuine on its own and the file still lie: a `prev` that does not name the hash
of the record before it (the gateway signed a fork, or the file splices two histories), a header
`gateway_id` that is not the gateway the records are signed by, a seq label that is not the
signed seq. Each is its own failure with its own exit code (`verify.BrokenLink`,
`WrongGateway`, `MislabelledSeq`), and the report names every record by its signed seq only.

Speed comes from asking the ledger per file, not per record: every record is parsed once, the
ledger's answers for all gateways, batches and anchor blocks of the file are fetched in one
JSON-RPC batch when the ledger offers `prefetch` (`reader.RegistryReader`), and the per-record
work left is the signature, the inclusion proof and dictionary look-ups.

The file's own chain and contract are never trusted: the caller picks the ledger (`registry`).
A file for another chain or contract fails as a whole, every record `WrongChain`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.evidence import Evidence, EvidenceRecord
from ledger_client.merkle import ProofError
from ledger_client.records import GENESIS_PREV
from ledger_client.verify import (
    BrokenLink,
    Ledger,
    MislabelledSeq,
    NotAnchored,
    TamperedRecord,
    UnknownGateway,
    VerificationError,
    Verified,
    WrongChain,
    WrongGateway,
    parse_record,
    signature_error,
    verify_parsed,
    worst,
)


@dataclass(frozen=True, slots=True)
class RecordResult:
    seq: int | None  # the record's signed seq; None when its bytes are not a record at all
    label: str  # kind/type of the record for the report, e.g. "gps" or "alert routeDeviation"
    verified: Verified | None = None  # what the ledger confirmed, even if the file failed it
    error: VerificationError | None = None  # the most serious failure (SEVERITY order)
    also: tuple[VerificationError, ...] = ()  # its other failures, if any
    labelled: int = 0  # the seq the file labels it with (unsigned)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class _Item:
    entry: EvidenceRecord
    record: dict[str, Any] | None
    failures: list[VerificationError] = field(default_factory=list)


def inspect(evidence: Evidence) -> list[_Item]:
    """Parse every record once and check what the file alone shows: the header gateway, the
    seq labels and the links between records of consecutive seqs."""
    items = []
    for entry in evidence.records:
        try:
            record = parse_record(entry.signed)
        except TamperedRecord as exc:
            items.append(_Item(entry, None, [exc]))
            continue
        item = _Item(entry, record)
        if record["gw"] != evidence.gateway_id:
            item.failures.append(WrongGateway(
                f"signed by gateway {record['gw']!r}, but the file is gateway "
                f"{evidence.gateway_id!r}'s evidence"))
        if record["seq"] != entry.seq:
            item.failures.append(MislabelledSeq(
                f"the file labels this record seq {entry.seq}; its signed seq is "
                f"{record['seq']}"))
        items.append(item)
    _check_links(items)
    return items


def _check_links(items: list[_Item]) -> None:
    hashes: dict[tuple[str, int], set[str]] = {}
    for item in items:
        if item.record is not None:
            key = (item.record["gw"], item.record["seq"])
            hashes.setdefault(key, set()).add(hashlib.sha256(item.entry.signed).hexdigest())
    for item in items:
        if item.record is None:
            continue
        gw, seq, prev = item.record["gw"], item.record["seq"], item.record["prev"]
        if seq == 1 and prev != GENESIS_PREV:
            item.failures.append(BrokenLink("seq 1 starts the chain, so its prev must be 64 "
                                            f"zeros; it is {prev[:16]}…"))
        before = hashes.get((gw, seq - 1))
        if before and prev not in before:
            item.failures.append(BrokenLink(
                f"prev {prev[:16]}… is not the hash of seq {seq - 1} in this file "
                f"({min(before)[:16]}…)"))


def chain_error(evidence: Evidence, registry: Ledger) -> WrongChain | None:
    """WrongChain when the file's header names another chain or contract than `registry`."""
    other_chain = evidence.chain_id is not None and evidence.chain_id != registry.chain_id
    other_contract = (evidence.contract is not None
                      and evidence.contract.lower() != registry.address.lower())
    if not (other_chain or other_contract):
        return None
    return WrongChain(f"the file is for chain {evidence.chain_id} contract {evidence.contract}; "
                      f"the ledger chosen is chain {registry.chain_id} contract "
                      f"{registry.address}")


def verify(evidence: Evidence, registry: Ledger, *,
           min_confirmations: int = 0) -> list[RecordResult]:
    """Verify every record of an evidence file; one result per record, failures included."""
    items = inspect(evidence)
    wrong = chain_error(evidence, registry)
    if wrong is not None:
        return [_result(item, [wrong], None) for item in items]
    prefetch = getattr(registry, "prefetch", None)
    if prefetch is not None:  # the ledger's answers for the whole file, in one round trip
        prefetch({item.record["gw"] for item in items if item.record is not None},
                 {key for item in items if (key := _anchor_key(item, registry)) is not None})
    results = []
    for item in items:
        verified = None
        failures = list(item.failures)
        if item.record is not None:
            try:
                verified = verify_parsed(item.record, item.entry.signed, item.entry.proof,
                                         registry, min_confirmations=min_confirmations)
            except VerificationError as exc:
                failures.append(exc)
        results.append(_result(item, failures, verified))
    return results


def check_offline(evidence: Evidence,
                  keys: Mapping[str, Ed25519PublicKey]) -> list[RecordResult]:
    """What can be checked without a ledger, given each gateway's key: the file's own checks,
    each signature, and each inclusion proof up to the root it names. Nothing here says the
    root is on chain, the key registered or the gateway not revoked: a result without an error
    means "consistent", never "verified" (`verify` is that)."""
    results = []
    for item in inspect(evidence):
        failures = list(item.failures)
        record, proof = item.record, item.entry.proof
        if record is not None:
            key = keys.get(record["gw"])
            problem = (f"no key given for gateway {record['gw']!r}" if key is None
                       else signature_error(record, key, item.entry.signed))
            if problem is not None:
                failures.append(UnknownGateway(problem) if key is None
                                else TamperedRecord(problem))
            if proof is None:
                failures.append(NotAnchored(f"seq {record['seq']}: no inclusion proof"))
            else:
                try:
                    proof.check(item.entry.signed, seq=record["seq"])
                except ProofError as exc:
                    failures.append(TamperedRecord(f"seq {record['seq']}: inclusion proof: "
                                                   f"{exc}"))
        results.append(_result(item, failures, None))
    return results


def _anchor_key(item: _Item, registry: Ledger) -> tuple[str, int, int | None] | None:
    """(gateway, batch, block) the record's proof names, if on `registry`'s chain/contract."""
    anchor = item.entry.proof.anchor if item.entry.proof is not None else None
    if item.record is None or anchor is None or anchor.chain_id != registry.chain_id or (
            anchor.contract.lower() != registry.address.lower()):
        return None
    return item.record["gw"], anchor.batch_seq, anchor.block_number


def _result(item: _Item, failures: list[VerificationError],
            verified: Verified | None) -> RecordResult:
    error = worst(failures)
    record = item.record
    return RecordResult(None if record is None else record["seq"], _label(record), verified,
                        error, tuple(f for f in failures if f is not error), item.entry.seq)


def _label(record: dict[str, Any] | None) -> str:
    if record is None:
        return "?"
    body = record["body"]
    if record["kind"] == "alert":
        return f"alert {body.get('type', '?')} {body.get('alert_id', '')}".rstrip()
    return f"{record['kind']} {record['src']}".rstrip()


def report(results: list[RecordResult], *, verbose: bool = False) -> tuple[list[str], int]:
    """One line per record by its signed seq (OK/FAIL, with notes; every check when verbose),
    a summary line, and the exit code: 0 when all verified, else the code of the most serious
    failure."""
    lines = []
    for res in results:
        seq = str(res.seq) if res.seq is not None else f"? (labelled {res.labelled})"
        if res.error is None and res.verified is not None:
            v = res.verified
            lines.append(f"OK    seq {seq} {res.label}: batch {v.batch_seq}, block "
                         f"{v.block_number}, {v.confirmations} confirmations")
            lines += [f"        {line}" for line in (v.steps if verbose else ()) + v.notes]
        elif res.error is not None:
            lines.append(f"FAIL  seq {seq} {res.label}: {res.error.label}: {res.error}")
            lines += [f"        and {e.label}: {e}" for e in res.also]
    failures = [r.error for r in results if r.error is not None]
    worst_error = worst(failures)
    code = worst_error.exit_code if worst_error is not None else 0
    counts = Counter(err.label for err in failures)
    detail = ", ".join(f"{label} {n}" for label, n in counts.items())
    lines.append(f"summary: {len(results) - len(failures)} of {len(results)} records verified"
                 + (f"; {len(failures)} failed ({detail}); exit {code}" if failures else ""))
    return lines, code
