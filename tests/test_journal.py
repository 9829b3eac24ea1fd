"""Journal: atomic seq/prev/insert, cursors and state, tamper evidence, SIGKILL durability."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.journal import Draft, Journal, JournalError, Stored
from ledger_client.keys import KeyFileError, create_key, load_key
from ledger_client.merkle import ProofError, root
from ledger_client.proof import BatchRoot, verify_log
from ledger_client.records import (
    RecordError,
    RecordSigner,
    canonical,
    record_hash,
    verify_chain,
)

HELPER = Path(__file__).parent / "helpers" / "journal_writer.py"


def _gps(i: int) -> Draft:
    return Draft(1_700_000_000_000 + i * 1000, "gps", "gps0",
                 {"lat_e7": -349_000_000 + i, "lon_e7": -562_000_000 - i, "hdop_x10": 9,
                  "sats": 8})


def _alert(i: int) -> Draft:
    return Draft(1_700_000_000_000 + i * 1000, "alert", "rules",
                 {"alert_id": f"00000000-0000-4000-8000-{i:012d}", "type": "routeDeviation",
                  "severity": "critical", "evidence": [i - 2, i - 1]})


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_append_assigns_contiguous_seqs_that_continue_after_reopen(tmp_path, key) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, gateway_id="gw-1", key=key)
    first = journal.append([_gps(i) for i in range(5)])
    assert [s.seq for s in first] == [1, 2, 3, 4, 5]
    journal.close()
    journal = Journal(path, gateway_id="gw-1", key=key)
    more = journal.append([_gps(5), _alert(6)])
    assert [s.seq for s in more] == [6, 7]
    assert journal.alert_seq("00000000-0000-4000-8000-000000000006") == 7
    assert [s.seq for s in journal.alerts_after(0)] == [7]
    report = verify_chain(journal.iter_signed(), key.public_key(), gateway_id="gw-1")
    assert report.count == 7


def test_reads_answered_from_memory_are_what_the_file_holds(tmp_path, key, monkeypatch) -> None:
    """The newest records are read from memory (records.RECENT): every read, inside, across
    and beyond that window, after failed and successful appends, equals the file's answer."""
    monkeypatch.setattr("edge_agent.journal.records.RECENT", 7)
    path = tmp_path / "j.db"
    journal = Journal(path, gateway_id="gw-1", key=key)
    assert journal.read_after(0) == []
    sizes = [1, 3, 5, 2, 9, 4]
    for n, size in enumerate(sizes):
        base = sum(sizes[:n])
        journal.append([_gps(base + i) for i in range(size)])
        with pytest.raises(RecordError):  # a failed append adds nothing to memory either
            journal.append([Draft(1, "gps", "gps0", {"x": 0.5})])
    file = Journal(path, gateway_id="gw-1", key=key)  # a fresh object: nothing in memory
    head = sum(sizes)
    assert journal.head()[0] == head
    for after in range(head + 2):
        for limit in (1, 2, 5, 1000):
            assert journal.read_after(after, limit) == file.read_after(after, limit)
    for first in range(1, head + 2):
        for last in range(first - 1, head + 2):
            assert journal.range(first, last) == file.range(first, last), (first, last)
    db = sqlite3.connect(path)  # as retention prunes: delete, then forget them in memory
    db.execute("DELETE FROM records WHERE seq <= ?", (head - 3,))
    db.commit()
    db.close()
    journal._forget_recent_through(head - 3)
    assert [s.seq for s in journal.read_after(0)] == [head - 2, head - 1, head]
    assert journal.range(head - 4, head - 2) == file.range(head - 2, head - 2)


def test_a_journal_refuses_another_gateway_or_key(tmp_path, key) -> None:
    path = tmp_path / "j.db"
    Journal(path, gateway_id="gw-1", key=key).close()
    with pytest.raises(JournalError, match="gateway_id"):
        Journal(path, gateway_id="gw-2", key=key)
    with pytest.raises(JournalError, match="public_key"):
        Journal(path, gateway_id="gw-1", key=Ed25519PrivateKey.generate())


def test_failed_append_leaves_nothing_behind(tmp_path, key) -> None:
    journal = Journal(tmp_path / "j.db", gateway_id="gw-1", key=key)
    journal.append([_gps(0)], cursors={"rules": 0})
    bad = Draft(1, "gps", "gps0", {"speed": 1.5})  # floats are not signable
    with pytest.raises(RecordError):
        journal.append([_gps(1), bad], cursors={"rules": 1}, state={"x": "y"})
    assert journal.head()[0] == 1
    assert journal.cursor("rules") == 0
    assert journal.state("x") is None
    assert journal.append([_gps(2)])[0].seq == 2


def test_cursor_and_state_move_with_the_records_they_belong_to(tmp_path, key) -> None:
    journal = Journal(tmp_path / "j.db", gateway_id="gw-1", key=key)
    journal.append([_gps(i) for i in range(3)])
    journal.append([_alert(3)], cursors={"rules": 3}, state={"rules/truck": '{"off": true}'})
    assert journal.cursor("rules") == 3
    assert journal.state("rules/truck") == '{"off": true}'
    journal.commit(cursors={"console": 4})
    assert journal.cursor("console") == 4
    assert journal.cursor("never-set") == 0


def _anchored_journal(tmp_path: Path, key: Ed25519PrivateKey) -> tuple[Path, list[BatchRoot]]:
    path = tmp_path / "j.db"
    journal = Journal(path, gateway_id="gw-1", key=key)
    journal.append([_alert(i) if i % 7 == 6 else _gps(i) for i in range(30)])
    batches = []
    for first, size in ((1, 13), (14, 10), (24, 7)):
        signed = [s.signed for s in journal.range(first, first + size - 1)]
        batches.append(BatchRoot(first, size, root(signed)))
    journal.close()
    return path, batches


def _verify_file(path: Path, key, batches) -> None:
    db = sqlite3.connect(path)
    signed = [row[0] for row in db.execute("SELECT signed FROM records ORDER BY seq")]
    db.close()
    verify_log(signed, key.public_key(), batches, gateway_id="gw-1")


def _mutations(record: dict) -> list[tuple[str, dict]]:
    """Every single-field change of a record: each top-level field and each body field."""
    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return value + 1
        if isinstance(value, str):
            return value[:-1] + ("0" if value[-1:] != "0" else "1")
        if isinstance(value, list):
            return [*value, 0]
        return {**value, "extra": 1}

    out = []
    for name, value in record.items():
        out.append((name, {**record, name: changed(value)}))
    for name, value in record["body"].items():
        out.append((f"body.{name}", {**record, "body": {**record["body"], name: changed(value)}}))
    return out


def test_changing_any_single_field_of_any_stored_record_fails_verification(tmp_path, key) -> None:
    path, batches = _anchored_journal(tmp_path, key)
    _verify_file(path, key, batches)  # the untouched file verifies
    db = sqlite3.connect(path)
    rows = list(db.execute("SELECT seq, signed FROM records ORDER BY seq"))
    tried = 0
    for seq, signed in rows:
        for _field, mutated in _mutations(json.loads(signed)):
            db.execute("UPDATE records SET signed = ? WHERE seq = ?", (canonical(mutated), seq))
            db.commit()
            with pytest.raises((RecordError, ProofError)):
                _verify_file(path, key, batches)
            tried += 1
            db.execute("UPDATE records SET signed = ? WHERE seq = ?", (signed, seq))
            db.commit()
    assert tried > 30 * 9  # every common field of all 30 records, and their body fields
    _verify_file(path, key, batches)


def test_deleting_any_record_fails_verification(tmp_path, key) -> None:
    path, batches = _anchored_journal(tmp_path, key)
    db = sqlite3.connect(path)
    rows = list(db.execute("SELECT seq, t_ms, kind, src, hash, signed FROM records"))
    for row in rows:
        db.execute("DELETE FROM records WHERE seq = ?", (row[0],))
        db.commit()
        with pytest.raises((RecordError, ProofError)):
            _verify_file(path, key, batches)
        db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", row)
        db.commit()
    _verify_file(path, key, batches)


def test_keys_init_is_private_and_never_overwrites(tmp_path) -> None:
    path = tmp_path / "keys" / "gateway.key"
    key = create_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key(path).public_key() == key.public_key()
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        create_key(path)
    assert path.read_bytes() == before
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_key(path)


@pytest.mark.integration
def test_sigkill_at_random_moments_loses_no_committed_record(tmp_path) -> None:
    key_path = tmp_path / "gateway.key"
    key = create_key(key_path)
    db_path = tmp_path / "j.db"
    rng = random.Random(20261121)
    promised = 0
    for round_no in range(25):
        proc = subprocess.Popen([sys.executable, str(HELPER), str(db_path), str(key_path),
                                 str(round_no)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Kill after a random number of commits: the writer is always mid-loop, so the kill
        # lands between, before or inside transactions at random.
        for _ in range(rng.randint(1, 40)):
            line = proc.stdout.readline()
            promised = max(promised, int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        journal = Journal(db_path, gateway_id="gw-kill", key=key)
        head = journal.head()[0]
        assert head >= promised, f"round {round_no}: committed seq {promised} lost (head {head})"
        report = verify_chain(journal.iter_signed(), key.public_key(), gateway_id="gw-kill")
        assert report.last_seq == head == report.count  # seq 1..head, no gap
        journal.close()
    assert promised > 25


_KEY = Ed25519PrivateKey.generate()
_BODY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=5), inner,
                      max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=6),
                       _BODY_VALUES, max_size=6))
@settings(max_examples=200, deadline=None)
def test_a_stored_body_parsed_alone_is_the_records_body(body: dict) -> None:
    """Stored.body() parses only the body that opens a canonical record; it must agree with
    parsing the whole record, whatever the body holds (strings with braces and quotes too)."""
    signed = RecordSigner("gw", _KEY).sign(1, 0, "gps", "s", body, "0" * 64)
    stored = Stored(1, 0, "gps", "s", record_hash(signed), signed)
    assert stored.body() == stored.record()["body"] == body


def test_a_non_canonical_row_still_gives_its_body() -> None:
    stored = Stored(1, 0, "gps", "s", b"", b'{"v":1, "body": {"a": 1}}')
    assert stored.body() == {"a": 1}
