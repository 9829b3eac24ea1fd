"""`sealtrail journal verify`: audit a journal file offline, as customs or an auditor would.

Exit codes are the contract a script relies on: 0 intact, 1 broken (a signature, a link or a
batch root does not hold), 2 the file is not a journal at all (missing, another format): an
auditor must never mistake "wrong file" for "tampered journal".
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from sealtrail.errors import UsageError


def _open(path: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    if not path.is_file():
        raise UsageError(f"{path}: " + ("is a directory, not a journal file" if path.is_dir()
                                        else "no such file"))
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise UsageError(f"{path}: not a SealTrail journal (not an SQLite database)")
    from edge_agent.journal.schema import FORMAT_VERSION

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            db.close()
            raise UsageError(f"{path}: journal format {version} is newer than this sealtrail's "
                             f"({FORMAT_VERSION}); upgrade sealtrail to verify it")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        db.execute("SELECT seq, signed FROM records LIMIT 0")
        db.execute("SELECT first_seq, tree_size, root FROM batches LIMIT 0")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise UsageError(f"{path}: not a SealTrail journal ({exc})") from None
    if "gateway_id" not in meta or "public_key" not in meta:
        db.close()
        raise UsageError(f"{path}: not a SealTrail journal (no gateway id or key in meta)")
    return db, meta


def _verify(args: argparse.Namespace) -> int:
    from edge_agent.journal.retention import verify_pruned_prefix
    from ledger_client.keys import public_from_hex
    from ledger_client.merkle import ProofError
    from ledger_client.proof import BatchRoot, verify_log
    from ledger_client.records import RecordError

    db, meta = _open(args.journal)
    try:
        try:
            pubkey = public_from_hex(args.public_key or meta["public_key"])
        except ValueError:
            raise UsageError(f"--public-key: not a 64-hex-digit Ed25519 key: "
                             f"{args.public_key or meta['public_key']!r}") from None
        batches = [BatchRoot(*row) for row in
                   db.execute("SELECT first_seq, tree_size, root FROM batches ORDER BY batch_seq")]
        start, kept = verify_pruned_prefix(db, pubkey, meta["gateway_id"])
        signed = (row[0] for row in db.execute("SELECT signed FROM records WHERE seq >= ? "
                                               "ORDER BY seq", (max(start, 1),)))
        report = verify_log(signed, pubkey, batches, gateway_id=meta["gateway_id"],
                            start_seq=max(start, 1))
    except (RecordError, ProofError) as exc:
        print(f"BROKEN: {exc}")
        return 1
    except sqlite3.DatabaseError as exc:  # pages that SQLite cannot read past the header
        print(f"BROKEN: {args.journal}: the database is damaged ({exc})")
        return 1
    finally:
        db.close()
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
