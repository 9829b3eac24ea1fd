"""The customs service's signing key, read from a file that only its owner may read.

Accepted forms: PKCS#8 PEM (what ``sealtrail keys init`` and ``openssl genpkey -algorithm
ed25519`` write) or the raw 32-byte seed as 64 hex digits (what HSM exports and test rigs
produce). A key file readable by group or others is refused, as ssh refuses one: a leaked
customs key lets anyone issue credentials every receiving administration trusts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from customs.credentials.errors import InputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAX_KEY_FILE = 16 * 1024


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path``; InputError (naming the file) for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        st = os.stat(path)
        if st.st_size > MAX_KEY_FILE:
            raise InputError(f"{path}: {st.st_size} bytes is too large for a key file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such key file") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{path}: permissions {stat.filemode(st.st_mode)} are too open for a "
                         f"signing key; run `chmod 600 {path}`")
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"{path}: not an Ed25519 key")
        return key
    text = data.strip().decode("ascii", "replace")
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    raise InputError(f"{path}: neither a PEM (PKCS#8) Ed25519 key nor 64 hex digits")


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
