"""`sealtrail customs verify-credential | status-list | attest | did-document`.

``add_commands(subparsers)`` mounts the commands under the ``customs`` group;
``python -m customs.credentials`` runs them on their own. Module-level imports stay light
(argparse only) so ``--help`` answers at once; the crypto is imported by the handler that
needs it. Every refusal is one line on stderr naming the file, and the exit code of its
``CredentialError`` class (errors.py); ``--json`` prints the outcome on stdout as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from customs.credentials.errors import (
    EXIT_OK,
    CredentialError,
    InputError,
    MalformedCredential,
    StatusListError,
)
from customs.credentials.files import read_json, write_json

Handler = Callable[[argparse.Namespace], int]


def _pins(values: Sequence[str]) -> Any:
    from customs.credentials.did import PinSet

    pins: list[Any] = []
    for value in values:
        if value.startswith("did:"):
            pins.append(value)
            continue
        path = Path(value)
        doc = read_json(path)
        try:
            PinSet.of([doc])  # alone first, so an error names its file
        except CredentialError as exc:
            raise InputError(f"{path}: {exc.message}") from None
        pins.append(doc)
    return PinSet.of(pins)


def _verify(args: argparse.Namespace) -> int:
    from customs.credentials.issue import now_ms
    from customs.credentials.verify import verify_credential

    path: Path = args.file
    try:
        credential = read_json(path, bad=MalformedCredential)
        pins = _pins(args.pin)
        status_list = (read_json(args.status_list, bad=StatusListError)
                       if args.status_list else None)
        verified = verify_credential(credential, pins, now_ms=now_ms(), status_list=status_list,
                                     check_status=not args.ignore_status)
    except CredentialError as exc:
        message = exc.message if exc.message.startswith(str(path)) or isinstance(
            exc, InputError) else f"{path}: {exc.message}"
        if args.json:
            print(json.dumps({"file": str(path), "verified": False, "code": exc.code,
                              "error": type(exc).__name__, "message": message}))
        print(f"sealtrail customs verify-credential: {message}", file=sys.stderr)
        return exc.code
    from customs.credentials.dates import xsd_datetime

    status = verified.status or "none"
    if verified.status == "active":
        status = f"active (not revoked in {args.status_list})"
    elif verified.status == "unchecked":
        status = "NOT CHECKED (--ignore-status)"
    if args.json:
        print(json.dumps({
            "file": str(path), "verified": True, "code": EXIT_OK, "id": verified.credential_id,
            "types": list(verified.types), "issuer": verified.issuer,
            "verificationMethod": verified.verification_method,
            "validFrom": _maybe(verified.valid_from_ms, xsd_datetime),
            "validUntil": _maybe(verified.valid_until_ms, xsd_datetime),
            "status": verified.status}))
        return EXIT_OK
    kinds = ", ".join(t for t in verified.types if t != "VerifiableCredential") or "credential"
    print(f"verified: {kinds} {verified.credential_id or ''}".rstrip())
    print(f"  issuer   {verified.issuer}")
    print(f"  key      {verified.verification_method}")
    if verified.valid_from_ms is not None:
        until = (f", until {xsd_datetime(verified.valid_until_ms)}"
                 if verified.valid_until_ms is not None else "")
        print(f"  valid    from {xsd_datetime(verified.valid_from_ms)}{until}")
    print(f"  status   {status}")
    return EXIT_OK


def _maybe(value: int | None, fn: Callable[[int], str]) -> str | None:
    return None if value is None else fn(value)


def _guard(name: str, handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CredentialError as exc:
            print(f"sealtrail customs {name}: {exc.message}", file=sys.stderr)
            return exc.code
    return run


def _with_key(key_path: Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a signing step; a key that cannot sign for the issuer is blamed on its file."""
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        raise InputError(f"{key_path}: {exc.message}") from None


def _status_make(args: argparse.Namespace) -> int:
    from customs.credentials.issue import now_ms, sign
    from customs.credentials.keys import load_signing_key
    from customs.credentials.statuslist import list_credential

    key = load_signing_key(args.key)
    at = now_ms()
    unsigned = list_credential(args.id, args.issuer, valid_from_ms=at - at % 1000,
                               purpose=args.purpose, length_bits=args.length)
    signed = _with_key(args.key, sign, unsigned, key, args.issuer, at_ms=at)
    write_json(args.output, signed, exclusive=True)
    print(f"wrote {args.output}: {args.purpose} list {args.id}, {args.length} entries, "
          "none set; publish it at its id")
    return EXIT_OK


def _status_change(value: bool) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from customs.credentials.did import issuer_did
        from customs.credentials.issue import now_ms, sign
        from customs.credentials.keys import load_signing_key
        from customs.credentials.statuslist import get_bit, list_bits, set_status

        path: Path = args.file
        current = read_json(path, bad=StatusListError)
        issuer = issuer_did(current.get("issuer")) if isinstance(current, dict) else None
        if not issuer:
            raise StatusListError(f"{path}: not a status list credential (no issuer)")
        key = load_signing_key(args.key)
        try:
            before = get_bit(list_bits(current), args.index)
        except StatusListError as exc:
            raise StatusListError(f"{path}: {exc.message}") from None
        at = now_ms()
        changed = set_status(current, args.index, value, valid_from_ms=at - at % 1000)
        write_json(path, _with_key(args.key, sign, changed, key, issuer, at_ms=at))
        word = "revoked" if value else "un-revoked"
        note = " (it already was)" if before == value else ""
        print(f"{word} index {args.index} in {path}{note}; re-signed, publish it again")
        return EXIT_OK
    return run


def _attest(args: argparse.Namespace) -> int:
    from customs.credentials.dates import parse_datetime_stamp
    from customs.credentials.facts import facts_from_json
    from customs.credentials.issue import issue
    from customs.credentials.keys import load_signing_key
    from customs.credentials.statuslist import status_entry

    key = load_signing_key(args.key)
    if args.plan is not None:  # the facts from the customs store (customs/facts_store.py)
        from customs.facts_store import facts_for_plan

        facts = facts_for_plan(args.db, args.plan, key, args.customs_keys, args.audit_id)
    else:
        try:
            facts = facts_from_json(read_json(args.facts))
        except CredentialError as exc:
            prefix = "" if exc.message.startswith(str(args.facts)) else f"{args.facts}: "
            raise InputError(prefix + exc.message) from None
    if (args.status_list_url is None) != (args.status_index is None):
        raise InputError("--status-list-url and --status-index go together")
    status = (status_entry(args.status_list_url, args.status_index)
              if args.status_list_url is not None else None)
    until = None
    if args.valid_until:
        try:
            until = parse_datetime_stamp(args.valid_until)
        except ValueError as exc:
            raise InputError(f"--valid-until: {exc}") from None
    credential = _with_key(args.key, issue, facts, key, args.issuer, valid_until_ms=until,
                           status=status)
    write_json(args.output, credential)
    print(f"wrote {args.output}: {credential['type'][1]} {credential['id']}")
    return EXIT_OK


def _did_document(args: argparse.Namespace) -> int:
    from customs.credentials.did import did_web_document, did_web_url
    from customs.credentials.keys import load_signing_key, public_bytes
    from customs.credentials.multikey import MultikeyError, decode_public_multikey

    keys = [public_bytes(load_signing_key(args.key))]
    for text in args.also_key:
        try:
            keys.append(decode_public_multikey(text))
        except MultikeyError as exc:
            raise InputError(f"--also-key {text[:20]}: {exc}") from None
    doc = did_web_document(args.did, keys)
    if args.output:
        write_json(args.output, doc)
        print(f"wrote {args.output}; publish it at {did_web_url(args.did)}")
    else:
        print(json.dumps(doc, indent=2))
    return EXIT_OK


def add_commands(subparsers: Any) -> None:
    """Add the credential commands to the ``sealtrail customs`` sub-command group."""
    verify = subparsers.add_parser(
        "verify-credential", help="verify a W3C credential offline (eddsa-jcs-2022)",
        description="Verify a Verifiable Credential (ours or another issuer's) with no network: "
                    "data model, shipped contexts, Data Integrity proof, the issuer's pinned "
                    "key, validity period and, with --status-list, revocation. Exit codes: "
                    "0 verified, 2 input, 20 malformed, 21 proof unsupported, 22 wrong "
                    "purpose, 23 issuer not trusted, 24 bad signature, 25 not yet valid, "
                    "26 expired, 27 unknown context, 28 revoked, 29 status list unusable, "
                    "30 status not checked.")
    verify.add_argument("file", type=Path, metavar="FILE", help="the credential (JSON)")
    verify.add_argument("--pin", action="append", default=[], metavar="DID_DOCUMENT_OR_DID_KEY",
                        help="a trusted issuer: a did:key, or a DID document file "
                             "(repeatable)")
    verify.add_argument("--status-list", type=Path, metavar="FILE",
                        help="the issuer's status-list credential, to check revocation")
    verify.add_argument("--ignore-status", action="store_true",
                        help="accept a credential with a credentialStatus without checking it")
    verify.add_argument("--json", action="store_true", help="print the outcome as JSON")
    verify.set_defaults(func=_verify)

    status = subparsers.add_parser(
        "status-list", help="make or change the revocation list customs publishes",
        description="A Bitstring Status List credential: one bit per issued credential; a set "
                    "bit revokes it. Every change re-signs the list.")
    actions = status.add_subparsers(dest="status_action", metavar="ACTION", required=True)
    make = actions.add_parser("make", help="make a new, empty list (refuses to overwrite)")
    make.add_argument("--id", required=True, metavar="URL", help="where the list is published")
    make.add_argument("--issuer", required=True, metavar="DID")
    make.add_argument("--key", required=True, type=Path, metavar="KEYFILE")
    make.add_argument("--purpose", choices=("revocation", "suspension"), default="revocation")
    make.add_argument("--length", type=int, default=131_072, metavar="BITS")
    make.add_argument("-o", "--output", required=True, type=Path, metavar="OUT")
    make.set_defaults(func=_guard("status-list make", _status_make))
    for name, value in (("revoke", True), ("unrevoke", False)):
        change = actions.add_parser(name, help=f"{'set' if value else 'clear'} a credential's "
                                               "bit and re-sign the list in place")
        change.add_argument("file", type=Path, metavar="FILE")
        change.add_argument("--index", required=True, type=int, metavar="N")
        change.add_argument("--key", required=True, type=Path, metavar="KEYFILE")
        change.set_defaults(func=_guard(f"status-list {name}", _status_change(value)))

    attest = subparsers.add_parser(
        "attest", help="issue a trip or alert credential from a facts file or the store",
        description="Sign the facts (README: the facts file) as a VC 2.0 credential with an "
                    "eddsa-jcs-2022 proof, issued by the customs office's DID. --plan ID takes "
                    "a trip's facts from the customs store (--db) instead of a file.")
    source = attest.add_mutually_exclusive_group(required=True)
    source.add_argument("--facts", type=Path, metavar="FACTS.json")
    source.add_argument("--plan", metavar="ID", help="the trip of this plan, from --db")
    attest.add_argument("--db", metavar="FILE|URL", help="the customs store (with --plan)")
    attest.add_argument("--customs-keys", type=Path, metavar="FILE",
                        help="more customs public keys the plan may be signed by (with --plan; "
                             "the --key's own public half is always trusted)")
    attest.add_argument("--audit-id", default="customs-audit", metavar="ID",
                        help="the office's audit-chain id (with --plan; default customs-audit)")
    attest.add_argument("--key", required=True, type=Path, metavar="KEYFILE")
    attest.add_argument("--issuer", required=True, metavar="DID")
    attest.add_argument("--status-list-url", metavar="URL")
    attest.add_argument("--status-index", type=int, metavar="N")
    attest.add_argument("--valid-until", metavar="DATETIME")
    attest.add_argument("-o", "--output", required=True, type=Path, metavar="OUT")
    attest.set_defaults(func=_guard("attest", _attest))

    did = subparsers.add_parser(
        "did-document", help="the customs office's did:web DID document",
        description="Print (or write) the DID document to publish for a did:web issuer.")
    did.add_argument("--did", required=True, metavar="DID")
    did.add_argument("--key", required=True, type=Path, metavar="KEYFILE")
    did.add_argument("--also-key", action="append", default=[], metavar="MULTIKEY",
                     help="an older public key still to be accepted (repeatable)")
    did.add_argument("-o", "--output", type=Path, metavar="OUT")
    did.set_defaults(func=_guard("did-document", _did_document))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sealtrail customs",
                                     description="Customs credentials (W3C VC 2.0).")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
