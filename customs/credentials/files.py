"""Credential files in and out: bounded strict reads, atomic writes.

A credential, a pinned DID document or a status list is read whole but never beyond
``MAX_FILE``, and parsed as strict I-JSON (``jcs.loads``). Writes go to a temporary file in
the same directory, fsynced, then renamed, so a web server publishing a status list never
serves half of one; ``exclusive`` refuses to replace an existing file (a fresh status list
must never overwrite a published one, whose set bits are revocations).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from customs.credentials.errors import CredentialError, InputError

MAX_FILE = 4 * 1024 * 1024


def read_json(path: Path, *, bad: type[CredentialError] = InputError) -> Any:
    """A JSON file, strictly parsed; InputError if it cannot be read, ``bad`` if it is not
    I-JSON. Messages start with the file name."""
    from customs.credentials import jcs

    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise InputError(f"{path}: {size} bytes is more than the {MAX_FILE} allowed")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    try:
        return jcs.loads(data)
    except CredentialError as exc:
        raise bad(f"{path}: {exc.message}") from None


def write_json(path: Path, doc: Any, *, exclusive: bool = False) -> None:
    """Write atomically (a reader never sees half a status list); ``exclusive`` refuses to
    replace an existing file."""
    if exclusive and path.exists():
        raise InputError(f"{path}: already exists; refusing to overwrite it")
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        if exclusive:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        raise InputError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise InputError(f"{path}: {exc.strerror}") from None
