"""Signed gateway records for customs tests, made the way a gateway makes them.

A ``SimGateway`` signs its records with ``ledger_client.records.RecordSigner`` (what the
journal uses) with a key made at run time, keeps its chain linked, and can close Merkle batches
and describe them as the anchor receipts a gateway publishes. Nothing here is a stand-in for
customs code: tests feed these bytes to the real receiver, over MQTT or directly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.keys import public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.records import GENESIS_PREV, RecordSigner, record_hash

T0 = 1_790_000_000_000


class SimGateway:
    def __init__(self, gw: str, key: Ed25519PrivateKey | None = None):
        self.gw = gw
        self.key = key or Ed25519PrivateKey.generate()
        self.signer = RecordSigner(gw, self.key)
        self.seq = 0
        self.prev = GENESIS_PREV
        self.signed: dict[int, bytes] = {}
        self.last_alert = 0

    @property
    def pub(self) -> str:
        return public_hex(self.key)

    def record(self, t_ms: int, kind: str, src: str, body: dict[str, Any]) -> bytes:
        self.seq += 1
        signed = self.signer.sign(self.seq, t_ms, kind, src, body, self.prev)
        self.prev = record_hash(signed).hex()
        self.signed[self.seq] = signed
        return signed

    def fix(self, t_ms: int, lat_e7: int, lon_e7: int) -> bytes:
        return self.record(t_ms, "gps", "gps0", {"lat_e7": lat_e7, "lon_e7": lon_e7,
                                                  "fix_quality": 1, "sats": 9, "hdop_x10": 8,
                                                  "speed_cmps": 1500, "course_cdeg": 9000})

    def status(self, t_ms: int, event: str, **extra: Any) -> bytes:
        return self.record(t_ms, "status", "gps0", {"event": event, **extra})

    def alert(self, t_ms: int, kind: str = "routeDeviation", severity: str = "critical", *,
              plan_id: str | None = "PLAN-1", lat_e7: int = -349_000_000,
              lon_e7: int = -562_000_000, asset: dict[str, Any] | None = None,
              details: dict[str, Any] | None = None, evidence: list[int] | None = None
              ) -> bytes:
        body = {"alert_id": str(uuid.uuid4()), "type": kind, "severity": severity,
                "asset": asset if asset is not None else {"vehicle": "TRUCK-1", "gps": "gps0"},
                "plan_id": plan_id,
                "position": {"lat_e7": lat_e7, "lon_e7": lon_e7, "fix_quality": 1},
                "evidence": evidence if evidence is not None else
                [s for s in (self.seq - 1, self.seq) if s > 0],
                "details": details if details is not None else {"distance_m": 812},
                "prev_alert": self.last_alert}
        signed = self.record(t_ms, "alert", "rules", body)
        self.last_alert = self.seq
        return signed

    def receipt(self, batch_seq: int, first_seq: int, last_seq: int, *, chain_id: int = 31337,
                contract: str = "0x" + "ab" * 20, block: int = 10) -> bytes:
        """The anchor receipt of a batch over [first_seq, last_seq] (as a gateway publishes
        it; the tx and block here are placeholders unless a test anchors for real)."""
        leaves = [self.signed[s] for s in range(first_seq, last_seq + 1)]
        root = MerkleTree.from_leaves(leaves).root
        return json.dumps({"batch_seq": batch_seq, "first_seq": first_seq,
                           "tree_size": last_seq - first_seq + 1, "root": root.hex(),
                           "chain_id": chain_id, "contract": contract,
                           "tx_hash": "0x" + "11" * 32, "block_number": block,
                           "block_hash": "0x" + "22" * 32, "log_index": 0}).encode()
