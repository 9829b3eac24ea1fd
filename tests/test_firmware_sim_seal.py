"""E-seal firmware wire format, checked against an independent HMAC/checksum computation."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import stat
from pathlib import Path

import pytest

from firmware_sim import cli
from firmware_sim.keystore import (
    derive_key,
    forger_key,
    read_counters,
    read_keystore,
    write_counters,
    write_keystore,
)
from firmware_sim.seal import Seal, forge

KEY = bytes(range(32))
SENTENCE_RE = re.compile(
    rb"\$(PSTSL,([A-Za-z0-9_-]{1,32}),([1-9][0-9]*),([COT]),(0|[1-9][0-9]?|100),"
    rb"([1-9][0-9]*),([0-9a-f]{32}))\*([0-9A-F]{2})\r\n"
)


def ref_mac(key: bytes, *fields: object) -> str:
    text = ",".join(str(f) for f in fields).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def ref_checksum(payload: bytes) -> str:
    return f"{functools.reduce(lambda a, b: a ^ b, payload, 0):02X}"


def test_sentence_matches_the_contract_byte_for_byte() -> None:
    seal = Seal("MSCU1234567", KEY, ctr=41, t0_ms=1_700_000_000_000)
    msg = seal.message(1_700_000_000_123)
    line = msg.sentence()
    m = SENTENCE_RE.fullmatch(line)
    assert m is not None, line
    payload, seal_id, ctr, state, battery, t_ms, mac, check = m.groups()
    assert (seal_id, ctr, state, battery, t_ms) == (
        b"MSCU1234567", b"42", b"C", b"100", b"1700000000123")
    assert mac.decode() == ref_mac(KEY, "MSCU1234567", 42, "C", 100, 1_700_000_000_123)
    assert check.decode() == ref_checksum(payload)


def test_json_payload_carries_the_same_fields_and_mac() -> None:
    seal = Seal("S-1", KEY, state="O", battery_pct=55, clock_skew_ms=-5)
    msg = seal.message(1_000)
    doc = json.loads(msg.json_payload())
    assert doc == {"seal_id": "S-1", "ctr": 1, "state": "O", "battery_pct": 55,
                   "seal_t_ms": 995, "mac": ref_mac(KEY, "S-1", 1, "O", 55, 995)}
    assert all(type(doc[k]) is int for k in ("ctr", "battery_pct", "seal_t_ms"))


def test_counter_battery_and_forgery() -> None:
    seal = Seal("S-2", KEY, drain_pct_per_h=10.0, battery_pct=90.0, t0_ms=0)
    msgs = [seal.message(h * 3_600_000) for h in range(12)]
    assert [m.ctr for m in msgs] == list(range(1, 13))
    assert [m.battery_pct for m in msgs[:3]] == [90, 80, 70]
    assert msgs[-1].battery_pct == 0  # never negative
    fake = forge(msgs[-1], forger_key(0, "S-2"))
    assert fake.mac != msgs[-1].mac
    assert fake.mac == ref_mac(forger_key(0, "S-2"), "S-2", 12, "C", 0, 11 * 3_600_000)
    assert forger_key(0, "S-2") != derive_key(0, "S-2")
    with pytest.raises(ValueError):
        Seal("bad id!", KEY)
    with pytest.raises(ValueError):
        Seal("S", b"short")


def test_keystore_is_0600_exclusive_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "seals.json"
    keys = {"A": derive_key(1, "A"), "B": derive_key(1, "B")}
    write_keystore(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"version": 1, "seals": {"A": keys["A"].hex(), "B": keys["B"].hex()}}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in doc["seals"].values())
    with pytest.raises(FileExistsError):
        write_keystore(path, {"C": KEY})
    assert read_keystore(path) == keys
    write_keystore(path, {"C": KEY}, force=True)
    assert read_keystore(path) == {"C": KEY}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_counters_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ctr.json"
    assert read_counters(path) == {}
    write_counters(path, {"A": 7, "B": 0})
    assert read_counters(path) == {"A": 7, "B": 0}
    path.write_text('{"counters": {"A": -1}}')
    with pytest.raises(ValueError):
        read_counters(path)


def test_sim_keys_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k.json"
    assert cli.main(["sim", "keys", "--count", "3", "--seed", "9", "--out", str(out)]) == 0
    keys = read_keystore(out)
    assert list(keys) == ["SEAL-00001", "SEAL-00002", "SEAL-00003"]
    assert keys["SEAL-00002"] == derive_key(9, "SEAL-00002")
    assert cli.main(["sim", "keys", "--count", "1", "--out", str(out)]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert read_keystore(out) == keys
