"""The audit chain anchored on a real EVM node (anvil), with the gateways' machinery, on both
store engines: batches cut by size, roots on the contract, a crash after the batch was written
(before or after the broadcast) recovered by asking the contract; and `sealtrail verify`'s
building blocks accept an audit entry with its proof like any gateway record."""

from __future__ import annotations

from pathlib import Path

from anvil_node import deploy_and_register, running
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.customs_data import T0, SimGateway

from customs.audit import AuditChain, verify_audit
from customs.audit_anchor import AnchorPolicy, AuditAnchorer
from customs.receive import Receiver
from customs.store import open_store
from customs.trust import StaticTrust
from ledger_client.keys import public_hex
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.verify import verify_record

AUDIT_ID = "customs-audit-anvil"


def test_batches_are_anchored_and_a_crash_between_write_and_send_is_recovered(
        tmp_path: Path, store_target: str) -> None:
    gw = SimGateway("gw-a")
    store = open_store(store_target)
    Receiver(store, StaticTrust({"gw-a": gw.pub})).handle("sealtrail/v1/gw-a/alerts",
                                                          gw.alert(T0))
    [alert] = store.alerts()
    key = Ed25519PrivateKey.generate()
    chain = AuditChain(store, AUDIT_ID, key)
    for i in range(5):
        chain.act("ana", "officer", "alert.note", alert=alert, note=f"note {i}")
    with running(tmp_path) as node:
        pub = bytes.fromhex(public_hex(key))
        registry, _, submitter = deploy_and_register(node, AUDIT_ID, pub)
        anchorer = AuditAnchorer(store, registry, submitter, AUDIT_ID, pub,
                                 AnchorPolicy(max_leaves=3, max_age_s=3600))
        batch = anchorer.step()  # cuts entries 1..3 and sends; anvil mines at once
        assert batch is not None and (batch.first_seq, batch.tree_size, batch.status) == (
            1, 3, "sent")
        assert anchorer.step().status == "anchored"  # type: ignore[union-attr]
        assert registry.root(AUDIT_ID, 1) == store.audit_batches()[0].root

        # entries 4..5 wait for the age limit; then the batch is written and the process
        # dies before broadcasting: the next instance finds it 'built' and sends it
        assert anchorer.step(now=T0 / 1000) is None
        assert anchorer.step(now=10**11) is not None
        store.update_audit_batch(2, status="built", tx_hash=None)
        again = AuditAnchorer(store, registry, submitter, AUDIT_ID, pub)
        settled = again.step()
        assert settled is not None and settled.status == "anchored"  # already on chain
        assert [b.status for b in store.audit_batches()] == ["anchored", "anchored"]

        report = verify_audit(store, key.public_key(), AUDIT_ID)
        assert report.log.anchored_through == 5 and report.anchored == 2
        # an audit entry verifies like a gateway record: key from the registry, proof, root
        b = store.audit_batches()[1]
        entries = [e.signed for e in store.audit_entries(first_seq=4, last_seq=5)]
        assert b.tx_hash is not None and b.block_hash is not None
        ref = AnchorRef(registry.chain_id, registry.address, 2, b.tx_hash.hex(),
                        int(b.block_number or 0), b.block_hash.hex(), int(b.log_index or 0))
        verified = verify_record(entries[1], make_proof(entries, 4, 5, ref, "anchored"),
                                 registry)
        assert verified.batch_seq == 2
    store.close()
