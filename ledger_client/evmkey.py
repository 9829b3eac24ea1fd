"""EVM account keys in files: the customs admin key and each gateway's submitter key.

A key is a file holding one hex private key (what `cast wallet new` and most consortium
tooling print), mode 0600, never a command line argument: arguments end up in shell history and
in `ps` output on a shared gateway. A key file that group or others can read is refused, the
way ssh refuses one, because the submitter key is what lets a gateway anchor on the ledger.

`read_private_key` checks a key file without eth-account (which costs a gateway ~0.7 s and
~30 MB of RSS to import): `sealtrail agent check` and the agent's start-up use it, and the
account itself is made only when the first batch is signed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from sealtrail.errors import UsageError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order of secp256k1: a private key is an integer in 1..N-1."""


class EvmKeyError(UsageError):
    """A key file that is missing, unsafe, or not a secp256k1 private key (exit 2)."""


def load_account(path: str | Path) -> LocalAccount:
    """The account whose hex private key is in `path` (0x prefix and whitespace allowed)."""
    from eth_account import Account

    key = read_private_key(path)
    try:
        account: LocalAccount = Account.from_key(key)
    except ValueError as exc:
        raise EvmKeyError(f"{path}: not a valid private key ({exc})") from None
    return account


def read_private_key(path: str | Path) -> bytes:
    """The 32-byte private key in `path`, checked (private file, 64 hex digits, in range)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise EvmKeyError(f"{path}: no EVM key here; create one with "
                          "`sealtrail ledger account --create --key PATH`") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise EvmKeyError(f"{path}: not a hex private key file ({exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise EvmKeyError(f"{path}: permissions {stat.filemode(mode)} are too open; "
                          f"run `chmod 600 {path}`")
    hex_key = text.removeprefix("0x")
    if len(hex_key) != 64:
        raise EvmKeyError(f"{path}: expected 64 hex digits (a 32-byte private key), "
                          f"found {len(hex_key)} characters")
    try:
        key = bytes.fromhex(hex_key)
    except ValueError as exc:
        raise EvmKeyError(f"{path}: not a valid private key ({exc})") from None
    if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise EvmKeyError(f"{path}: not a valid private key (outside the secp256k1 range)")
    return key


def create_account(path: str | Path) -> LocalAccount:
    """Write a new key to `path` (mode 0600); refuse if anything already exists there."""
    from eth_account import Account

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    account: LocalAccount = Account.create()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EvmKeyError(f"{path} already exists; refusing to overwrite an EVM key") from None
    try:
        os.write(fd, (account.key.hex().removeprefix("0x") + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return account
