"""The `sealtrail` command line: one entry point for installers, customs and test engineers."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_agent import demo
from edge_agent.keys import GatewayKeyError, create_key, load_key, public_hex

DEFAULT_KEY = Path("/var/lib/sealtrail/gateway.key")


def _keys_init(args: argparse.Namespace) -> int:
    try:
        key = create_key(args.key)
    except GatewayKeyError as exc:
        print(f"sealtrail keys init: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.key} (mode 0600)")
    print(f"public key: {public_hex(key)}")
    print("give the public key to customs to register this gateway on the ledger")
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    try:
        print(public_hex(load_key(args.key)))
    except GatewayKeyError as exc:
        print(f"sealtrail keys show: {exc}", file=sys.stderr)
        return 1
    return 0


def _journal_verify(args: argparse.Namespace) -> int:
    """Offline audit of a journal file: chain, signatures and every closed batch's root; in a
    pruned journal, every kept record's proof to its batch root, then the retained chain."""
    from edge_agent.keys import public_from_hex
    from edge_agent.retention import verify_pruned_prefix
    from ledger_client.merkle import ProofError
    from ledger_client.proof import BatchRoot, verify_log
    from ledger_client.records import RecordError

    if not args.journal.exists():
        print(f"sealtrail journal verify: {args.journal}: no such file", file=sys.stderr)
        return 2
    db = sqlite3.connect(f"file:{args.journal}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta"))
        pubkey = public_from_hex(args.public_key or meta["public_key"])
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealtrail",
        description="SealTrail: signed, hash-chained, ledger-anchored e-seal and GPS readings "
                    "for customs transit control.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo.add_parser(sub)
    from edge_agent.ledger_cli import add_parsers as add_ledger  # ledger, verify, evidence
    add_ledger(sub)
    from edge_agent.agent_cli import add_parser as add_agent  # agent run -c gateway.toml
    add_agent(sub)
    from edge_agent.plan_cli import add_parser as add_plan  # plan sign|verify|show
    add_plan(sub)
    from edge_agent.customs.cli import add_parser as add_customs  # customs watch|report
    add_customs(sub)

    keys = sub.add_parser("keys", help="the gateway's Ed25519 signing key",
                          description="Make or show the gateway's signing key. The key never "
                                      "leaves the device; customs registers its public half.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = keys_sub.add_parser("init", help="create a new key (refuses to overwrite one)",
                               description="Create the gateway key with mode 0600. Refuses if a "
                                           "file exists there: re-keying means re-registration.")
    init.add_argument("--key", type=Path, default=DEFAULT_KEY,
                      help=f"key file to create (default {DEFAULT_KEY})")
    init.set_defaults(func=_keys_init)
    show = keys_sub.add_parser("show", help="print the public key (hex) for registration")
    show.add_argument("--key", type=Path, default=DEFAULT_KEY,
                      help=f"key file (default {DEFAULT_KEY})")
    show.set_defaults(func=_keys_show)

    journal = sub.add_parser("journal", help="inspect and audit a journal file")
    journal_sub = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    verify = journal_sub.add_parser(
        "verify", help="verify the chain, signatures and batch roots of a journal",
        description="Read a journal file (read-only) and check every record's signature and "
                    "link and every closed batch's Merkle root. Exit 0 if intact, 1 if broken.")
    verify.add_argument("journal", type=Path, help="journal file (SQLite)")
    verify.add_argument("--public-key", help="gateway public key (hex) to check against, e.g. "
                                             "the one registered on the ledger")
    verify.set_defaults(func=_journal_verify)

    from firmware_sim.cli import add_parser as add_sim  # the simulator is a separate program;
    add_sim(sub)                                       # the CLI only mounts its commands

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
