"""`sealtrail keys init|show`: make a signing key on the device, print its public half.

The same key format serves a gateway (it signs records) and customs (it signs plans, fence
bundles, acknowledgements and its audit chain): a PKCS#8 PEM file, mode 0600, never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_KEY = Path("/var/lib/sealtrail/gateway.key")


def _init(args: argparse.Namespace) -> int:
    from ledger_client.keys import KeyFileError, create_key, public_hex

    try:
        key = create_key(args.key)
    except OSError as exc:  # a parent that cannot be made, a read-only file system
        raise KeyFileError(f"{exc.filename or args.key}: cannot create the key: "
                              f"{exc.strerror or exc}") from None
    print(f"wrote {args.key} (mode 0600)")
    print(f"public key: {public_hex(key)}")
    print("give the public key to customs to register this gateway on the ledger (or, for a "
          "customs key, to the gateways that must trust it)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ledger_client.keys import KeyFileError, load_key, public_hex

    try:
        key = load_key(args.key)
    except OSError as exc:  # a directory, a file this user may not read
        raise KeyFileError(f"{args.key}: not a key file: {exc.strerror or exc}") from None
    print(public_hex(key))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser(
        "keys", help="make or show an Ed25519 signing key (gateway or customs)",
        description="Make or show an Ed25519 signing key. A gateway's key never leaves the "
                    "device; customs registers its public half on the ledger. Customs keys "
                    "(plans, acknowledgements, audit chain) are made the same way. Exit 0 ok, "
                    "1 the key file is missing, unsafe or not an Ed25519 key.")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a new key (refuses to overwrite one)",
                          description="Create a key with mode 0600 and print its public half. "
                                      "Refuses if a file exists there: re-keying a gateway "
                                      "means re-registering it on the ledger.")
    init.add_argument("--key", type=Path, default=DEFAULT_KEY,
                      help=f"key file to create (default {DEFAULT_KEY})")
    init.set_defaults(func=_init)
    show = sub.add_parser("show", help="print the public key (hex) for registration",
                          description="Print the raw Ed25519 public key as 64 hex digits: what "
                                      "`sealtrail ledger register-gateway --pubkey` takes.")
    show.add_argument("--key", type=Path, default=DEFAULT_KEY,
                      help=f"key file (default {DEFAULT_KEY})")
    show.set_defaults(func=_show)
