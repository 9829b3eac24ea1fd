"""The gateway journal's file format: a contract between the gateway and customs.

A gateway's journal (one SQLite file) is read by more than the agent that writes it: customs
imports journals that arrive on a USB stick (``customs import``), and auditors check and export
from copies of them (``sealtrail journal verify``, ``evidence export``). So the format is
defined here, once, beside the record format, where both sides may import it (edge_agent and
customs never import each other): the tables, the format version, the meta keys, and how an
unversioned file is told apart. The agent's writer (``edge_agent.journal``) creates and
migrates the file from these definitions; ``journal_reader.JournalReader`` reads it.

Version 3 is the first to set ``PRAGMA user_version``; formats 1 and 2 (0 there) are told
apart by what the file holds (``detect``); the agent's history of them, and the migrations, are
in edge_agent/journal/schema.py. Formats 1 to 3 hold the same columns, so a reader reads them
all alike (``kept_proofs`` may be missing from a format 1 or 2 file that was never pruned). A
file newer than this code is refused: its meaning may have changed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sealtrail.errors import SealTrailError

FORMAT_VERSION = 3

TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) "
            "WITHOUT ROWID",
    "records": "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, t_ms INTEGER NOT "
               "NULL, kind TEXT NOT NULL, src TEXT NOT NULL, hash BLOB NOT NULL, signed BLOB "
               "NOT NULL)",
    "alerts": "CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, alert_id TEXT NOT "
              "NULL UNIQUE)",
    "cursors": "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL) "
               "WITHOUT ROWID",
    "state": "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) "
             "WITHOUT ROWID",
    "batches": "CREATE TABLE IF NOT EXISTS batches (batch_seq INTEGER PRIMARY KEY, first_seq "
               "INTEGER NOT NULL, tree_size INTEGER NOT NULL, root BLOB NOT NULL, status TEXT "
               "NOT NULL, closed_ms INTEGER NOT NULL, reason TEXT NOT NULL, nonce INTEGER, "
               "raw_tx BLOB, tx_hash BLOB, chain_id INTEGER, contract TEXT, block_number "
               "INTEGER, block_hash BLOB, log_index INTEGER)",
    # audit paths of records kept from pruned batches (edge_agent/journal/retention.py)
    "kept_proofs": "CREATE TABLE IF NOT EXISTS kept_proofs (seq INTEGER PRIMARY KEY, batch_seq "
                   "INTEGER NOT NULL, audit_path BLOB NOT NULL)",
    # seqs that alerts cite as evidence, collected incrementally (retention.py)
    "cited": "CREATE TABLE IF NOT EXISTS cited (seq INTEGER PRIMARY KEY)",
}
KEYED = ("meta", "cursors", "state")  # WITHOUT ROWID since format 2
BASE_TABLES = ("meta", "records", "alerts", "cursors", "state", "batches")  # in every format

# meta keys
GATEWAY_ID = "gateway_id"
PUBLIC_KEY = "public_key"
PRUNED_THROUGH = "pruned_through"  # last seq of the pruned prefix (retention)
PRUNED_RECORDS = "pruned_records"  # records deleted by retention, all told
CITED_THROUGH = "cited_through"  # last alert whose evidence retention has collected

PLANS_STATE_PREFIX = "rules/plans/"  # state keys of the signed plans the rules loaded

BATCH_FIELDS = ("batch_seq", "first_seq", "tree_size", "root", "status", "closed_ms", "reason",
                "nonce", "raw_tx", "tx_hash", "chain_id", "contract", "block_number",
                "block_hash", "log_index")
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Batch:
    """A row of ``batches``: a closed Merkle batch and where it stands on its way to the
    ledger. Read from a file that is not trusted, its fields hold whatever the file holds."""

    batch_seq: int
    first_seq: int
    tree_size: int
    root: bytes
    status: str  # built -> signed -> sent -> mined -> anchored (edge_agent/sinks/anchor.py)
    closed_ms: int
    reason: str
    nonce: int | None = None
    raw_tx: bytes | None = None
    tx_hash: bytes | None = None
    chain_id: int | None = None
    contract: str | None = None
    block_number: int | None = None
    block_hash: bytes | None = None
    log_index: int | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.tree_size - 1


class JournalError(SealTrailError):
    """The file is not a journal this code may use: another gateway's or key's, not a
    SealTrail journal at all, or written by a newer version (exit code 1, one line)."""


class NotAJournal(JournalError):
    """The file is not a SealTrail journal at all; ``reason`` says what it is instead."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: not a SealTrail journal ({reason})")
        self.reason = reason


def check_file(path: Path) -> None:
    """Before SQLite sees it: a regular file that starts as an SQLite database. (SQLite would
    create a missing file, and says only "file is not a database" of a text file.)"""
    if not path.is_file():
        raise JournalError(f"{path}: " + ("is a directory, not a journal file" if path.is_dir()
                                          else "no such journal file"))
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise NotAJournal(path, "not an SQLite database")


def detect(db: sqlite3.Connection, path: Path) -> int:
    """The file's format: user_version if set; else 0 for an empty file, 1 or 2 for a journal
    that earlier code wrote. Raises JournalError for anything else, named by its path."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {name: sql for name, sql in db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'sqlite_%'")}
    except sqlite3.DatabaseError as exc:
        raise NotAJournal(path, str(exc)) from None
    if version > FORMAT_VERSION:
        raise JournalError(f"{path}: journal format {version} is newer than this sealtrail's "
                           f"({FORMAT_VERSION}); upgrade sealtrail to open it")
    if version:
        return version
    if not tables:
        return 0
    if "meta" not in tables or not set(tables) <= set(TABLES):
        foreign = sorted(set(tables) - set(TABLES)) or ["no meta table"]
        raise NotAJournal(path, f"holds {', '.join(foreign[:3])}")
    cursors = tables.get("cursors") or ""
    return 2 if "WITHOUT ROWID" in cursors.upper() else 1
