"""Officer accounts: argon2id password hashes, and who may do what.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 "low memory" profile: 64 MiB, 3
passes), memory-hard so that a copied ``officers`` table is expensive to attack offline; the
hash string carries its own parameters, so raising them later only affects new hashes (and
``needs_rehash`` upgrades an officer's hash at the next login).

Roles (the console enforces them on every request, the audit chain records who acted):

* ``auditor``: reads everything (map, queue, trips, audit chain, evidence), changes nothing;
* ``officer``: also acts on alerts: acknowledge, resolve with a reason, add a note, and issue
  credentials for what it handled;
* ``supervisor``: also assigns alerts to officers, reopens a resolved alert (a correction, as a
  new audit entry), and records trip lifecycle steps (released at departure, inspected at a
  checkpoint, terminated at destination).
"""

from __future__ import annotations

import getpass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from customs.store import SqlStore
from customs.store.console_queries import ROLES, ConflictError
from sealtrail.errors import UsageError

MIN_PASSWORD = 10
HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
ACTING = ("officer", "supervisor")
SUPERVISING = ("supervisor",)
_DUMMY = HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a password needs at least {MIN_PASSWORD} characters")
    return HASHER.hash(password)


def check_password(store: SqlStore, name: str, password: str) -> str | None:
    """The officer's role if ``password`` is theirs and the account is enabled, else None.
    An unknown name costs the same argon2 work as a wrong password (no user enumeration)."""
    officer = store.officer(name)
    stored = officer.password_hash if officer is not None else _DUMMY
    try:
        HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if officer is None or officer.disabled_ms is not None:
        return None
    if HASHER.check_needs_rehash(stored):
        store.add_officer(name, officer.role, HASHER.hash(password), replace=True)
    return officer.role


def read_password(password_file: Path | None, *, prompt: bool = True) -> str:
    """From a file (first line; the file must be private) or typed twice at a prompt."""
    if password_file is not None:
        from customs.commands import read_secret

        return read_secret(password_file, "--password-file")
    if not prompt:
        raise UsageError("give --password-file FILE (no terminal to ask on)")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UsageError("the two passwords differ")
    return first


def add_user(store: SqlStore, name: str, role: str, password: str, *,
             replace: bool = False) -> None:
    if role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 64 or not name.isprintable() or " " in name:
        raise UsageError(f"officer name {name!r}: 1-64 printable characters, no spaces")
    try:
        store.add_officer(name, role, hash_password(password), replace=replace)
    except ConflictError as exc:
        raise UsageError(f"{exc} (use --replace to set a new password or role)") from None
