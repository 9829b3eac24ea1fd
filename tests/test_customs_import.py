"""`sealtrail customs import`: gateway journals and evidence files, verified like MQTT messages,
on both store engines; hostile files are refused with the file named (exit 2), never a crash.

The journals are real gateway journals (edge_agent.journal.Journal, keys made at run time).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from customs.store import open_store
from edge_agent.journal import Draft, Journal
from ledger_client.evidence import BatchInfo, build
from ledger_client.keys import create_key, public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.proof import AnchorRef
from sealtrail.cli import main

T0 = 1_790_000_000_000


def make_journal(tmp: Path, gw: str = "gw-off") -> tuple[Path, str, Journal]:
    key = create_key(tmp / f"{gw}.key")
    path = tmp / f"{gw}.db"
    journal = Journal(path, gateway_id=gw, key=key)
    fixes = [Draft(T0 + i * 1000, "gps", "gps0", {"lat_e7": -349_000_000 + i * 100,
                                                   "lon_e7": -562_000_000, "fix_quality": 1})
             for i in range(20)]
    journal.append(fixes)
    journal.append([Draft(T0 + 21_000, "alert", "rules", {
        "alert_id": "off-1", "type": "sealOpened", "severity": "critical",
        "asset": {"seal": "S1"}, "plan_id": "PLAN-OFF", "evidence": [20],
        "details": {}, "prev_alert": 0})])
    leaves = [s.signed for s in journal.range(1, 21)]
    root = MerkleTree.from_leaves(leaves).root
    batch = journal.add_batch(1, 21, root, closed_ms=T0 + 22_000, reason="test",
                              cursor="anchor").batch_seq
    journal.update_batch(batch, status="anchored", tx_hash=b"\x11" * 32, chain_id=31337,
                         contract="0x" + "ab" * 20, block_number=7, block_hash=b"\x22" * 32,
                         log_index=0)
    return path, public_hex(key), journal


def test_a_journal_is_imported_verified_and_a_second_import_adds_nothing(
        tmp_path: Path, store_target: str, capsys: pytest.CaptureFixture[str]) -> None:
    path, pub, journal = make_journal(tmp_path)
    journal.close()
    args = ["customs", "import", str(path), "--db", store_target, "--public-key",
            f"gw-off={pub}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 new alert(s)" in out and "20 new reading(s)" in out and "1 anchor receipt" in out
    assert main(args) == 0
    assert "0 new alert(s), 1 already held; 0 new reading(s), 20 already held" in \
        capsys.readouterr().out
    store = open_store(store_target)
    [alert] = store.alerts()
    assert (alert.gw, alert.alert_id, alert.plan_id) == ("gw-off", "off-1", "PLAN-OFF")
    assert store.anchor_of("gw-off", 5).batch_seq == 1  # type: ignore[union-attr]
    assert store.counts()["quarantine"] == {}
    store.close()


def test_records_that_do_not_verify_are_quarantined_and_the_rest_imported(
        tmp_path: Path, store_target: str, capsys: pytest.CaptureFixture[str]) -> None:
    path, pub, journal = make_journal(tmp_path)
    journal.close()
    db = sqlite3.connect(path)
    signed = db.execute("SELECT signed FROM records WHERE seq = 3").fetchone()[0]
    db.execute("UPDATE records SET signed = ? WHERE seq = 3",
               (signed.replace(b'"lat_e7":-348999800', b'"lat_e7":-348999801'),))
    db.execute("UPDATE records SET signed = ? WHERE seq = 4", (b"\x00garbage",))
    db.execute("UPDATE records SET signed = ? WHERE seq = 5", (12345,))
    db.commit()
    db.close()
    other = create_key(tmp_path / "other.key")
    code = main(["customs", "import", str(path), "--db", store_target, "--public-key",
                 f"gw-off={pub}"])
    assert code == 0
    out = capsys.readouterr()
    assert "17 new reading(s)" in out.out and "quarantined (bad_signature 1, malformed 1)" in \
        out.out
    assert "skipped" in out.err
    # signed with a key customs does not trust for that gateway: everything quarantined
    code = main(["customs", "import", str(path), "--db", store_target, "--public-key",
                 f"gw-off={public_hex(other)}"])
    assert code == 0
    store = open_store(store_target)
    assert len(store.records("gw-off")) == 18  # 17 readings + the alert, from the first import
    store.close()


def test_an_evidence_file_is_imported(tmp_path: Path, store_target: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, pub, journal = make_journal(tmp_path)
    leaves = [s.signed for s in journal.range(1, 21)]
    info = BatchInfo(1, 1, 21, MerkleTree.from_leaves(leaves).root,
                     AnchorRef(31337, "0x" + "ab" * 20, 1, "0x" + "11" * 32, 7,
                               "0x" + "22" * 32, 0), anchored=True)
    evidence = build("gw-off", [(s, journal.get(s).signed) for s in (19, 20, 21)],  # type: ignore[union-attr]
                     [info], lambda a, b: [s.signed for s in journal.range(a, b)])
    journal.close()
    file = tmp_path / "evidence.json"
    file.write_text(evidence.to_json())
    assert main(["customs", "import", str(file), "--db", store_target, "--public-key",
                 f"gw-off={pub}"]) == 0
    assert "evidence of gw-off: 1 new alert(s)" in capsys.readouterr().out
    store = open_store(store_target)
    assert [r.seq for r in store.records("gw-off")] == [19, 20, 21]
    assert store.anchor_of("gw-off", 21) is not None
    store.close()


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01 random bytes", "neither a gateway journal"),
    (b'{"format": "sealtrail-evidence/1", "gateway_id": "a/b", "records": []}',
     "not usable in a topic"),
    (b"[" * 100_000, "neither a gateway journal"),
    (b'{"format": "sealtrail-evidence/1", "gateway_id": "gw", "records": 5}',
     "'records' is not a list"),
    (b"SQLite format 3\x00" + b"\x00" * 200, "not a SealTrail gateway journal"),
])
def test_hostile_files_are_refused_with_the_file_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
        message: str) -> None:
    file = tmp_path / "hostile.bin"
    file.write_bytes(content)
    code = main(["customs", "import", str(file), "--db", str(tmp_path / "c.db"),
                 "--public-key", "gw=" + "00" * 32])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(file) in err and message in err and "Traceback" not in err


def test_an_sqlite_file_of_another_kind_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "other.db"
    db = sqlite3.connect(file)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('gateway_id', 'gw')")
    db.commit()
    db.close()
    code = main(["customs", "import", str(file), "--db", str(tmp_path / "c.db"),
                 "--public-key", "gw=" + "00" * 32])
    assert code == 2 and "not a SealTrail gateway journal" in capsys.readouterr().err
    assert json.loads(json.dumps({"ok": True}))
