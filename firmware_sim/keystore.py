"""Seal keys and counters on disk: the keystore the agent reads and the seals' flash memory.

Keys are derived from the run seed and the seal id, so ``sim keys --seed N`` and
``sim fleet --seed N`` agree on every key without passing secrets between commands, and a test
can rebuild a key independently. These are simulator keys: derivable by anyone who knows the
seed, never to be used for a real seal.

The keystore file (DESIGN.md contract) is JSON ``{"version": 1, "seals": {id: 64 hex}}``,
created 0600 with O_EXCL: an existing keystore is never overwritten unless the caller says so.
The counter file is what a real seal keeps in flash: the last counter each seal used, so a
second run continues where the first stopped instead of replaying counters the agent has seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from firmware_sim.seal import KEY_BYTES, check_seal_id
from sealtrail import boundedjson

KEYSTORE_VERSION = 1
_KEY_DOMAIN = b"sealtrail-sim seal key v1\x00"
_FORGER_DOMAIN = b"sealtrail-sim forger key v1\x00"


def derive_key(seed: int, seal_id: str) -> bytes:
    """The 32-byte key of ``seal_id`` in a run seeded with ``seed``."""
    return hashlib.sha256(_KEY_DOMAIN + f"{seed}\x00{seal_id}".encode()).digest()


def forger_key(seed: int, seal_id: str) -> bytes:
    """A wrong key for forged messages: deterministic, and never the seal's own key."""
    return hashlib.sha256(_FORGER_DOMAIN + f"{seed}\x00{seal_id}".encode()).digest()


def default_seal_ids(count: int, prefix: str = "SEAL-", width: int = 5) -> list[str]:
    """``SEAL-00001`` ... : the ids ``sim keys --count`` and seal groups use by default."""
    return [check_seal_id(f"{prefix}{i:0{width}d}") for i in range(1, count + 1)]


def keystore_doc(keys: Mapping[str, bytes]) -> dict[str, object]:
    """The keystore JSON document for ``keys`` (seal id -> 32-byte key)."""
    for seal_id, key in keys.items():
        check_seal_id(seal_id)
        if len(key) != KEY_BYTES:
            raise ValueError(f"key for {seal_id} must be {KEY_BYTES} bytes")
    return {"version": KEYSTORE_VERSION, "seals": {k: v.hex() for k, v in sorted(keys.items())}}


def write_keystore(path: str | Path, keys: Mapping[str, bytes], *, force: bool = False) -> None:
    """Write a keystore with mode 0600.

    Without ``force`` the file is created with O_EXCL and an existing one is an error
    (``FileExistsError``). With ``force`` a temporary file is renamed over it atomically, so
    a reader never sees half a keystore.
    """
    data = (json.dumps(keystore_doc(keys), indent=1) + "\n").encode()
    path = Path(path)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if force else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        if force:
            with contextlib.suppress(OSError):
                target.unlink()
        raise


def _bounded(data: bytes, path: str | Path) -> object:
    """JSON of at most 64 MB and 4 levels (a keystore or counter file is 2 deep)."""
    try:
        return boundedjson.loads(data, max_bytes=64 * 1024 * 1024, max_depth=4)
    except boundedjson.JsonBoundError as exc:
        raise ValueError(f"{path}: {exc}") from None


def read_keystore(path: str | Path) -> dict[str, bytes]:
    """Load a keystore; ``ValueError`` names what is wrong with a malformed one."""
    doc = _bounded(Path(path).read_bytes(), path)
    if not isinstance(doc, dict) or doc.get("version") != KEYSTORE_VERSION:
        raise ValueError(f"{path}: not a version {KEYSTORE_VERSION} keystore")
    seals = doc.get("seals")
    if not isinstance(seals, dict):
        raise ValueError(f"{path}: 'seals' must be an object")
    out: dict[str, bytes] = {}
    for seal_id, hexkey in seals.items():
        check_seal_id(seal_id)
        if not isinstance(hexkey, str) or len(hexkey) != 2 * KEY_BYTES:
            raise ValueError(f"{path}: seals.{seal_id}: expected {2 * KEY_BYTES} hex digits")
        out[seal_id] = bytes.fromhex(hexkey)
    return out


def derived_keys(seed: int, seal_ids: Iterable[str]) -> dict[str, bytes]:
    """Keys for ``seal_ids`` under ``seed`` (see ``derive_key``)."""
    return {seal_id: derive_key(seed, seal_id) for seal_id in seal_ids}


def read_counters(path: str | Path) -> dict[str, int]:
    """Last counter per seal from a counter file; an absent file means a factory-new fleet."""
    try:
        doc = _bounded(Path(path).read_bytes(), path)
    except FileNotFoundError:
        return {}
    counters = doc.get("counters") if isinstance(doc, dict) else None
    if not isinstance(counters, dict) or not all(
        isinstance(v, int) and v >= 0 for v in counters.values()
    ):
        raise ValueError(f"{path}: expected {{\"counters\": {{seal_id: int >= 0}}}}")
    return dict(counters)


def write_counters(path: str | Path, counters: Mapping[str, int]) -> None:
    """Save counters atomically (temp file + rename), like a flash write that can't tear."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"counters": dict(sorted(counters.items()))}, indent=1) + "\n")
    os.replace(tmp, path)
