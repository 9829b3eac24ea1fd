"""`sealtrail customs import FILE`: a gateway's data that arrives on a USB stick, not over MQTT.

Two kinds of file: a gateway journal (its SQLite file, as the agent writes it) and an evidence
file (``sealtrail-evidence/1``, what `sealtrail evidence export` writes). Either way the
content is turned into the messages the gateway would have published (each alert on
``sealtrail/v1/<gw>/alerts``, other records as JSON Lines on ``.../readings``, anchored batches
as receipts on ``.../anchors``, the journal's signed plans on ``.../plans``) and handed to the
same ``Receiver`` the MQTT service uses: verified against the trusted keys, deduplicated,
quarantined with a reason when they do not verify. Nothing in the file is trusted.

The file is hostile until proven otherwise: it is opened read-only, read in bounded chunks,
every column is type-checked before use, the evidence JSON goes through ``boundedjson``; a file
that is not one of the two kinds, or is damaged, is a ``UsageError`` naming it (exit 2), never
a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from customs.checks import Limits
from customs.receive import Receiver
from customs.store import WriteResult
from ledger_client.journal_format import (
    GATEWAY_ID,
    PLANS_STATE_PREFIX,
    SQLITE_MAGIC,
    JournalError,
    NotAJournal,
)
from ledger_client.journal_reader import JournalReader
from sealtrail import boundedjson
from sealtrail.errors import UsageError

MAX_EVIDENCE_BYTES = 256 * 1024 * 1024
CHUNK = 2000  # records read from a journal at a time
GROUP = 200  # messages per store transaction
BAD_GW = set("/+#\x00")


@dataclass
class ImportReport:
    gateway: str
    kind: str  # journal | evidence
    messages: int = 0
    alerts: int = 0
    duplicate_alerts: int = 0
    records: int = 0
    duplicate_records: int = 0
    anchors: int = 0
    plans: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    new_alerts: list[str] = field(default_factory=list)  # "gw/alert_id"

    def add(self, result: WriteResult, messages: int) -> None:
        self.messages += messages
        self.alerts += len(result.new_alerts)
        self.duplicate_alerts += len(result.duplicate_alerts)
        self.records += result.new_records
        self.duplicate_records += result.duplicate_records
        self.anchors += result.anchors
        self.plans += result.plans
        self.quarantined.update(r.reason for r in result.quarantined)
        self.new_alerts += [f"{a.gw}/{a.alert_id}" for a in result.new_alerts]

    def summary(self) -> str:
        q = sum(self.quarantined.values())
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.quarantined.items()))
        return (f"{self.kind} of {self.gateway}: {self.alerts} new alert(s), "
                f"{self.duplicate_alerts} already held; {self.records} new reading(s), "
                f"{self.duplicate_records} already held; {self.anchors} anchor receipt(s), "
                f"{self.plans} plan(s); {q} quarantined" + (f" ({reasons})" if q else ""))


def import_file(path: Path, receiver: Receiver) -> ImportReport:
    """Import a journal or evidence file; UsageError (naming the file) if it is neither."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if head == SQLITE_MAGIC:
        return _journal(path, receiver)
    return _evidence(path, receiver)


class _Sender:
    """Feeds messages to the receiver in groups (one transaction per group)."""

    def __init__(self, receiver: Receiver, report: ImportReport):
        self.receiver = receiver
        self.report = report
        self.pending: list[tuple[str, bytes]] = []
        self.limits: Limits = receiver.limits

    def send(self, topic: str, payload: bytes) -> None:
        self.pending.append((topic, payload))
        if len(self.pending) >= GROUP:
            self.flush()

    def readings(self, gw: str, lines: list[bytes]) -> None:
        """JSON Lines messages no larger than a readings message may be."""
        message: list[bytes] = []
        size = 0
        for line in lines:
            if message and size + len(line) + 1 > self.limits.readings:
                self.send(f"sealtrail/v1/{gw}/readings", b"\n".join(message))
                message, size = [], 0
            message.append(line)
            size += len(line) + 1
        if message:
            self.send(f"sealtrail/v1/{gw}/readings", b"\n".join(message))

    def flush(self) -> None:
        if self.pending:
            self.report.add(self.receiver.handle_batch(self.pending), len(self.pending))
            self.pending = []


def _check_gw(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable() or \
            set(value) & BAD_GW:
        raise UsageError(f"{path}: the gateway id {str(value)[:80]!r} is not usable in a topic")
    return value


# -- journals ---------------------------------------------------------------------------------

def _journal(path: Path, receiver: Receiver) -> ImportReport:
    try:
        journal = JournalReader(path)
    except NotAJournal as exc:
        raise UsageError(f"{path}: not a SealTrail gateway journal ({exc.reason})") from None
    except JournalError as exc:  # a newer format than this code's, an unreadable file
        raise UsageError(str(exc)) from None
    with journal:
        gw = _check_gw(journal.gateway_id or journal.meta.get(GATEWAY_ID), path)
        report = ImportReport(gw, "journal")
        sender = _Sender(receiver, report)
        try:
            _journal_records(journal, gw, sender, report)
            for payload in _journal_plans(journal, report):
                sender.send(f"sealtrail/v1/{gw}/plans", payload)
            for payload in _journal_receipts(journal, report):
                sender.send(f"sealtrail/v1/{gw}/anchors", payload)
            sender.flush()
        except sqlite3.Error as exc:
            sender.flush()  # what was read so far is verified and kept
            raise UsageError(f"{path}: the journal is damaged ({exc}); "
                             f"{report.summary()}") from None
        return report


def _journal_records(journal: JournalReader, gw: str, sender: _Sender,
                     report: ImportReport) -> None:
    after = -(2**63)
    while True:
        rows = journal.rows_after(after, CHUNK)
        if not rows:
            return
        lines: list[bytes] = []
        for seq, kind, signed in rows:
            if isinstance(signed, str):
                signed = signed.encode("utf-8", "surrogatepass")
            if not isinstance(signed, bytes) or not isinstance(seq, int):
                report.skipped.append(f"row after seq {after}: not a record row")
                continue
            if kind == "alert":
                sender.send(f"sealtrail/v1/{gw}/alerts", signed)
            else:
                lines.append(signed.replace(b"\n", b" "))  # a line break would split a record
        sender.readings(gw, lines)
        last = rows[-1][0]
        if not isinstance(last, int):
            return
        after = last


def _journal_plans(journal: JournalReader, report: ImportReport) -> Iterator[bytes]:
    try:
        rows = journal.states(PLANS_STATE_PREFIX, limit=1000)
    except sqlite3.Error:
        return
    for _, value in rows:
        if isinstance(value, str) and len(value) <= 1024 * 1024:
            yield value.encode("utf-8", "surrogatepass")


def _journal_receipts(journal: JournalReader, report: ImportReport) -> Iterator[bytes]:
    try:
        batches = [b for b in journal.batches() if b.status == "anchored"]
    except sqlite3.Error:
        return
    for b in batches:
        root, tx, bhash = b.root, b.tx_hash, b.block_hash
        if not all(isinstance(x, bytes) for x in (root, tx, bhash)):
            report.skipped.append(f"batch {b.batch_seq}: not a complete anchor")
            continue
        assert isinstance(tx, bytes) and isinstance(bhash, bytes)
        yield json.dumps({"batch_seq": b.batch_seq, "first_seq": b.first_seq,
                          "tree_size": b.tree_size, "root": root.hex(),
                          "chain_id": b.chain_id, "contract": b.contract,
                          "tx_hash": "0x" + tx.hex(), "block_number": b.block_number,
                          "block_hash": "0x" + bhash.hex(), "log_index": b.log_index}).encode()


# -- evidence files ---------------------------------------------------------------------------

def _kind_of(signed: bytes) -> Any:
    """The record's top-level kind, to pick its topic (the receiver checks everything else)."""
    try:
        record = boundedjson.loads(signed, max_bytes=Limits().alerts)
    except boundedjson.JsonBoundError:
        return None
    return record.get("kind") if isinstance(record, dict) else None


def _evidence(path: Path, receiver: Receiver) -> ImportReport:
    try:
        size = path.stat().st_size
        if size > MAX_EVIDENCE_BYTES:
            raise UsageError(f"{path}: {size} bytes; an evidence file may be at most "
                             f"{MAX_EVIDENCE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    try:
        doc = boundedjson.loads(data, max_bytes=MAX_EVIDENCE_BYTES, max_depth=32)
    except boundedjson.JsonBoundError as exc:
        raise UsageError(f"{path}: neither a gateway journal (SQLite) nor an evidence file "
                         f"({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "sealtrail-evidence/1":
        raise UsageError(f"{path}: neither a gateway journal (SQLite) nor a "
                         "sealtrail-evidence/1 file")
    gw = _check_gw(doc.get("gateway_id"), path)
    records = doc.get("records")
    if not isinstance(records, list):
        raise UsageError(f"{path}: 'records' is not a list")
    report = ImportReport(gw, "evidence")
    sender = _Sender(receiver, report)
    lines: list[bytes] = []
    for i, entry in enumerate(records):
        text = entry.get("record") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            report.skipped.append(f"records[{i}]: no record text")
            continue
        signed = text.encode("utf-8", "surrogatepass")
        if _kind_of(signed) == "alert":
            sender.send(f"sealtrail/v1/{gw}/alerts", signed)
        else:
            lines.append(signed.replace(b"\n", b" "))
    sender.readings(gw, lines)
    anchors = doc.get("anchors")
    for i, anchor in enumerate(anchors if isinstance(anchors, list) else []):
        if not isinstance(anchor, dict):
            report.skipped.append(f"anchors[{i}]: not an object")
            continue
        receipt = {**anchor, "chain_id": doc.get("chain_id"), "contract": doc.get("contract")}
        sender.send(f"sealtrail/v1/{gw}/anchors", json.dumps(receipt).encode())
    sender.flush()
    return report
