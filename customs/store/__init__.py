"""The customs store: everything verified, everything quarantined, and what officers did.

One interface (``SqlStore``: ``write`` for receivers, the queries for consoles and commands),
two engines: an SQLite file (the embedded default, one office, the demo) and PostgreSQL (a
national administration: several receivers and consoles on several machines).

    store = open_store("customs.db")                      # SQLite file
    store = open_store("postgresql://customs@db/customs")  # PostgreSQL
"""

from __future__ import annotations

from pathlib import Path

from customs.store.base import SqlStore, StoreDataError, StoreError, StoreUnavailable
from customs.store.rows import (
    AlertRow,
    AnchorClaim,
    GatewayRow,
    OverflowRow,
    Part,
    PlanEnvelope,
    QuarantineRow,
    Quota,
    RecordRow,
    Rejection,
    StatusUpdate,
    WriteResult,
    now_ms,
)

Store = SqlStore

__all__ = [
    "AlertRow", "AnchorClaim", "GatewayRow", "OverflowRow", "Part", "PlanEnvelope",
    "QuarantineRow", "Quota", "RecordRow", "Rejection", "StatusUpdate", "Store",
    "StoreDataError", "StoreError", "StoreUnavailable", "WriteResult", "is_url", "now_ms",
    "open_store",
]


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | Path, *, quota: Quota | None = None, create: bool = True,
               pool_size: int = 4) -> SqlStore:
    """A PostgreSQL store for a ``postgresql://`` URL, else an SQLite file at that path
    (``create=False``: the file must exist, for commands that only read)."""
    if is_url(target):
        from customs.store.postgres import PostgresStore

        return PostgresStore(str(target), quota=quota, pool_size=pool_size)
    from customs.store.sqlite import SqliteStore

    path = Path(target)
    if not create and not path.exists():
        raise StoreError(f"{path}: no such customs store (made by `sealtrail customs serve` or "
                         "`customs watch`)")
    return SqliteStore(path, quota=quota)
