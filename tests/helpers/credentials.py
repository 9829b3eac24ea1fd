"""Shared material for the credential tests: sample facts and key files made at run time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from customs.credentials.facts import (
    AlertFact,
    AlertFacts,
    AnchorRef,
    ContainerFact,
    RecordRef,
    Resolution,
    SealFact,
    TripFacts,
)

T0 = 1_700_000_000_000
ANCHOR = AnchorRef(chain_id=31337, contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
                   batch_seq=3, block_number=120, tx_hash="0x" + "cd" * 32)


def record(seq: int, gw: str = "gw-truck-7", anchored: bool = True) -> RecordRef:
    return RecordRef(gw, seq, f"{seq:064x}", ANCHOR if anchored else None)


def sample_alert(seq: int = 40, resolved: bool = True) -> AlertFact:
    return AlertFact(
        alert_id="6f1c1d7e-5a43-5b57-9d8e-0c2f6f0e4a11", type="routeDeviation",
        severity="critical", t_ms=T0 + 100_000, record=record(seq), lat_e7=-349_012_345,
        lon_e7=-562_098_765,
        resolution=Resolution("resolved", "detour ordered by road police", "officer-7",
                              T0 + 200_000) if resolved else None)


def sample_trip() -> TripFacts:
    return TripFacts(
        plan_id="PLAN-2024-0042", declaration_ref="24UY000000123456", vehicle="ABC 1234",
        containers=(ContainerFact("MSCU1234567", (SealFact("SEAL-001", "closed", record(90)),
                                                  SealFact("SEAL-002"))),),
        departure_office="UYMVD01", destination_office="ARBUE02", departure_t_ms=T0,
        departure_record=record(1), arrival_t_ms=T0 + 900_000, arrival_record=record(99),
        alerts=(sample_alert(),))


def sample_alert_facts() -> AlertFacts:
    return AlertFacts("PLAN-2024-0042", sample_alert())


def facts_json() -> dict[str, Any]:
    """The --facts file form of ``sample_trip``."""
    def rec(seq: int) -> dict[str, Any]:
        return {"gw": "gw-truck-7", "seq": seq, "record_hash": f"{seq:064x}",
                "anchor": {"chain_id": ANCHOR.chain_id, "contract": ANCHOR.contract,
                           "batch_seq": ANCHOR.batch_seq, "block_number": ANCHOR.block_number,
                           "tx_hash": ANCHOR.tx_hash}}
    return {
        "kind": "trip", "plan_id": "PLAN-2024-0042", "declaration_ref": "24UY000000123456",
        "vehicle": "ABC 1234",
        "containers": [{"container_id": "MSCU1234567", "seals": [
            {"seal_id": "SEAL-001", "state": "closed", "record": rec(90)},
            {"seal_id": "SEAL-002"}]}],
        "departure_office": "UYMVD01", "destination_office": "ARBUE02", "departure_t_ms": T0,
        "departure_record": rec(1), "arrival_t_ms": T0 + 900_000, "arrival_record": rec(99),
        "alerts": [{"alert_id": "6f1c1d7e-5a43-5b57-9d8e-0c2f6f0e4a11", "type": "routeDeviation",
                    "severity": "critical", "t_ms": T0 + 100_000, "record": rec(40),
                    "lat_e7": -349_012_345, "lon_e7": -562_098_765,
                    "resolution": {"state": "resolved", "reason": "detour ordered by road police",
                                   "officer": "officer-7", "t_ms": T0 + 200_000}}],
    }


def write_key(path: Path, key: Ed25519PrivateKey | None = None, *, mode: int = 0o600,
              raw_hex: bool = False) -> Ed25519PrivateKey:
    """A key file made now (no key is ever committed)."""
    key = key or Ed25519PrivateKey.generate()
    if raw_hex:
        data = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption()).hex().encode() + b"\n"
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)
    return key
