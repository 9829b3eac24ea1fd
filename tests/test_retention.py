"""Journal retention on real SQLite files, anchored on the in-process chain: what goes, what
stays, that the file shrinks, and that journal verify and evidence still work afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
from argparse import Namespace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from edge_agent import journal_cli
from edge_agent.journal import Draft, Journal
from edge_agent.journal.retention import Retention, file_bytes
from edge_agent.ledger_cli import JournalFile, build_evidence, select
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client import chain, evidence
from ledger_client.keys import public_hex

GW = "gw-retention-test"
T0 = 1_790_000_000_000
PAD = "x" * 400  # records of a realistic size, so pages really empty out


class Env:
    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "journal.db"
        self.key = Ed25519PrivateKey.generate()
        self.journal = Journal(self.path, gateway_id=GW, key=self.key)
        self.w3 = chain.connect(None)
        customs = self.w3.eth.accounts[0]
        self.registry = chain.AnchorRegistry.deploy(self.w3, customs)
        self.account = Account.create()
        chain.fund(self.w3, customs, self.account.address, 10**18)
        self.registry.register_gateway(GW, bytes.fromhex(public_hex(self.key)),
                                       self.account.address, customs)
        self.sink = AnchorSink(self.journal, self.registry, self.account,
                               BatchPolicy(max_leaves=250, max_age_s=3600))

    def readings(self, n: int) -> None:
        head = self.journal.head()[0]
        self.journal.append([Draft(T0 + (head + i) * 100, "gps", "gps0",
                                   {"lat_e7": -349_000_000 + i, "lon_e7": -562_000_000,
                                    "pad": PAD}) for i in range(n)])

    def alert(self, evidence: list[int]) -> int:
        seq = self.journal.head()[0] + 1
        self.journal.append([Draft(T0 + seq * 100, "alert", "rules", {
            "alert_id": f"00000000-0000-5000-8000-{seq:012d}", "type": "routeDeviation",
            "severity": "warning", "evidence": evidence})])
        return seq

    def anchor_through(self, head: int) -> None:
        self.sink.close_due_batches(head)
        assert asyncio.run(self.sink.submit_pending())

    def retention(self, max_bytes: int, guards: tuple[str, ...] = ("rules",)) -> Retention:
        retention = Retention(self.journal, max_bytes, guards=lambda: guards)
        retention.prepare()
        return retention

    def seqs(self) -> list[int]:
        return [stored.seq for stored in self.journal.read_after(0, 1 << 30)]


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _verify(path: Path) -> tuple[int, str]:
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = journal_cli._verify(Namespace(journal=path, public_key=None))
    return code, out.getvalue()


def _fill(env: Env) -> dict[str, int]:
    """2,000 readings and two alerts in anchored batches, then 300 readings not anchored."""
    env.readings(700)
    early_alert = env.alert([650, 700])  # seq 701, cites two readings of batch 3
    env.readings(1299)
    late_alert = env.alert([100, 1990])  # seq 2001: cites seq 100 (batch 1) and 1990
    env.anchor_through(2000)  # batches of 250: 1..2000 anchored; 2001 stays pending
    env.readings(300)
    env.journal.commit(cursors={"rules": 2301})
    return {"early_alert": early_alert, "late_alert": late_alert}


def test_prunes_anchored_readings_and_keeps_alerts_evidence_and_the_unanchored(env) -> None:
    marks = _fill(env)
    size = file_bytes(env.journal)
    retention = env.retention(size // 2)
    report = retention.run_once()

    assert report.records_deleted > 0 and report.size_after <= size // 2 < report.size_before
    assert file_bytes(env.journal) == report.size_after  # the file itself got shorter
    p = report.pruned_through
    assert p % 250 == 0 and 0 < p <= 2000  # a batch boundary inside the anchored range
    kept = set(env.seqs())
    assert set(range(p, 2302)) <= kept  # boundary record, everything after it
    assert {marks["early_alert"], marks["late_alert"]} <= kept
    assert {100, 650, 700} & set(range(1, p + 1)) <= kept  # cited evidence survives
    assert kept & set(range(1, p)) <= {100, 650, 700, marks["early_alert"]}
    code, out = _verify(env.path)
    assert code == 0 and out.startswith(f"ok: seq 1..{p} pruned"), out


def test_pruned_alerts_still_export_and_verify_against_the_chain(env) -> None:
    marks = _fill(env)
    env.retention(file_bytes(env.journal) // 3).run_once()
    jf = JournalFile(env.path)
    try:
        alert_id = f"00000000-0000-5000-8000-{marks['early_alert']:012d}"
        chosen = select(jf, Namespace(alert=[alert_id], seq=None, src=None, from_ms=None,
                                      to_ms=None, plan=None))
        assert jf.kept_path(marks["early_alert"]) is not None  # its batch was pruned
        ev = build_evidence(jf, chosen, {"alert": [alert_id]})
    finally:
        jf.close()
    assert sorted(r.seq for r in ev.records) == [650, 700, marks["early_alert"]]
    results = evidence.verify(ev, env.registry)
    assert all(r.ok for r in results), [str(r.error) for r in results]


def test_the_chain_continues_after_pruning_and_a_second_pass_moves_the_boundary(env) -> None:
    marks = _fill(env)
    retention = env.retention(file_bytes(env.journal) // 2)
    first = retention.run_once().pruned_through
    env.journal.close()
    env.journal = Journal(env.path, gateway_id=GW, key=env.key)  # a restart
    env.sink = AnchorSink(env.journal, env.registry, env.account,
                          BatchPolicy(max_leaves=250, max_age_s=3600))
    env.readings(10)
    assert env.journal.head()[0] == 2311
    env.anchor_through(2311)
    env.journal.commit(cursors={"rules": 2311})
    retention = Retention(env.journal, 1, guards=lambda: ("rules",))  # prune all it may
    report = retention.run_once()
    assert report.pruned_through > first and report.over_limit
    kept = set(env.seqs())
    assert first not in kept  # the old boundary was only a boundary
    assert marks["late_alert"] in kept
    code, out = _verify(env.path)
    assert code == 0, out


def test_the_bound_counts_the_wal_at_the_size_it_may_grow_to(env) -> None:
    """The WAL grows between checkpoints up to the journal's limit: a bound that only looks at
    the files just after a checkpoint does not hold. With the WAL's room reserved, pruning keeps
    the database small enough that database + a full WAL stays under the bound."""
    _fill(env)
    env.retention(1 << 40).run_once()  # a checkpoint: the WAL file is empty now
    db = env.path.stat().st_size
    reserve = 512 * 1024
    bound = db + reserve // 2  # the files fit as they are; not with a full WAL beside them
    assert file_bytes(env.journal) <= bound
    report = Retention(env.journal, bound, guards=lambda: ("rules",),
                       wal_reserve=reserve).run_once()
    assert report.records_deleted > 0 and not report.over_limit
    assert env.path.stat().st_size + reserve <= bound
    assert report.size_after == env.path.stat().st_size + reserve
    # nothing more may go (the rest is unanchored or evidence): it says so
    tight = Retention(env.journal, reserve, guards=lambda: ("rules",), wal_reserve=reserve)
    assert tight.run_once().over_limit and tight.over_limit


def test_unanchored_records_and_a_lagging_consumer_hold_pruning_back(env) -> None:
    env.readings(600)
    env.journal.commit(cursors={"rules": 600})
    retention = env.retention(1)  # far over the limit, but nothing is anchored
    report = retention.run_once()
    assert (report.records_deleted, report.over_limit) == (0, True)
    env.anchor_through(600)
    lagging = Retention(env.journal, 1, guards=lambda: ("rules", "customs"))  # customs: 0
    assert lagging.run_once().records_deleted == 0
    assert len(env.seqs()) == 600
    assert retention.run_once().pruned_through == 500  # rules passed all; batch 3 open


def test_journal_verify_catches_a_changed_or_deleted_kept_record(env) -> None:
    marks = _fill(env)
    env.retention(file_bytes(env.journal) // 2).run_once()
    env.journal.close()
    db = sqlite3.connect(env.path)
    signed = db.execute("SELECT signed FROM records WHERE seq = ?",
                        (marks["early_alert"],)).fetchone()[0]
    db.execute("UPDATE records SET signed = ? WHERE seq = ?",
               (signed.replace(b"warning", b"info\x20\x20\x20"), marks["early_alert"]))
    db.commit()
    code, out = _verify(env.path)
    assert code == 1 and "BROKEN" in out
    db.execute("UPDATE records SET signed = ? WHERE seq = ?", (signed, marks["early_alert"]))
    db.execute("DELETE FROM records WHERE seq = ?", (marks["early_alert"],))
    db.commit()
    db.close()
    code, out = _verify(env.path)
    assert code == 1 and f"alert seq {marks['early_alert']}" in out, out


def test_an_export_over_a_pruned_range_says_what_it_could_not_include(env, capsys) -> None:
    import json

    from edge_agent.ledger_cli import unexported
    from sealtrail.cli import main

    marks = _fill(env)
    p = env.retention(file_bytes(env.journal) // 3).run_once().pruned_through
    jf = JournalFile(env.path)
    try:
        args = Namespace(alert=None, seq=["640..710", "2300..2400"], src=None, from_ms=None,
                         to_ms=None, plan=None)
        chosen = select(jf, args)
        missing = unexported(jf, args, chosen)
        overlapping = Namespace(alert=None, seq=["650..705", "640..660"], src=None,
                                from_ms=None, to_ms=None, plan=None)
        overlap = unexported(jf, overlapping, select(jf, overlapping))
        everything = Namespace(alert=None, seq=["1..1000000000"], src=None, from_ms=None,
                               to_ms=None, plan=None)
        huge = unexported(jf, everything, select(jf, everything))
    finally:
        jf.close()
    assert overlap == {"pruned": "640..649, 651..699, 702..705"}
    assert huge["beyond_head"] == "head is seq 2301; asked for 1..1000000000"
    assert huge["pruned"].startswith("1..99, 101..")
    assert p > 710  # the first range lies wholly in the pruned part
    assert sorted(chosen) == [650, 700, marks["early_alert"], 2300, 2301]
    assert missing == {"pruned": "640..649, 651..699, 702..710",
                       "beyond_head": "head is seq 2301; asked for 2300..2400"}
    out = env.path.with_name("export.json")
    code = main(["evidence", "export", "--journal", str(env.path), "-o", str(out),
                 "--seq", "640..710"])
    err = capsys.readouterr().err
    assert code == 0 and "not exported: seq 640..649, 651..699, 702..710 were pruned" in err
    doc = json.loads(out.read_text())
    assert doc["selection"] == {"seq": ["640..710"],
                                "not_exported": {"pruned": "640..649, 651..699, 702..710"}}
    assert [r["seq"] for r in doc["records"]] == [650, 700, marks["early_alert"]]
