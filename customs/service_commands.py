"""The handlers of `sealtrail customs serve | import | user | audit` (parsers in customs.cli).

Exit codes: 0 ok; 1 the audit chain does not verify; 2 bad input (a file, an option, a store);
3 a service cannot be reached; 78 customs.toml has problems (listed, one per line).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sealtrail.errors import UsageError


def _store_target(args: argparse.Namespace) -> tuple[str, Any]:
    """--db, or the store of -c customs.toml (and the config)."""
    if getattr(args, "config", None) is not None:
        from customs.config import load_config

        config = load_config(args.config, check_files=False)
        return (args.db or config.store.target), config
    if not args.db:
        raise UsageError("give --db FILE|URL or -c customs.toml")
    return args.db, None


def cmd_serve(args: argparse.Namespace) -> int:
    from customs.serve import serve

    return serve(args.config, verbose=args.verbose)


def cmd_import(args: argparse.Namespace) -> int:
    from customs.importer import import_file
    from customs.receive import Receiver
    from customs.store import open_store
    from customs.trust import StaticTrust, TrustFile

    target, config = _store_target(args)
    if args.trust is not None:
        trust: Any = TrustFile(args.trust)
    elif config is not None and config.trust.file is not None:
        trust = TrustFile(config.trust.file)
    elif config is not None and config.trust.ledger:
        from customs.serve import _registry
        from customs.trust import LedgerTrust

        trust = LedgerTrust(_registry(config), ttl_s=60)
    elif args.public_key:
        trust = StaticTrust(dict(_pair(p) for p in args.public_key))
    else:
        raise UsageError("give the trusted gateway keys: --trust FILE, --public-key GW=HEX, "
                         "or -c customs.toml with a [trust] table")
    store = open_store(target)
    try:
        receiver = Receiver(store, trust)
        reports = [import_file(path, receiver) for path in args.files]
    finally:
        store.close()
    for path, report in zip(args.files, reports, strict=True):
        print(f"{path}: {report.summary()}")
        for skipped in report.skipped[:10]:
            print(f"  skipped {skipped}", file=sys.stderr)
    return 0


def _pair(text: str) -> tuple[str, str]:
    gw, sep, key = text.partition("=")
    if not sep or len(key) != 64:
        raise UsageError(f"--public-key {text!r}: expected GATEWAY=<64 hex digits>")
    return gw, key


def cmd_user_add(args: argparse.Namespace) -> int:
    from customs.store import open_store
    from customs.users import add_user, read_password

    target, _ = _store_target(args)
    password = read_password(args.password_file, prompt=sys.stdin.isatty())
    store = open_store(target)
    try:
        add_user(store, args.name, args.role, password, replace=args.replace)
    finally:
        store.close()
    print(f"officer {args.name} ({args.role}) {'updated' if args.replace else 'added'}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    from customs.store import open_store

    target, _ = _store_target(args)
    store = open_store(target, create=False)
    try:
        done = store.disable_officer(args.name)
    finally:
        store.close()
    if not done:
        raise UsageError(f"no enabled officer {args.name!r}")
    print(f"officer {args.name} disabled; their sessions are ended")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from customs.audit import ProofError, RecordError, verify_audit
    from customs.store import open_store
    from ledger_client.keys import load_key, public_from_hex

    target, config = _store_target(args)
    audit_id = args.audit_id or (config.office.audit_id if config else "customs-audit")
    if args.public_key:
        try:
            public = public_from_hex(args.public_key)
        except ValueError:
            raise UsageError(f"--public-key: not a 64-hex-digit Ed25519 key: "
                             f"{args.public_key!r}") from None
    elif config is not None:
        public = load_key(config.office.service_key).public_key()
    else:
        raise UsageError("give --public-key HEX (the customs service key) or -c customs.toml")
    store = open_store(target, create=False)
    try:
        report = verify_audit(store, public, audit_id)
    except (RecordError, ProofError) as exc:
        print(f"BROKEN: {exc}")
        return 1
    finally:
        store.close()
    log = report.log
    print(f"ok: audit chain {audit_id}: {log.records} entries, signatures and links intact")
    print(f"  entries 1..{log.anchored_through} covered by {report.batches} batch root(s) "
          f"({report.anchored} anchored); {log.unanchored_tail} not yet batched")
    return 0
