"""E-seal decoding and authentication, pure and against a real journal file.

MACs are computed here with the hmac module from the DESIGN.md definition, independently of the
agent's SealMessage.expected_mac, so a shared misreading of the contract would show up.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import operator
import os
from functools import reduce
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.journal import Journal
from edge_agent.sources import seal_codec
from edge_agent.sources.nmea_fields import Reject
from edge_agent.sources.seal_auth import (
    KeystoreError,
    SealAuthenticator,
    load_keystore,
)
from edge_agent.sources.seal_codec import decode_json, decode_sentence
from edge_agent.sources.serial_seal import SealSentenceHandler

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def mac_hex(key: bytes, seal_id: str, ctr: int, state: str, battery: int, t_ms: int) -> str:
    text = f"{seal_id},{ctr},{state},{battery},{t_ms}".encode()
    return hmac.new(key, text, hashlib.sha256).digest()[:16].hex()


def pstsl(seal_id: str, ctr: int, state: str = "C", battery: int = 90,
          t_ms: int = 1_760_000_000_000, key: bytes = KEY, mac: str | None = None) -> bytes:
    mac = mac or mac_hex(key, seal_id, ctr, state, battery, t_ms)
    payload = f"PSTSL,{seal_id},{ctr},{state},{battery},{t_ms},{mac}"
    cs = reduce(lambda a, b: a ^ b, payload.encode(), 0)
    return f"${payload}*{cs:02X}\r\n".encode()


def json_msg(seal_id: str, ctr: int, state: str = "C", battery: int = 90,
             t_ms: int = 1_760_000_000_000, key: bytes = KEY) -> bytes:
    return json.dumps({"seal_id": seal_id, "ctr": ctr, "state": state, "battery_pct": battery,
                       "seal_t_ms": t_ms,
                       "mac": mac_hex(key, seal_id, ctr, state, battery, t_ms)}).encode()


# --- decoding ------------------------------------------------------------------------------


def test_sentence_and_json_decode_to_the_same_message() -> None:
    a = decode_sentence(pstsl("MSCU0001", 7, "O", 55, 1_760_000_123_456))
    b = decode_json("MSCU0001", json_msg("MSCU0001", 7, "O", 55, 1_760_000_123_456))
    assert a == b
    assert (a.seal_id, a.ctr, a.state, a.battery_pct, a.seal_t_ms) == \
        ("MSCU0001", 7, "O", 55, 1_760_000_123_456)
    assert a.mac.hex() == mac_hex(KEY, "MSCU0001", 7, "O", 55, 1_760_000_123_456)
    assert a.expected_mac(KEY) == a.mac


@pytest.mark.parametrize(("line", "reason"), [
    (pstsl("S1", 1).replace(b"*", b"*0"), "bad_checksum"),
    (b"$PSTSL,S1,1,C,90,1760000000000*00\r\n", "bad_checksum"),
    (pstsl("S1", 1)[:-4] + b"%02X\r\n" % (int(pstsl("S1", 1)[-4:-2], 16) ^ 1), "bad_checksum"),
    (pstsl("S1", 1, mac="ab" * 15), "bad_mac_field"),
    (pstsl("S 1", 1), "bad_seal_id"),
    (pstsl("S1", 1, state="X"), "bad_state"),
    (pstsl("S1", 1, battery=101), "bad_number"),
])
def test_bad_sentences_are_rejected_by_reason(line: bytes, reason: str) -> None:
    with pytest.raises(Reject) as exc:
        decode_sentence(line)
    assert exc.value.args[0] == reason


def test_noise_before_the_sentence_and_line_endings_do_not_matter() -> None:
    line = pstsl("S1", 3)
    expected = decode_sentence(line.rstrip())
    for framed in (b"\x00\xff$$PSTSL,garbage" + line, line.rstrip() + b" \t\r\n",
                   line.replace(line[-4:-2], line[-4:-2].lower())):
        assert decode_sentence(framed) == expected


def _reframe(payload: str) -> bytes:
    cs = reduce(lambda a, b: a ^ b, payload.encode(), 0)
    return f"${payload}*{cs:02X}".encode()


@pytest.mark.parametrize("payload", [
    "PSTSL,S1,01,C,90,1760000000000," + "a" * 32,    # leading zero: not the MAC'd text
    "PSTSL,S1,-1,C,90,1760000000000," + "a" * 32,
    "PSTSL,S1,1,C,90,1760000000000",                 # no MAC
    "PSTSL,S1,1,C,90,1760000000000," + "a" * 32 + ",extra",
    "PSTSL,S1,99999999999999999,C,90,1," + "a" * 32,  # beyond 2**53
])
def test_non_canonical_sentences_are_rejected(payload: str) -> None:
    with pytest.raises(Reject):
        decode_sentence(_reframe(payload))


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b'{"seal_id": "S1"}', "bad_fields"),
    (json_msg("S1", 1)[:-1] + b', "extra": 1}', "bad_fields"),
    (json_msg("S1", 1).replace(b'"ctr": 1', b'"ctr": 1.0'), "bad_number"),
    (json_msg("S1", 1).replace(b'"ctr": 1', b'"ctr": true'), "bad_number"),
    (json_msg("S1", 1).replace(b'"ctr": 1', b'"ctr": NaN'), "bad_number"),
    (json_msg("S2", 1), "topic_mismatch"),
    (b" " * 600, "too_long"),
])
def test_bad_json_is_rejected_by_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(Reject) as exc:
        decode_json("S1", payload)
    assert exc.value.args[0] == reason


@given(st.binary(max_size=300))
@settings(max_examples=400)
def test_decoders_raise_nothing_but_reject(data: bytes) -> None:
    for decode in (decode_sentence, lambda d: decode_json("S1", d)):
        with contextlib.suppress(Reject):
            decode(data)


_TOKEN = st.one_of(st.from_regex(r"[0-9]{1,18}", fullmatch=True),
                   st.sampled_from(["", "0", "00", "100", "101", "-1", "C", "O", "T", "X",
                                    "S1", "a" * 33, "9007199254740992", "9007199254740991"]),
                   st.text(alphabet="0123456789abcdefABCDEFxyz_-", max_size=34))


@given(st.lists(_TOKEN, min_size=6, max_size=6))
@settings(max_examples=600)
def test_sentence_fast_path_agrees_with_the_field_by_field_decoder(fields: list[str]) -> None:
    """decode_sentence takes one regex for well-formed sentences; whatever it accepts, the
    field-by-field checks (which name reasons) must accept identically, and vice versa."""
    payload = ("PSTSL," + ",".join(fields)).encode()
    line = b"$%s*%02X" % (payload, reduce(operator.xor, payload, 0))
    try:
        fast = decode_sentence(line)
    except Reject:
        fast = None
    try:
        slow = seal_codec._message(fields[0], seal_codec._uint(fields[1]), fields[2],
                                   seal_codec._uint(fields[3]), seal_codec._uint(fields[4]),
                                   fields[5])
    except Reject:
        slow = None
    assert fast == slow


_FIELD = st.one_of(st.integers(-5, 2**60), st.text(max_size=40), st.none(), st.booleans(),
                   st.floats(allow_nan=False), st.lists(st.integers(), max_size=3))


@given(st.dictionaries(st.sampled_from(["seal_id", "ctr", "state", "battery_pct", "seal_t_ms",
                                        "mac", "x"]), _FIELD))
@settings(max_examples=400)
def test_json_decoder_with_arbitrary_values_raises_nothing_but_reject(obj: dict) -> None:
    with contextlib.suppress(Reject):
        decode_json("S1", json.dumps(obj).encode())


# --- authentication ------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.db", gateway_id="gw-seal", key=Ed25519PrivateKey.generate())


def _commit(journal: Journal, drafts: list) -> list:
    return journal.append(drafts) if drafts else []


def test_genuine_forged_replayed_and_unknown(journal: Journal) -> None:
    auth = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=0)
    handler = SealSentenceHandler(auth, "serial:r1")
    stored = _commit(journal, handler.handle(pstsl("S1", 5)))
    assert [s.kind for s in stored] == ["seal"]
    body = stored[0].record()["body"]
    assert body == {"seal_id": "S1", "ctr": 5, "state": "C", "battery_pct": 90,
                    "seal_t_ms": 1_760_000_000_000, "via": "serial:r1",
                    "mac": mac_hex(KEY, "S1", 5, "C", 90, 1_760_000_000_000)}

    forged = _commit(journal, handler.handle(pstsl("S1", 6, key=OTHER_KEY)))
    replay = _commit(journal, handler.handle(pstsl("S1", 5)))
    older = _commit(journal, handler.handle(pstsl("S1", 4)))
    for alerts, reason in ((forged, "bad_mac"), (replay, "replay"), (older, "replay")):
        assert [a.kind for a in alerts] == ["alert"]
        alert = alerts[0].record()["body"]
        assert alert["type"] == "sensorAuthFailure" and alert["severity"] == "critical"
        assert alert["details"]["reason"] == reason
        assert alert["asset"] == {"seal": "S1"}
    # the forgery did not use up counter 6: the real seal's next message is accepted
    assert [s.kind for s in _commit(journal, handler.handle(pstsl("S1", 6)))] == ["seal"]

    unknown = _commit(journal, handler.handle(pstsl("NOKEY", 1)))
    assert [s.record()["body"]["event"] for s in unknown] == ["unknownSeal"]
    assert unknown[0].kind == "status" and unknown[0].record()["body"]["trusted"] is False
    assert _commit(journal, handler.handle(pstsl("NOKEY", 2))) == []  # reported once per hour
    assert auth.counts == {"accepted": 2, "bad_mac": 1, "replay": 2, "unknown_seal": 2}
    assert sum(1 for s in journal.read_after(0) if s.kind == "seal") == 2


def test_counter_survives_a_restart(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "j.db", gateway_id="gw-seal", key=key)
    auth = SealAuthenticator(journal, {"S1": KEY})
    for ctr in (1, 2, 3):
        _commit(journal, auth.check(decode_sentence(pstsl("S1", ctr)), "serial:r"))
    auth.check(decode_sentence(pstsl("S1", 4)), "serial:r")
    journal.close()  # counter 4 was accepted but never committed: as if the power went

    journal = Journal(tmp_path / "j.db", gateway_id="gw-seal", key=key)
    auth = SealAuthenticator(journal, {"S1": KEY})
    assert auth.last_counter("S1") == 3
    replay = auth.check(decode_sentence(pstsl("S1", 3)), "serial:r")
    assert [d.body["details"]["reason"] for d in replay] == ["replay"]
    again = auth.check(decode_sentence(pstsl("S1", 4)), "serial:r")
    assert [d.kind for d in again] == ["seal"]  # the lost one is not held against the seal


def test_only_a_broker_redelivery_of_an_accepted_message_is_a_duplicate(journal: Journal) -> None:
    auth = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=0, recent=32)
    msgs = [decode_json("S1", json_msg("S1", ctr)) for ctr in range(1, 41)]
    for mid, msg in enumerate(msgs, start=100):
        _commit(journal, _batch(auth, [auth.check(msg, "mqtt", packet_id=mid)]))
    latest, latest_mid = msgs[-1], 139
    assert auth.check(latest, "mqtt", packet_id=latest_mid, redelivered=True) == []
    assert auth.counts["duplicate"] == 1
    # the same bytes published again by someone else: a new packet id, DUP or not; copies of
    # one message raise one alert (one alert id), but each is counted as a replay
    raised = []
    for mid, dup in ((7, False), (7, True), (latest_mid, False)):
        raised += auth.check(latest, "mqtt", packet_id=mid, redelivered=dup)
    assert [d.body["details"]["reason"] for d in raised] == ["replay"]
    assert auth.check(latest, "serial:r") == []  # on a serial line: a replay too
    assert auth.counts["replay"] == 4 and auth.counts["duplicate"] == 1
    # a DUP copy of a message older than the recent window cannot be a pending redelivery
    assert [d.kind for d in auth.check(msgs[0], "mqtt", packet_id=100, redelivered=True)] == \
        ["alert"]
    # and the window survives a restart (the crash is what causes redeliveries)
    fresh = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=0, recent=32)
    assert fresh.check(latest, "mqtt", packet_id=latest_mid, redelivered=True) == []
    assert [d.kind for d in fresh.check(msgs[0], "mqtt", packet_id=100, redelivered=True)] == \
        ["alert"]


def _batch(auth: SealAuthenticator, checked: list[list]) -> list:
    """What the MQTT source commits for one batch: the drafts, the first carrying the row
    that remembers the batch's deliveries."""
    drafts = [d for out in checked for d in out]
    ring = auth.remember()
    if ring:
        drafts[0] = drafts[0]._replace(state={**(drafts[0].state or {}), **ring})
    return drafts


def test_the_recent_deliveries_are_one_ring_across_seals_and_cost_little_per_reading(
        journal: Journal) -> None:
    """What can come back is the broker's send window, whatever the seals: the ring holds the
    last `recent` deliveries of all seals. A reading writes its seal's small counter row; a
    batch adds one row of 16 hex digits per delivery; nothing grows with a seal's history."""
    keys = {f"S{i}": KEY for i in range(4)}
    auth = SealAuthenticator(journal, keys, alert_interval_s=0, recent=8)
    msgs = [decode_json(f"S{n % 4}", json_msg(f"S{n % 4}", n // 4 + 1)) for n in range(20)]
    for first in range(0, 20, 3):  # batches of three, as the source hands them over
        checked = [auth.check(m, "mqtt", packet_id=mid)
                   for mid, m in enumerate(msgs[first:first + 3], start=first + 1)]
        assert all(d.state == {f"seal/{d.src}": f'{{"ctr":{d.body["ctr"]}}}'}
                   for out in checked for d in out)
        drafts = _batch(auth, checked)
        (row,) = set(drafts[0].state or {}) - {f"seal/{drafts[0].src}"}
        assert len((drafts[0].state or {})[row].partition(":")[2]) == 16 * len(drafts)
        _commit(journal, drafts)
    fresh = SealAuthenticator(journal, keys, alert_interval_s=0, recent=8)
    for mid, msg in enumerate(msgs, start=1):  # the broker re-sends all it thinks unacked
        out = fresh.check(msg, "mqtt", packet_id=mid, redelivered=True)
        assert (out == []) == (mid > 12), mid  # the last 8 are known; older ones are not
    assert fresh.counts["duplicate"] == 8


def test_copies_of_one_forged_message_raise_one_alert_even_with_no_interval(
        journal: Journal) -> None:
    auth = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=0)
    forged = decode_sentence(pstsl("S1", 9, key=OTHER_KEY))
    group = auth.check(forged, "serial:r") + auth.check(forged, "serial:r")
    other = auth.check(decode_sentence(pstsl("S1", 10, key=OTHER_KEY)), "serial:r")
    assert [d.kind for d in group] == ["alert"] and [d.kind for d in other] == ["alert"]
    # and should two copies reach the journal in one group anyway, the group still commits
    stored = journal.append(group + group + other)
    assert [s.kind for s in stored] == ["alert", "alert"]
    assert journal.duplicate_alerts == 1


def test_failure_alerts_are_rate_limited_and_not_repeated_after_restart(journal: Journal) -> None:
    now = [0.0]
    auth = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=60,
                             monotonic=lambda: now[0])
    drafts = []
    for ctr in range(1, 101):  # a forgery flood
        drafts += auth.check(decode_sentence(pstsl("S1", ctr, key=OTHER_KEY)), "serial:r")
    assert len(drafts) == 1 and auth.counts["bad_mac"] == 100
    _commit(journal, drafts)
    now[0] = 61.0
    later = auth.check(decode_sentence(pstsl("S1", 101, key=OTHER_KEY)), "serial:r")
    assert later[0].body["details"]["suppressed_since_last_alert"] == 99
    # a restart that sees the first forgery again does not raise its alert a second time
    fresh = SealAuthenticator(journal, {"S1": KEY}, alert_interval_s=60)
    assert fresh.check(decode_sentence(pstsl("S1", 1, key=OTHER_KEY)), "serial:r") == []


def test_keystore_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "seals.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps({"version": 1, "seals": {"S1": KEY.hex()}}).encode())
    os.close(fd)
    assert load_keystore(path) == {"S1": KEY}
    os.chmod(path, 0o644)
    with pytest.raises(KeystoreError, match="too open"):
        load_keystore(path)
    bad = tmp_path / "bad.json"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"version": 1, "seals": {"S1": "abcd"}}')
    os.close(fd)
    with pytest.raises(KeystoreError, match=r"seals\.S1: key must be 64 hex"):
        load_keystore(bad)
    with pytest.raises(KeystoreError, match="No such file"):
        load_keystore(tmp_path / "missing.json")
