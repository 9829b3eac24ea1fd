"""Ed25519 signing key files: a gateway's (records), or the customs service's (plans,
acknowledgements, the audit chain, credentials). Made where they are used, never copied off.

The key file is PKCS#8 PEM, created with O_EXCL and mode 0600 so that `keys init` can never
overwrite the identity a registered gateway signs with (a new key means re-registration by
customs), and a key left readable by others is refused the way ssh refuses one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealtrail.errors import SealTrailError


class KeyFileError(SealTrailError):
    """A key file that is missing, unsafe, or not an Ed25519 key (message says which)."""

    exit_code = 1


def create_key(path: str | Path) -> Ed25519PrivateKey:
    """Write a new key to `path` (mode 0600); refuse if anything already exists there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a signing key "
                           "(move it away first if you really mean to re-key)") from None
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_key(path: str | Path) -> Ed25519PrivateKey:
    """Read a key file, refusing one that group or others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no key here; create one with "
                           f"`sealtrail keys init --key {path}`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: permissions {stat.filemode(mode)} are too open; "
                           f"run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Raw 32-byte public key as hex: the form customs registers on the ledger."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_from_hex(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
