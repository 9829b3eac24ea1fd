"""Officers, sessions and the audit chain in the customs store, on SQLite and PostgreSQL.

Alerts come from a simulated gateway's signed records through the real receiver; the audit
chain is signed with a customs key made at run time and checked the way `sealtrail customs
audit verify` checks it.
"""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.customs_data import T0, SimGateway

from customs.audit import AuditChain, AuditRefused, entry_body, verify_audit
from customs.receive import Receiver
from customs.store import open_store
from customs.trust import StaticTrust
from customs.users import add_user, check_password
from ledger_client.merkle import MerkleTree
from ledger_client.records import RecordError


def stored_alerts(target: str, n: int = 2):
    gw = SimGateway("gw-a")
    store = open_store(target)
    rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
    rx.handle("sealtrail/v1/gw-a/readings", gw.fix(T0, -349_000_000, -562_000_000))
    for i in range(n):
        [out] = rx.handle("sealtrail/v1/gw-a/alerts", gw.alert(T0 + 1000 * (i + 1)))
        assert out.kind == "alert"
    return store, [a for a in store.alerts()]


def test_officers_log_in_with_argon2_and_sessions_are_kept_as_hashes(store_target: str) -> None:
    store = open_store(store_target)
    add_user(store, "ana", "officer", "correct horse battery")
    assert store.officer("ana").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    assert check_password(store, "ana", "correct horse battery") == "officer"
    assert check_password(store, "ana", "wrong password!!") is None
    assert check_password(store, "nobody", "correct horse battery") is None
    with pytest.raises(Exception, match="already exists"):
        add_user(store, "ana", "auditor", "another password")
    token = hashlib.sha256(b"token").hexdigest()
    store.add_session(token, "ana", "csrf-1", expires_ms=T0 * 2)
    session = store.session(token)
    assert session is not None and (session.officer, session.role, session.csrf) == (
        "ana", "officer", "csrf-1")
    assert store.session(token, at_ms=T0 * 2 + 1) is None  # expired
    assert store.disable_officer("ana")
    assert store.session(token) is None and check_password(store, "ana",
                                                            "correct horse battery") is None
    store.close()


def test_actions_change_the_alert_and_append_a_signed_linked_entry_in_one_transaction(
        store_target: str) -> None:
    store, (a1, a2) = stored_alerts(store_target)
    add_user(store, "sam", "supervisor", "supervisor password")
    add_user(store, "ana", "officer", "officer password")
    add_user(store, "aud", "auditor", "auditor password")
    key = Ed25519PrivateKey.generate()
    chain = AuditChain(store, "customs-audit-test", key)

    chain.act("ana", "officer", "alert.acknowledge", alert=a1)
    with pytest.raises(AuditRefused, match="needs supervisor"):
        chain.act("ana", "officer", "alert.assign", alert=a1, assignee="ana")
    with pytest.raises(AuditRefused, match="may not"):
        chain.act("aud", "auditor", "alert.note", alert=a1, note="hello")
    chain.act("sam", "supervisor", "alert.assign", alert=store.alert(a1.gw, a1.alert_id),
              assignee="ana")
    with pytest.raises(AuditRefused, match="reason must be"):
        chain.act("ana", "officer", "alert.resolve", alert=a1, reason="bored")
    chain.act("ana", "officer", "alert.resolve", alert=a1, reason="inspected",
              note="seals intact at km 12")
    with pytest.raises(AuditRefused, match="the alert is resolved"):
        chain.act("ana", "officer", "alert.acknowledge", alert=a1)
    chain.act("sam", "supervisor", "alert.reopen", alert=a1, note="video shows a stop",
              corrects=4)
    chain.act("sam", "supervisor", "trip.released", plan_id="PLAN-1", place="office-mvd")

    held = store.alert(a1.gw, a1.alert_id)
    assert held is not None and (held.state, held.assignee, held.resolution) == (
        "open", "ana", None)
    assert store.alert(a2.gw, a2.alert_id).state == "open"  # type: ignore[union-attr]
    entries = store.audit_entries()
    assert [e.action for e in entries] == ["alert.acknowledge", "alert.assign", "alert.resolve",
                                           "alert.reopen", "trip.released"]
    resolve = entry_body(entries[2])
    assert resolve["reason"] == "inspected" and resolve["alert"]["record_hash"] == \
        hashlib.sha256(a1.signed).hexdigest()
    assert entry_body(entries[3])["corrects"] == 4
    assert store.trip_steps()["PLAN-1"]["trip.released"].officer == "sam"
    kinds = [k for _, _, k, _, _ in store.changes_since(0)]
    assert kinds.count("audit") == 5 and kinds.count("handled") == 4

    report = verify_audit(store, key.public_key(), "customs-audit-test")
    assert report.log.records == 5 and report.log.unanchored_tail == 5
    leaves = [e.signed for e in entries[:4]]
    assert store.add_audit_batch(1, 1, 4, MerkleTree.from_leaves(leaves).root)
    assert not store.add_audit_batch(1, 1, 4, b"\x00" * 32)  # another instance was first
    assert verify_audit(store, key.public_key(), "customs-audit-test").log.anchored_through == 4
    with pytest.raises(RecordError, match="signature"):
        verify_audit(store, Ed25519PrivateKey.generate().public_key(), "customs-audit-test")
    store.close()


def test_an_entry_edited_in_place_or_removed_is_found(store_target: str) -> None:
    store, (a1, _) = stored_alerts(store_target)
    key = Ed25519PrivateKey.generate()
    chain = AuditChain(store, "audit-x", key)
    for note in ("one", "two", "three"):
        chain.act("ana", "officer", "alert.note", alert=a1, note=note)
    with store._tx() as tx:
        tx.run("UPDATE audit SET officer = 'mallory' WHERE seq = 2")
    with pytest.raises(RecordError, match="edited in place"):
        verify_audit(store, key.public_key(), "audit-x")
    with store._tx() as tx:
        tx.run("UPDATE audit SET officer = 'ana' WHERE seq = 2")
        signed = bytes(tx.one("SELECT signed FROM audit WHERE seq = 2")[0])  # type: ignore[index]
        doc = json.loads(signed)
        doc["body"]["note"] = "TWO"
        forged = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        tx.run("UPDATE audit SET signed = ? WHERE seq = 2", (forged,))
    with pytest.raises(RecordError, match="signature"):
        verify_audit(store, key.public_key(), "audit-x")
    with store._tx() as tx:
        tx.run("UPDATE audit SET signed = ? WHERE seq = 2", (signed,))
        tx.run("DELETE FROM audit WHERE seq = 2")
    with pytest.raises(RecordError, match="gap"):
        verify_audit(store, key.public_key(), "audit-x")
    store.close()


def test_concurrent_appenders_never_fork_the_chain(store_target: str) -> None:
    """Two writers (threads here; console instances on PostgreSQL) append at once: every
    entry gets its own seq and links to the one before."""
    store, (a1, _) = stored_alerts(store_target)
    key = Ed25519PrivateKey.generate()
    chains = [AuditChain(store, "audit-c", key), AuditChain(open_store(store_target),
                                                            "audit-c", key)]

    def work(chain: AuditChain) -> None:
        for i in range(15):
            chain.act("ana", "officer", "alert.note", alert=a1, note=f"n{i}")

    threads = [threading.Thread(target=work, args=(c,)) for c in chains]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify_audit(store, key.public_key(), "audit-c").log.records == 30
    chains[1].store.close()
    store.close()
