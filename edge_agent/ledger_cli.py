"""`sealtrail ledger|verify|evidence`: the ledger commands, mounted into the gateway CLI.

The customs half (deploy, register, revoke, chain status, verify an evidence file or a record
and its proof) lives in `ledger_client.cli` and needs no gateway code. This module adds what
needs a journal file: `ledger status --journal` (local batches and the anchoring lag), `verify
--alert/--seq --journal`, and `evidence export`, which selects records and writes the bundle
that `sealtrail verify` checks with only an RPC endpoint.

A journal is opened read-only and without the gateway key: evidence is often exported from a
copy of the journal, by someone who must not hold the signing key.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger_client import cli as ledger
from ledger_client import verify_cli
from ledger_client.cli import guarded
from ledger_client.journal_format import JournalError
from ledger_client.journal_reader import JournalReader
from ledger_client.proof import AnchorRef
from sealtrail.errors import UsageError

if TYPE_CHECKING:
    from ledger_client import evidence
    from ledger_client.journal_format import Batch

IN_FLIGHT = ("signed", "sent")


class JournalFile(JournalReader):
    """The journal read-only (``ledger_client.journal_reader``), opened for a command: a file
    that is not a journal, or a journal without a gateway id, is bad input (exit 2)."""

    gateway_id: str

    def __init__(self, path: Path) -> None:
        try:
            super().__init__(path)
        except JournalError as exc:
            raise UsageError(str(exc)) from None
        if self.gateway_id is None:
            self.close()
            raise UsageError(f"{path}: not a SealTrail journal (no gateway id)")


# --- selection -------------------------------------------------------------------------------

def parse_seq_range(text: str) -> tuple[int, int]:
    """'A..B' (inclusive) or 'N'."""
    first, sep, last = text.partition("..")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        raise UsageError(f"--seq: expected N or A..B, got {text!r}") from None
    if a < 1 or b < a:
        raise UsageError(f"--seq: {text!r} is not a range of seqs >= 1")
    return a, b


def _body(signed: bytes) -> dict[str, Any]:
    body = json.loads(signed).get("body")
    return body if isinstance(body, dict) else {}


def _named_sensors(value: Any) -> set[str]:
    """Every string in an alert's `asset` (gps, seal ids, vehicle): the sensors it names."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_named_sensors(v) for v in value)) if value else set()
    return set()


def _with_evidence(jf: JournalFile, alerts: list[tuple[int, bytes]]) -> dict[int, bytes]:
    """The alerts plus the readings each one cites in body.evidence."""
    out = dict(alerts)
    for _, signed in alerts:
        for seq in _body(signed).get("evidence") or []:
            if isinstance(seq, int) and seq > 0:
                out.update(jf.signed(seq, seq))
    return out


def _plan(jf: JournalFile, plan_id: str) -> dict[int, bytes]:
    """Alerts of a plan, the readings they cite, and every reading of the sensors they name
    within the time they span (earliest cited reading or alert to the latest alert)."""
    alerts = [(s, b) for s, b in jf.alerts() if _body(b).get("plan_id") == plan_id]
    if not alerts:
        raise UsageError(f"--plan {plan_id}: no alert in {jf.path} names this plan")
    out = _with_evidence(jf, alerts)
    times = [json.loads(b)["t_ms"] for b in out.values()]
    sensors = set().union(*(_named_sensors(_body(b).get("asset")) for _, b in alerts))
    alert_seqs = {s for s, _ in alerts}
    sensors |= {json.loads(b)["src"] for s, b in out.items() if s not in alert_seqs}
    out.update(jf.readings(sensors, min(times), max(times)))
    return out


def select(jf: JournalFile, args: argparse.Namespace) -> dict[int, bytes]:
    chosen: dict[int, bytes] = {}
    for alert_id in args.alert or []:
        found = jf.alert(alert_id)
        if found is None:
            raise UsageError(f"--alert {alert_id}: no such alert in {jf.path}")
        chosen.update(_with_evidence(jf, [found]))
    for text in args.seq or []:
        first, last = parse_seq_range(text)
        chosen.update(jf.signed(first, last))
    if args.src:
        chosen.update(jf.readings(args.src, args.from_ms, args.to_ms))
    elif args.from_ms is not None or args.to_ms is not None:
        raise UsageError("--from-ms/--to-ms select readings of a --src")
    for plan_id in args.plan or []:
        chosen.update(_plan(jf, plan_id))
    if not chosen:
        raise UsageError("nothing selected: give --alert, --seq, --src or --plan (or the "
                         "selection matched no record)")
    return chosen


def unexported(jf: JournalFile, args: argparse.Namespace,
               chosen: dict[int, bytes]) -> dict[str, str]:
    """The seqs --seq asked for that are not in the journal, by why: ``pruned`` (retention
    deleted them: only alerts, their evidence and batch boundaries are kept) or
    ``beyond_head``. An export says so rather than silently being smaller than asked."""
    boundary, head = jf.pruned_through(), jf.head()
    kept = sorted(chosen)
    gaps: list[tuple[int, int]] = []
    for first, last in sorted(parse_seq_range(text) for text in args.seq or []):
        last = min(last, boundary)
        for seq in kept[bisect.bisect_left(kept, first):bisect.bisect_right(kept, last)]:
            if seq > first:
                gaps.append((first, seq - 1))
            first = seq + 1
        if first <= last:
            gaps.append((first, last))
    beyond = [text for text in args.seq or [] if parse_seq_range(text)[1] > head]
    out = {}
    if gaps:
        out["pruned"] = ", ".join(_merged(gaps))
    if beyond:
        out["beyond_head"] = f"head is seq {head}; asked for {', '.join(beyond)}"
    return out


def _merged(gaps: list[tuple[int, int]]) -> list[str]:
    """Sorted, possibly overlapping (first, last) ranges as 'A..B' / 'N', overlaps merged
    (two --seq ranges may cover the same pruned seqs). Ranges, not seqs: an export asked for
    1..10**9 must not build a set of a billion numbers."""
    merged: list[list[int]] = []
    for first, last in sorted(gaps):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [str(a) if a == b else f"{a}..{b}" for a, b in merged]


def build_evidence(jf: JournalFile, chosen: dict[int, bytes],
                   selection: dict[str, Any]) -> evidence.Evidence:
    from ledger_client import evidence

    batches = [_batch_info(b) for b in jf.batches()]
    return evidence.build(jf.gateway_id, chosen.items(), batches,
                          lambda a, b: [s for _, s in jf.signed(a, b)], selection=selection,
                          stored_path=jf.kept_path)  # proofs kept for pruned batches' records


def _batch_info(b: Batch) -> evidence.BatchInfo:
    from ledger_client import evidence

    anchor = None
    if b.block_hash is not None and b.chain_id is not None and b.contract and b.tx_hash:
        anchor = AnchorRef(b.chain_id, b.contract, b.batch_seq, "0x" + b.tx_hash.hex(),
                           b.block_number or 0, "0x" + b.block_hash.hex(), b.log_index or 0)
    return evidence.BatchInfo(b.batch_seq, b.first_seq, b.tree_size, b.root, anchor,
                              b.status == "anchored")


def _ranges(seqs: list[int]) -> str:
    parts, start = [], None
    for i, seq in enumerate(seqs):
        start = seq if start is None else start
        if i + 1 == len(seqs) or seqs[i + 1] != seq + 1:
            parts.append(str(seq) if start == seq else f"{start}..{seq}")
            start = None
    return ", ".join(parts)


def cmd_export(args: argparse.Namespace) -> int:
    jf = JournalFile(args.journal)
    try:
        selection = {k: v for k, v in {"alert": args.alert, "seq": args.seq, "src": args.src,
                                        "from_ms": args.from_ms, "to_ms": args.to_ms,
                                        "plan": args.plan}.items() if v}
        chosen = select(jf, args)
        missing = unexported(jf, args, chosen)
        if missing:
            selection["not_exported"] = missing
        ev = build_evidence(jf, chosen, selection)
    finally:
        jf.close()
    args.output.write_text(ev.to_json(), encoding="utf-8")
    if "pruned" in missing:
        print(f"not exported: seq {missing['pruned']} were pruned from the journal (retention "
              "keeps alerts, their evidence and batch boundaries); the export says so in "
              "selection.not_exported", file=sys.stderr)
    if "beyond_head" in missing:
        print(f"not exported: --seq beyond the journal: {missing['beyond_head']}",
              file=sys.stderr)
    pending = [r.seq for r in ev.pending]
    if pending:
        print(f"pending: seq {_ranges(pending)} not anchored yet: exported with status "
              "'pending'; export again once anchored", file=sys.stderr)
    print(f"wrote {args.output}: {len(ev.records)} records of {ev.gateway_id} "
          f"({len(ev.records) - len(pending)} anchored, {len(pending)} pending); chain "
          f"{ev.chain_id}, contract {ev.contract}")
    return 0


# --- journal-aware status and verify ---------------------------------------------------------

def journal_status(jf: JournalFile, chain_st: dict[str, Any] | None) -> dict[str, Any]:
    batches = jf.batches()
    head = jf.head()
    by_status: dict[str, int] = {}
    for b in batches:
        by_status[b.status] = by_status.get(b.status, 0) + 1
    unanchored = [b for b in batches if b.status != "anchored"]
    closed_through = batches[-1].last_seq if batches else 0
    out: dict[str, Any] = {"path": str(jf.path), "gateway_id": jf.gateway_id, "head_seq": head,
                           "batches": by_status, "unbatched_records": head - closed_through}
    if unanchored:
        oldest = unanchored[0]
        out["oldest_unanchored"] = {"batch_seq": oldest.batch_seq, "status": oldest.status,
                                    "closed_ms": oldest.closed_ms}
    if chain_st and chain_st.get("registered"):
        out["records_behind_ledger"] = head - chain_st["anchored_through_seq"]
        out["key_matches_registration"] = chain_st["pubkey"] == jf.public_key
    return out


def _print_journal_status(st: dict[str, Any], now_ms: int) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(st["batches"].items())) or "none"
    print(f"journal {st['path']}: head seq {st['head_seq']}; batches: {counts}; "
          f"{st['unbatched_records']} records not in a closed batch yet")
    if "records_behind_ledger" in st:
        print(f"  anchoring lag: {st['records_behind_ledger']} records not on chain yet")
        if not st["key_matches_registration"]:
            print("  WARNING: the journal's public key is not the key registered on chain")
    oldest = st.get("oldest_unanchored")
    if oldest:
        age = max(0, now_ms - oldest["closed_ms"]) / 1000
        print(f"  oldest unanchored batch: {oldest['batch_seq']} ({oldest['status']}), "
              f"closed {age:.0f} s ago")


def cmd_status(args: argparse.Namespace) -> int:
    if args.journal is None:
        return ledger.cmd_status(args)
    jf = JournalFile(args.journal)
    try:
        gateway_id = args.gateway_id or jf.gateway_id
        chain_st, unreachable = None, None
        try:
            chain_st = ledger.chain_status(ledger.registry(args), gateway_id)
        except OSError as exc:
            unreachable = exc
        st = journal_status(jf, chain_st)
    finally:
        jf.close()
    if args.json:
        print(json.dumps({"ledger": chain_st, "journal": st}))
    else:
        if chain_st is not None:
            ledger.print_chain_status(chain_st)
        _print_journal_status(st, int(time.time() * 1000))
    if unreachable is not None:
        print(f"sealtrail ledger status: cannot reach the ledger at {args.rpc}: {unreachable}",
              file=sys.stderr)
        return ledger.EXIT_UNREACHABLE
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.journal is None:
        if args.alert or args.seq:
            raise UsageError("--alert/--seq need --journal")
        return verify_cli.cmd_verify(args)
    if args.evidence is not None or args.record is not None:
        raise UsageError("with --journal, select the record by --alert ID or --seq N")
    choice = verify_cli.choose_ledger(args)  # refuse before reading anything
    jf = JournalFile(args.journal)
    try:
        if args.alert:
            found = jf.alert(args.alert)
            if found is None:
                raise UsageError(f"--alert {args.alert}: no such alert in {jf.path}")
            chosen = dict([found])
        elif args.seq:
            chosen = dict(jf.signed(args.seq, args.seq))
            if not chosen:
                raise UsageError(f"--seq {args.seq}: no such record in {jf.path}")
        else:
            raise UsageError("with --journal, select the record by --alert ID or --seq N")
        ev = build_evidence(jf, chosen, {})
    finally:
        jf.close()
    if args.proof is not None:  # check the proof that was handed over, not a fresh one
        ev = verify_cli.single(ev.records[0].signed, verify_cli.read_proof_file(args.proof))
    return verify_cli.verify_evidence(ev, args, choice)


def add_parsers(subparsers: ledger.SubParsers) -> None:
    """Mount `ledger ...`, `verify` and `evidence export` into the `sealtrail` parser."""
    parsers = ledger.add_commands(subparsers)
    status = parsers["status"]
    status.add_argument("--journal", type=Path, metavar="FILE",
                        help="also show this journal's batches and how far anchoring lags "
                             "(the gateway id is taken from it)")
    status.set_defaults(func=guarded(cmd_status))
    verify = parsers["verify"]
    verify.add_argument("--journal", type=Path, metavar="FILE", help="journal holding the record")
    verify.add_argument("--alert", metavar="ALERT_ID", help="the alert to verify (with --journal)")
    verify.add_argument("--seq", type=int, metavar="N", help="the record to verify (--journal)")
    verify.set_defaults(func=guarded(cmd_verify))

    ev = subparsers.add_parser("evidence", help="export records with proofs for customs",
                               description="Evidence bundles for customs.")
    ev_sub = ev.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    p = ev_sub.add_parser(
        "export", help="write a self-contained evidence file from a journal",
        description="Select records from a journal (read-only; no key needed) and write one "
                    "JSON file with their signed bytes, a Merkle inclusion proof each, the "
                    "anchor of every batch, and the gateway, chain and contract, which "
                    "`sealtrail verify FILE` checks with only an RPC endpoint. Selectors add "
                    "up. Records not anchored yet are listed on stderr and exported with "
                    "status 'pending'.")
    p.add_argument("--journal", type=Path, required=True, metavar="FILE", help="journal file")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="evidence file to write")
    p.add_argument("--alert", action="append", metavar="ALERT_ID",
                   help="an alert and the readings it cites as evidence (repeatable)")
    p.add_argument("--seq", action="append", metavar="A..B", help="a seq range or one seq")
    p.add_argument("--src", action="append", metavar="ID",
                   help="readings of this sensor (repeatable; see --from-ms/--to-ms)")
    p.add_argument("--from-ms", type=int, metavar="T", help="with --src: from this Unix ms")
    p.add_argument("--to-ms", type=int, metavar="T", help="with --src: up to this Unix ms")
    p.add_argument("--plan", action="append", metavar="PLAN_ID",
                   help="alerts whose plan_id matches, the readings they cite, and the "
                        "readings of the sensors they name over the time they span")
    p.set_defaults(func=guarded(cmd_export))
