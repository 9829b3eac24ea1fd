"""The customs trust boundary, tried the way an attacker with one valid gateway account would.

Through the real `sealtrail customs watch` process, on the real Mosquitto with the deployed TLS,
password and ACL configuration: gateway gw-a tries to suppress gw-b's alert by sending its
(predictable) alert id first, to crash the receiver with hostile payloads, and to fill the
customs store with garbage. None of it may hide, delay or crowd out gw-b's genuine alert.
Then the receiver's handler is fuzzed in-process with arbitrary topics and payloads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.customs_rig import T0, Gateway, Lines, alerts_topic, publish, trust_file
from helpers.mosquitto import make_test_ca, running_secure_mosquitto
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customs.receive import LEAVES, Receiver
from customs.store import open_store
from customs.trust import StaticTrust
from edge_agent.journal import Draft, Journal
from ledger_client.records import canonical, sign_record

pytestmark = pytest.mark.integration


def watch(broker: Any, pki: Path, trust: Path, db: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sealtrail.cli", "customs", "watch", "--broker", "127.0.0.1",
         "--port", str(broker.port), "--ca", str(pki / "ca.crt"), "--username", "customs",
         "--password-file", str(broker.conf_path.parent / "customs.secret"),
         "--trust", str(trust), "--db", db, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_one_gateway_cannot_suppress_crash_or_crowd_out_another(
        tmp_path: Path, store_target: str) -> None:
    a, b = Gateway(tmp_path, "gw-a"), Gateway(tmp_path, "gw-b")
    trust = trust_file(tmp_path / "trust.json", {"gw-a": a.pub, "gw-b": b.pub})
    pki = make_test_ca(tmp_path / "pki")
    b_next_id = "gw-b-alert-1"  # UUIDv5 ids are predictable; here it is simply known
    decoy = a.alert("geofenceEnter", "info", alert_id=b_next_id)
    genuine = b.alert("sealOpened", "critical")
    hostile = [
        (alerts_topic("gw-a"), b"[" * 100_000),                       # the C-stack crasher
        ("sealtrail/v1/gw-a/readings", b"[" * 100_000),
        ("sealtrail/v1/gw-a/status", b"[" * 3_000 + b"]" * 3_000),
        ("sealtrail/v1/gw-a/anchors", b'{"batch_seq": 1' + b"0" * 3_000 + b"}"),
        (alerts_topic("gw-a"), a.alert(alert_id="\x00" * 3)),        # signed, hostile id
        (alerts_topic("gw-a"), b'{"v":1,"seq":' + b"9" * 5_000 + b"}"),
        (alerts_topic("gw-a"), b'{"v":"\\ud800"}'),
    ]
    garbage = [(alerts_topic("gw-a"), b"junk %05d " % i + b"x" * 1_000) for i in range(20)]

    with running_secure_mosquitto(tmp_path, pki, users=("gw-a", "gw-b", "customs")) as broker:
        proc = watch(broker, pki, trust, store_target, "--quarantine-rows", "5",
                     "--quarantine-mb", "0.05", "--client-id", "customs-boundary")
        try:
            out, err = Lines(proc.stdout), Lines(proc.stderr)
            err.wait(lambda ls: any("subscribed to" in line for line in ls))
            publish(broker, [(alerts_topic("gw-a"), decoy), *hostile, *garbage], user="gw-a")
            publish(broker, [(alerts_topic("gw-b"), genuine), ("sealtrail/v1/gw-b/status",
                             b"not json")], user="gw-b")
            out.wait(lambda ls: any("id=gw-b-alert-1" in line and "gw=gw-b" in line
                                    for line in ls))
            err.wait(lambda ls: any("gw-b/status: malformed_status" in line for line in ls))
            assert proc.poll() is None  # never died, never restarted
        finally:
            proc.terminate()
            proc.wait(30)
        err.wait(lambda ls: any(line.startswith("stopped:") for line in ls))
    assert proc.returncode == 0

    shown = [line for line in out.lines if line.startswith("ALERT")]
    assert any("INFO" in line and "gw=gw-a" in line and f"id={b_next_id}" in line
               for line in shown)
    assert any("CRITICAL sealOpened gw=gw-b" in line and f"id={b_next_id}" in line
               for line in shown)
    store = open_store(store_target)
    try:
        held = store.alert("gw-b", b_next_id)
        assert held is not None and held.signed == genuine and held.severity == "critical"
        assert store.alert("gw-a", b_next_id) is not None
        kept = store.quarantined()
        assert {q.gw for q in kept} == {"gw-a", "gw-b"}
        assert sum(q.gw == "gw-a" for q in kept) == 5          # gw-a's quota: 5 rows
        assert [q.reason for q in kept if q.gw == "gw-b"] == ["malformed_status"]
        overflow = store.counts()["overflow"]
        assert sum(n for key, n in overflow.items() if key.startswith("gw-a/")) == \
            len(hostile) + len(garbage) - 5
        assert store.overflow()[0].last_sha256 and store.overflow()[0].last_size > 0
        assert sum(q.size for q in kept if q.gw == "gw-a") <= 0.05 * 2**20  # gw-a's bytes
    finally:
        store.close()


# --- the handler, fuzzed ----------------------------------------------------------------------

def hostile_records() -> st.SearchStrategy[bytes]:
    """Validly signed records (by a trusted key) whose fields hold hostile values."""
    key = create_key_once()
    values = st.one_of(st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=300),
                       st.none(), st.booleans(),
                       st.lists(st.integers(0, 10), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
    body = st.fixed_dictionaries({}, optional={
        "alert_id": values, "type": values, "severity": values, "plan_id": values,
        "position": st.one_of(values, st.fixed_dictionaries(
            {"lat_e7": values, "lon_e7": values})),
        "prev_alert": values})

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        unsigned = {"v": 1, "gw": "gw-f", "seq": draw(st.integers(1, 50)),
                    "t_ms": draw(st.integers(0, 2**41)),
                    "kind": draw(st.sampled_from(["alert", "gps", "seal", "status"])),
                    "src": draw(st.text(max_size=20)), "body": draw(body), "prev": "0" * 64}
        try:
            return sign_record(unsigned, key)[1]
        except ValueError:
            return canonical({"v": 1})
    return build()


_KEY: list[Any] = []


def create_key_once() -> Any:
    if not _KEY:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        _KEY.append(Ed25519PrivateKey.generate())
    return _KEY[0]


TOPICS = st.one_of(st.text(max_size=60),
                   st.builds(lambda gw, leaf: f"sealtrail/v1/{gw}/{leaf}",
                             st.sampled_from(["gw-f", "gw-x", "", "+", "a/b"]),
                             st.sampled_from([*LEAVES, "acks", "", "x"])))
PAYLOADS = st.one_of(
    st.binary(max_size=2_000),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 5_000).map(lambda n: b'{"seq":' + b"9" * n + b"}"),
    st.text(max_size=200).map(lambda t: json.dumps({"gw": "gw-f", "state": t}).encode()),
    st.just(b'{"gw":"gw-f","state":"online","t_ms":"\\ud800"}'),
    hostile_records(),
    hostile_records().map(lambda r: r + b"\n" + r[:-3]),
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_receiver(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "sqlite":
        store = open_store(tmp_path_factory.mktemp("fuzz") / "customs.db")
    else:
        store = open_store(request.getfixturevalue("pg_cluster").create_database("fuzz"))
    from cryptography.hazmat.primitives import serialization
    pub = create_key_once().public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw).hex()
    yield Receiver(store, StaticTrust({"gw-f": pub}))
    store.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, payload=PAYLOADS)
def test_the_handler_never_raises_and_every_message_is_filed(fuzz_receiver: Receiver,
                                                            topic: str, payload: bytes) -> None:
    before = fuzz_receiver.store.counts()
    found = fuzz_receiver.handle(topic, payload)
    after = fuzz_receiver.store.counts()
    filed = (after["records"] > before["records"] or after["quarantine"] != before["quarantine"]
             or after["overflow"] != before["overflow"] or after["gateways"] != before["gateways"]
             or any(o.kind in ("duplicate", "duplicate_readings", "status", "plan")
                    for o in found))
    assert filed, (topic, payload[:200], found)
    assert fuzz_receiver.counts["dropped_poison"] == 0


def test_a_signed_record_with_a_nul_in_an_indexed_field_is_a_bad_alert(
        tmp_path: Path, store_target: str) -> None:
    """A NUL is valid JSON and fatal to a PostgreSQL text column: it must never reach one."""
    gw = Gateway(tmp_path, "gw-a")
    store = open_store(store_target)
    try:
        rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
        [found] = rx.handle(alerts_topic("gw-a"), gw.alert(alert_id="ok\x00id"))
        assert found.rejection is not None and found.rejection.reason == "bad_alert"
        [found] = rx.handle(alerts_topic("gw-a"), gw.alert(plan_id="P\x00"))
        assert found.rejection is not None and found.rejection.reason == "bad_alert"
        [fine] = rx.handle(alerts_topic("gw-a"), gw.alert())
        assert fine.kind == "alert"
    finally:
        store.close()


def test_a_gateway_that_signs_two_contents_under_one_seq_keeps_the_first(
        tmp_path: Path, store_target: str) -> None:
    gw = Gateway(tmp_path, "gw-a")
    twin = Journal(tmp_path / "twin.db", gateway_id="gw-a", key=gw.key)  # same key, forked
    first = gw.alert()
    [second] = twin.append([Draft(T0, "alert", "rules", {
        "alert_id": "gw-a-alert-9", "type": "sealOpened", "severity": "critical"})])
    store = open_store(store_target)
    try:
        rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
        assert [o.kind for o in rx.handle(alerts_topic("gw-a"), first)] == ["alert"]
        [found] = rx.handle(alerts_topic("gw-a"), second.signed)
        assert found.rejection is not None and found.rejection.reason == "conflicting_seq"
        held = store.alert("gw-a", "gw-a-alert-1")
        assert held is not None and held.signed == first
        assert store.alert("gw-a", "gw-a-alert-9") is None
    finally:
        store.close()


def test_oversize_payloads_are_cut_before_they_are_kept(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    try:
        rx = Receiver(store, StaticTrust({}))
        [found] = rx.handle(alerts_topic("gw-a"), b"x" * 200_000)
        assert found.rejection is not None and found.rejection.reason == "oversize"
        [row] = store.quarantined()
        assert len(row.payload) == 4096 and "200000 bytes" in row.detail
    finally:
        store.close()


def test_the_quota_overflow_is_visible_in_the_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from customs.metrics import render
    from customs.store import Quota

    store = open_store(tmp_path / "c.db", quota=Quota(rows=2))
    try:
        rx = Receiver(store, StaticTrust({}))
        for i in range(5):
            rx.handle(alerts_topic("gw-a"), b"junk %d" % i)
        text = render(rx.counts, store.overflow(), connected=True, groups=5, acks_sent=0,
                      store_waits=0)
    finally:
        store.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [over] = families["sealtrail_customs_quarantine_overflow"].samples
    assert over.labels == {"gateway": "gw-a", "reason": "malformed"} and over.value == 3
    [kept] = families["sealtrail_customs_quarantined"].samples
    assert kept.labels == {"reason": "malformed"} and kept.value == 2


def test_a_gateway_cannot_pass_off_an_audit_record(tmp_path: Path) -> None:
    """``audit`` records are customs' own chain (officers' actions); a gateway signing one is
    refused, never stored beside its readings."""
    gw = Gateway(tmp_path, "gw-a")
    [audit] = gw.journal.append([Draft(T0, "audit", "officer", {"action": "resolve"})])
    store = open_store(tmp_path / "c.db")
    try:
        rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
        [found] = rx.handle("sealtrail/v1/gw-a/readings", audit.signed)
        assert found.rejection is not None and found.rejection.reason == "wrong_kind"
        assert store.counts()["records"] == 0
    finally:
        store.close()
