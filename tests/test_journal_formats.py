"""Journal formats: every journal an earlier version wrote opens, migrated in place, with its
rows intact and its chain continuing; a newer or foreign file is refused with one clear error.

Each older format is built here with the DDL that version wrote, literally (from git history:
edge_agent/journal.py and edge_agent/retention.py at the commits named), and rows as it wrote
them, signed by the same record signer (an alert of those days had no ``prev_alert``).
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from argparse import Namespace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import journal_cli
from edge_agent.journal import FORMAT_VERSION, Draft, Journal, JournalError, schema
from ledger_client.journal_format import NotAJournal
from ledger_client.journal_reader import JournalReader
from ledger_client.keys import public_hex
from ledger_client.merkle import root
from ledger_client.records import GENESIS_PREV, RecordSigner, record_hash, verify_chain
from sealtrail.errors import SealTrailError, UsageError

GW = "gw-formats"
T0 = 1_700_000_000_000

FORMAT_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, kind TEXT NOT NULL, src TEXT NOT NULL,
    hash BLOB NOT NULL, signed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, tree_size INTEGER NOT NULL,
    root BLOB NOT NULL, status TEXT NOT NULL, closed_ms INTEGER NOT NULL, reason TEXT NOT NULL,
    nonce INTEGER, raw_tx BLOB, tx_hash BLOB, chain_id INTEGER, contract TEXT,
    block_number INTEGER, block_hash BLOB, log_index INTEGER);
"""
"""a1f38ec (walking skeleton) to 38c403a: the keyed tables are rowid tables."""

FORMAT_2 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, kind TEXT NOT NULL, src TEXT NOT NULL,
    hash BLOB NOT NULL, signed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, tree_size INTEGER NOT NULL,
    root BLOB NOT NULL, status TEXT NOT NULL, closed_ms INTEGER NOT NULL, reason TEXT NOT NULL,
    nonce INTEGER, raw_tx BLOB, tx_hash BLOB, chain_id INTEGER, contract TEXT,
    block_number INTEGER, block_hash BLOB, log_index INTEGER);
"""
"""c8fd95a to abc7afd: meta, cursors and state WITHOUT ROWID; still no user_version."""

RETENTION_TABLES = """CREATE TABLE IF NOT EXISTS kept_proofs (
    seq INTEGER PRIMARY KEY, batch_seq INTEGER NOT NULL, audit_path BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cited (seq INTEGER PRIMARY KEY);"""
"""What retention added on its first start (ea6bb5c on), in journals with a size bound."""

ALERT_ID = "00000000-0000-4000-8000-000000000004"


def _old_journal(path: Path, ddl: str, key: Ed25519PrivateKey, *, retention: bool) -> None:
    """Five records (an alert among them), a batch, cursors, state, as the old code left them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(ddl)
    if retention:
        db.executescript(RETENTION_TABLES)
    db.execute("INSERT INTO meta VALUES ('gateway_id', ?)", (GW,))
    db.execute("INSERT INTO meta VALUES ('public_key', ?)", (public_hex(key),))
    signer, prev = RecordSigner(GW, key), GENESIS_PREV
    for seq in range(1, 6):
        kind, body = ("gps", {"lat_e7": -349_000_000 + seq, "lon_e7": -562_000_000})
        if seq == 4:
            kind, body = "alert", {"alert_id": ALERT_ID, "type": "routeDeviation",
                                   "severity": "critical", "evidence": [2, 3]}
        signed = signer.sign(seq, T0 + seq, kind, "gps0" if kind == "gps" else "rules", body,
                             prev)
        digest = record_hash(signed)
        db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                   (seq, T0 + seq, kind, "gps0" if kind == "gps" else "rules", digest, signed))
        prev = digest.hex()
    db.execute("INSERT INTO alerts VALUES (4, ?)", (ALERT_ID,))
    leaves = [row[0] for row in db.execute("SELECT signed FROM records WHERE seq <= 4 "
                                           "ORDER BY seq")]
    db.execute("INSERT INTO batches (batch_seq, first_seq, tree_size, root, status, closed_ms, "
               "reason) VALUES (1, 1, 4, ?, 'anchored', ?, 'alert')", (root(leaves), T0))
    db.executemany("INSERT INTO cursors VALUES (?, ?)", [("rules", 5), ("anchor", 4)])
    db.executemany("INSERT INTO state VALUES (?, ?)",
                   [("rules/truck-1", '{"off": true}'), ("seal/S1/ctr", "17")])
    db.close()


def _table_sql(path: Path, table: str) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("SELECT sql FROM sqlite_master WHERE name = ?",
                              (table,)).fetchone()[0])


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


@pytest.mark.parametrize(("ddl", "retention"), [(FORMAT_1, False), (FORMAT_1, True),
                                                (FORMAT_2, False), (FORMAT_2, True)],
                         ids=["format1", "format1+retention", "format2", "format2+retention"])
def test_an_older_journal_is_migrated_with_its_rows_intact(tmp_path, ddl, retention) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "old.db"
    _old_journal(path, ddl, key, retention=retention)
    before = [(s, bytes(b)) for s, b in sqlite3.connect(path).execute(
        "SELECT seq, signed FROM records ORDER BY seq")]

    journal = Journal(path, gateway_id=GW, key=key)
    assert _user_version(path) == FORMAT_VERSION
    for table in ("meta", "cursors", "state"):
        assert "WITHOUT ROWID" in _table_sql(path, table).upper()
    assert [(s.seq, s.signed) for s in journal.read_after(0)] == before
    assert journal.head()[0] == 5
    assert journal.alert_seq(ALERT_ID) == 4 and journal.last_alert == 4
    assert journal.cursor("rules") == 5 and journal.cursor("anchor") == 4
    assert journal.states("rules/") == {"rules/truck-1": '{"off": true}'}
    assert journal.state("seal/S1/ctr") == "17"
    (batch,) = journal.batches()
    assert (batch.first_seq, batch.tree_size, batch.status) == (1, 4, "anchored")

    stored = journal.append([Draft(T0 + 6, "gps", "gps0", {"lat_e7": 1, "lon_e7": 2}),
                             Draft(T0 + 7, "alert", "rules", {
                                 "alert_id": "00000000-0000-4000-8000-000000000007",
                                 "type": "routeReturn", "severity": "info", "evidence": [6]})],
                            cursors={"rules": 7}, state={"seal/S1/ctr": "18"})
    assert [s.seq for s in stored] == [6, 7]
    assert stored[1].body()["prev_alert"] == 4  # the chain of alerts continues the old one
    assert journal.cursor("rules") == 7 and journal.state("seal/S1/ctr") == "18"
    assert verify_chain(journal.iter_signed(), key.public_key(), gateway_id=GW).count == 7
    journal.close()

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert journal_cli._verify(Namespace(journal=path, public_key=None)) == 0, out.getvalue()
    reopened = Journal(path, gateway_id=GW, key=key)  # migrating twice changes nothing
    assert reopened.head()[0] == 7 and _user_version(path) == FORMAT_VERSION
    reopened.close()


def test_a_new_journal_is_written_in_the_current_format(tmp_path) -> None:
    path = tmp_path / "new.db"
    Journal(path, gateway_id=GW, key=Ed25519PrivateKey.generate()).close()
    assert _user_version(path) == FORMAT_VERSION
    assert _table_sql(path, "kept_proofs").startswith("CREATE TABLE")


def test_a_failed_migration_leaves_the_old_format_whole(tmp_path, monkeypatch) -> None:
    """One transaction: a step that fails after the first one has run leaves format 1 as it
    was (rowid tables, rows, no version), and a later open migrates it fully."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "old.db"
    _old_journal(path, FORMAT_1, key, retention=False)

    def broken(db: sqlite3.Connection) -> None:
        schema._create_missing(db)
        raise sqlite3.OperationalError("power cut, as it were")

    monkeypatch.setitem(schema.MIGRATIONS, 2, broken)
    with pytest.raises(JournalError, match="power cut"):
        Journal(path, gateway_id=GW, key=key)
    assert _user_version(path) == 0
    assert "WITHOUT ROWID" not in _table_sql(path, "cursors").upper()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'kept_proofs'"
                          ).fetchone() is None
        assert db.execute("SELECT seq FROM cursors WHERE name = 'rules'").fetchone() == (5,)

    monkeypatch.undo()
    journal = Journal(path, gateway_id=GW, key=key)
    assert journal.cursor("rules") == 5 and _user_version(path) == FORMAT_VERSION
    journal.close()


def test_a_journal_newer_than_the_code_is_refused(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "j.db"
    Journal(path, gateway_id=GW, key=key).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    with pytest.raises(JournalError, match=rf"format {FORMAT_VERSION + 1} is newer") as caught:
        Journal(path, gateway_id=GW, key=key)
    assert str(path) in str(caught.value) and isinstance(caught.value, SealTrailError)
    assert _user_version(path) == FORMAT_VERSION + 1  # left as it was
    with pytest.raises(JournalError, match="newer"):  # nor read by the read-only reader
        JournalReader(path)
    with pytest.raises(UsageError, match="newer"):  # journal verify: exit 2, not "broken"
        journal_cli._verify(Namespace(journal=path, public_key=None))


def test_a_foreign_sqlite_file_or_a_non_sqlite_file_is_refused(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    foreign = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(JournalError, match="not a SealTrail journal"):
        Journal(foreign, gateway_id=GW, key=key)
    with contextlib.closing(sqlite3.connect(foreign)) as db:  # nothing was added to it
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["t"]

    text = tmp_path / "notes.txt"
    text.write_bytes(b"not a database, just some text that is long enough to have a header\n")
    with pytest.raises(JournalError, match="not a SealTrail journal"):
        Journal(text, gateway_id=GW, key=key)
    assert text.read_bytes().startswith(b"not a database")


@pytest.mark.parametrize(("ddl", "retention"), [(FORMAT_1, False), (FORMAT_2, True)],
                         ids=["format1", "format2+retention"])
def test_the_read_only_reader_reads_an_older_journal_and_leaves_it_as_it_was(
        tmp_path, ddl, retention) -> None:
    """The tools that are not the agent (journal verify, evidence export, customs import) read
    a copy of an old journal as it is: nothing migrated, nothing written."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "old.db"
    _old_journal(path, ddl, key, retention=retention)
    before = path.read_bytes()
    with JournalReader(path) as journal:
        assert (journal.format, journal.gateway_id) == ((2 if ddl is FORMAT_2 else 1), GW)
        assert journal.public_key == public_hex(key) and journal.head() == 5
        assert journal.alert(ALERT_ID) == (4, journal.signed(4, 4)[0][1])
        assert [b.last_seq for b in journal.batches()] == [4]
        assert journal.kept_path(4) is None and journal.pruned_through() == 0
        assert journal.states("seal/") == [("seal/S1/ctr", "17")]
        assert verify_chain(journal.iter_signed(1, chunk=2), key.public_key(),
                            gateway_id=GW).count == 5
    assert path.read_bytes() == before and _user_version(path) == 0
    assert journal_cli._verify(Namespace(journal=path, public_key=None)) == 0


def test_the_reader_refuses_a_file_that_is_not_a_journal(tmp_path) -> None:
    foreign = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")  # a meta table, nothing else
    with pytest.raises(NotAJournal, match=r"not a SealTrail journal \(no records table"):
        JournalReader(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("plain text, not a database\n")
    with pytest.raises(NotAJournal, match="not an SQLite database"):
        JournalReader(text)
    with pytest.raises(JournalError, match="no such journal file"):
        JournalReader(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # a read-only open creates nothing
