"""`sealtrail journal verify`: audit a journal file offline, as customs or an auditor would.

Exit codes are the contract a script relies on: 0 intact, 1 broken (a signature, a link or a
batch root does not hold), 2 the file is not a journal at all (missing, another format): an
auditor must never mistake "wrong file" for "tampered journal".
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sealtrail.errors import UsageError

if TYPE_CHECKING:
    from ledger_client.journal_reader import JournalReader


def _open(path: Path) -> JournalReader:
    """The journal read-only, with its gateway id and key; anything else is exit 2 (bad
    input), never "broken": a newer format, another file, a journal without its identity."""
    from ledger_client.journal_format import JournalError
    from ledger_client.journal_reader import JournalReader

    try:
        journal = JournalReader(path)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    if journal.gateway_id is None or journal.public_key is None:
        journal.close()
        raise UsageError(f"{path}: not a SealTrail journal (no gateway id or key in meta)")
    return journal


def _verify(args: argparse.Namespace) -> int:
    from edge_agent.journal.retention import verify_pruned_prefix
    from ledger_client.keys import public_from_hex
    from ledger_client.merkle import ProofError
    from ledger_client.proof import BatchRoot, verify_log
    from ledger_client.records import RecordError

    journal = _open(args.journal)
    gateway_id, key_hex = journal.gateway_id or "", args.public_key or journal.public_key
    try:
        try:
            pubkey = public_from_hex(key_hex or "")
        except ValueError:
            raise UsageError(f"--public-key: not a 64-hex-digit Ed25519 key: "
                             f"{key_hex!r}") from None
        batches = [BatchRoot(b.first_seq, b.tree_size, b.root) for b in journal.batches()]
        start, kept = verify_pruned_prefix(journal, pubkey, gateway_id)
        report = verify_log(journal.iter_signed(max(start, 1)), pubkey, batches,
                            gateway_id=gateway_id, start_seq=max(start, 1))
    except (RecordError, ProofError) as exc:
        print(f"BROKEN: {exc}")
        return 1
    except sqlite3.DatabaseError as exc:  # pages that SQLite cannot read past the header
        print(f"BROKEN: {args.journal}: the database is damaged ({exc})")
        return 1
    finally:
        journal.close()
    last = report.start_seq + report.records - 1
    if start:
        print(f"ok: seq 1..{start} pruned ({kept} records kept there, each proven into its "
              f"batch root); seq {start}..{last}: {report.records} records, chain intact")
    else:
        print(f"ok: {report.records} records, chain intact")
    print(f"  seq 1..{report.anchored_through} covered by {len(batches)} batch roots; "
          f"{report.unanchored_tail} not yet batched")
    if not args.public_key:
        print("note: checked with the key stored in the journal; pass --public-key with the key "
              "registered on the ledger to rule out a re-signed journal")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journal = subparsers.add_parser(
        "journal", help="audit a gateway journal file offline (signatures, links, batch roots)",
        description="Look into a gateway's journal file (SQLite) without the gateway key.")
    sub = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify", help="verify the chain, signatures and batch roots of a journal",
        description="Read a journal file (read-only) and check every record's signature and "
                    "link and every closed batch's Merkle root; in a pruned journal, every kept "
                    "record's proof into its batch root. Exit 0 intact, 1 broken, 2 not a "
                    "journal (missing file, another format).")
    verify.add_argument("journal", type=Path, help="journal file (SQLite)")
    verify.add_argument("--public-key", metavar="HEX",
                        help="gateway public key to check against, e.g. the one registered on "
                             "the ledger (default: the key the journal names)")
    verify.set_defaults(func=_verify)
