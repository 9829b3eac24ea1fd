"""The console's API on both store engines (SQLite and PostgreSQL), through the real Starlette
app (in-process HTTP): overview, alert detail with its Merkle check, actions, trip summary,
evidence files that verify offline, credentials that verify, and the live feed's content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.console_rig import corridor_points, plan_envelope
from helpers.customs_data import T0, SimGateway
from starlette.testclient import TestClient  # (httpx: installed for the tests)

from customs.config import parse_config
from customs.console.app import create_app
from customs.console.live import describe
from customs.credentials.did import PinSet
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import did_key
from customs.credentials.verify import verify_credential
from customs.receive import Receiver
from customs.serve import build
from customs.trust import StaticTrust
from customs.users import add_user
from ledger_client.evidence import load
from ledger_client.keys import create_key

PASSWORD = "officer password 123"


def test_the_console_api_on_both_engines(tmp_path: Path, store_target: str) -> None:
    key = create_key(tmp_path / "service.key")
    config = parse_config(f"""
[office]
service_key = "{tmp_path / 'service.key'}"
[store]
target = "{store_target}"
[console]
listen = "127.0.0.1:1"
secure_cookie = false
""", base_dir=tmp_path)
    service = build(config)
    store = service.store
    gw = SimGateway("gw-a")
    rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
    points = corridor_points(30)
    fixes = [gw.fix(T0 + i * 10_000, lat + (40_000 if 10 <= i < 15 else 0), lon)
             for i, (lat, lon) in enumerate(points)]
    rx.handle("sealtrail/v1/gw-a/plans", plan_envelope(key, "PLAN-gw-a"))
    rx.handle("sealtrail/v1/gw-a/readings", b"\n".join(fixes))
    [out] = rx.handle("sealtrail/v1/gw-a/alerts", gw.alert(
        T0 + 150_000, plan_id="PLAN-gw-a", lat_e7=points[12][0] + 40_000, lon_e7=points[12][1],
        evidence=[11, 12, 13], details={"distance_m": 400}))
    assert out.alert is not None
    rx.handle("sealtrail/v1/gw-a/anchors", gw.receipt(1, 1, gw.seq))
    add_user(store, "ana", "officer", PASSWORD)
    ctx = service.ctx
    with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:
        assert client.post("/login", data={"name": "ana", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
        csrf = client.get("/api/me").json()["csrf"]
        ov = client.get("/api/overview").json()
        [trip] = ov["trips"]
        assert trip["gw"] == "gw-a" and trip["plan"]["verified"] and trip["geometry"]
        assert [v["state"] for v in ov["vehicles"]] == ["alert"]

        detail = client.get("/api/alert", params={"gw": "gw-a",
                                                  "id": out.alert.alert_id}).json()
        assert detail["meaning"]["sentence"].endswith("400 m from the route.")
        anchor = detail["verification"]["anchor"]
        assert anchor["batch"] == 1 and "rebuild the claimed root" in anchor["tree"]
        assert [e["seq"] for e in detail["evidence"]] == [11, 12, 13]

        resolved = client.post("/api/alert/action", headers={"X-CSRF-Token": csrf}, json={
            "gw": "gw-a", "alert_id": out.alert.alert_id, "action": "resolve",
            "reason": "false_alarm"})
        assert resolved.status_code == 200 and resolved.json()["alert"]["state"] == "resolved"
        again = client.post("/api/alert/action", headers={"X-CSRF-Token": csrf}, json={
            "gw": "gw-a", "alert_id": out.alert.alert_id, "action": "resolve",
            "reason": "false_alarm"})
        assert again.status_code == 409

        trip_doc = client.get("/api/trip", params={"plan": "PLAN-gw-a"}).json()
        summary = trip_doc["summary"]
        assert summary["fixes"] == 30 and summary["distance_m"] > 1000
        corridor = ctx.plans.view("PLAN-gw-a", store.plan_envelope("PLAN-gw-a")).plan.corridor
        off = [(lat + 40_000, lon) for lat, lon in points[10:15]]
        farthest = max(corridor.distances_m([a for a, _ in off], [o for _, o in off]))
        assert summary["outside_ms"] == 40_000  # five fixes 10 s apart outside: 4 intervals
        assert summary["max_outside_m"] == round(farthest - corridor.width_m) > 100

        evidence = load(client.get("/api/evidence/alert", params={
            "gw": "gw-a", "id": out.alert.alert_id}).text)
        assert [r.seq for r in evidence.records] == [11, 12, 13, 31]
        for record in evidence.records:  # batch 1 covers them all and the store holds it
            assert record.proof is not None
            record.proof.check(record.signed)  # offline: leaf and path to the claimed root

        issued = client.post("/api/credential", headers={"X-CSRF-Token": csrf},
                             json={"plan_id": "PLAN-gw-a"})
        assert issued.status_code == 200, issued.text
        credential = issued.json()
        verified = verify_credential(credential, PinSet.of([did_key(public_bytes(key))]),
                                     now_ms=T0 * 2)
        assert verified.issuer == did_key(public_bytes(key))
        subject = json.dumps(credential["credentialSubject"])
        assert "PLAN-gw-a" in subject and out.alert.alert_id in subject

        audit = client.get("/api/audit").json()
        assert audit["verification"]["ok"] and [e["action"] for e in audit["entries"]] == [
            "credential.issue", "alert.resolve"]

    news = describe(ctx, store.changes_since(0, 1000))
    assert out.alert.alert_id in [a["alert_id"] for a in news["alerts"]]
    assert [a["state"] for a in news["alerts"]] == ["resolved"]
    assert [e["action"] for e in news["audit"]] == ["alert.resolve", "credential.issue"]
    service.ctx.anchors.close()
    store.close()


def test_attest_plan_from_the_command_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`sealtrail customs attest --plan ID --db STORE`: the same trip credential as the
    console's button, from the command line (the facts file form stays)."""
    from sealtrail.cli import main

    key = create_key(tmp_path / "service.key")
    gw = SimGateway("gw-a")
    from customs.store import open_store

    store = open_store(tmp_path / "customs.db")
    rx = Receiver(store, StaticTrust({"gw-a": gw.pub}))
    rx.handle("sealtrail/v1/gw-a/plans", plan_envelope(key, "PLAN-cli"))
    rx.handle("sealtrail/v1/gw-a/readings", gw.fix(T0, *corridor_points(2)[0]))
    store.close()
    issuer = did_key(public_bytes(key))
    out = tmp_path / "trip.vc.json"
    assert main(["customs", "attest", "--plan", "PLAN-cli", "--db", str(tmp_path / "customs.db"),
                 "--key", str(tmp_path / "service.key"), "--issuer", issuer,
                 "-o", str(out)]) == 0
    credential = json.loads(out.read_text())
    verify_credential(credential, PinSet.of([issuer]), now_ms=T0 * 2)
    assert "PLAN-cli" in json.dumps(credential["credentialSubject"])
    assert main(["customs", "attest", "--plan", "NOPE", "--db", str(tmp_path / "customs.db"),
                 "--key", str(tmp_path / "service.key"), "--issuer", issuer,
                 "-o", str(tmp_path / "x.json")]) == 2
    assert "plan 'NOPE': not in the customs store" in capsys.readouterr().err
