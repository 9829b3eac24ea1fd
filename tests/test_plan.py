"""Transit plans and fence bundles: parsing and every validation error, signed envelopes and
every way of tampering with one, trusted-key files, and `sealtrail plan sign|verify|show`."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_geofences_zones import collection, feature, point, square

from geofences import (
    FenceBundle,
    GeofenceError,
    SignatureError,
    TransitPlan,
    load_trusted_keys,
    open_envelope,
    parse_fences,
    parse_plan,
    read_envelope,
    sign_envelope,
)
from geofences.envelope import signing_input
from ledger_client.keys import create_key, public_hex

ROOT = Path(__file__).resolve().parent.parent
DEMO_PLAN = ROOT / "sealtrail" / "demo_data" / "plan.json"
PLAN_BYTES = DEMO_PLAN.read_bytes()
PLAN_DOC = json.loads(PLAN_BYTES)


def main(argv: list[str]) -> int:
    """`sealtrail ...` in process, through the real entry point."""
    from sealtrail.cli import main as sealtrail

    return sealtrail(argv)


def raw(key: Ed25519PrivateKey) -> bytes:
    return bytes.fromhex(public_hex(key))


def plan_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# ------------------------------------------------------------------------------------------
# Plans


def test_demo_plan_matches_the_demo_route_and_corridor() -> None:
    plan = parse_plan(PLAN_BYTES, source=str(DEMO_PLAN))
    assert plan.plan_id == "plan-demo-0001" and plan.vehicle == "truck-SBX-1234"
    assert plan.seal_ids == ("MSCU1234567", "TGHU7654321")
    assert plan.container_of("TGHU7654321") == "TGHU7654321" and plan.container_of("x") is None
    assert plan.digest == hashlib.sha256(PLAN_BYTES).hexdigest() and plan.payload == PLAN_BYTES
    corridor = json.loads((ROOT / "sealtrail/demo_data/corridor.geojson").read_text())
    line = corridor["features"][0]["geometry"]["coordinates"]
    assert plan.corridor.corridor_id == "corridor-mvd-01" and plan.corridor.width_m == 60
    assert [(lo / 1e7, la / 1e7) for la, lo in plan.corridor.vertices_e7] == [tuple(p)
                                                                              for p in line]
    assert plan.corridor.projection is plan.zones.projection  # one projection, one memo
    # Offices at the route ends, the stop on the route (and on the corridor's centre line).
    route = json.loads((ROOT / "firmware_sim/scenarios/demo_truck_route.geojson").read_text())
    ends = route["geometry"]["coordinates"]
    start, end = ends[0], ends[-1]
    fix = lambda p: (round(p[1] * 1e7), round(p[0] * 1e7))  # noqa: E731
    assert [z.zone_id for z in plan.zones.containing(*fix(start))] == [plan.departure_office]
    assert [z.zone_id for z in plan.zones.containing(*fix(end))] == [plan.destination_office]
    stop = plan.zones[plan.authorized_stops[0]]
    assert stop.role == "authorized_stop"
    centre = stop.anchor_deg
    assert plan.corridor.distance_m(*fix(centre)) < 1.0
    assert plan.valid_from_ms < plan.deadline_ms and dict(plan.limits)["max_stop_s"] == 60


def _mut(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PLAN_DOC)
    for key, value in changes.items():
        if value is _DEL:
            del doc[key]
        else:
            doc[key] = value
    return doc


_DEL = object()
CONTAINERS = PLAN_DOC["containers"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_mut(format="sealtrail-plan/2"), r"format is 'sealtrail-plan/2'"),
        (_mut(deadlne="x"), r"unknown field\(s\) 'deadlne'"),
        (_mut(vehicle=_DEL), r"missing field\(s\) 'vehicle'"),
        (_mut(plan_id=""), r"field 'plan_id' must be a non-empty string"),
        (_mut(departure_office="office-nowhere"),
         r"departure_office 'office-nowhere' is not a zone of this plan"),
        (_mut(destination_office="stop-rest-01"),
         r"destination_office 'stop-rest-01': zone 'stop-rest-01' \(#1\) has role "
         r"'authorized_stop', expected 'customs_office'"),
        (_mut(authorized_stops=["office-port-mvd"]),
         r"authorized_stops\[0\] 'office-port-mvd': zone 'office-port-mvd' \(#0\) has role "
         r"'customs_office', expected 'authorized_stop'"),
        (_mut(authorized_stops=["stop-rest-01", "gone"]),
         r"authorized_stops\[1\] 'gone' is not a zone of this plan"),
        (_mut(authorized_stops=["stop-rest-01", "stop-rest-01"]),
         r"authorized_stops\[1\] 'stop-rest-01' is listed twice"),
        (_mut(containers=[CONTAINERS[0], {"container_id": "X1", "seal_ids": ["MSCU1234567"]}]),
         r"seal 'MSCU1234567' on container 'X1' is listed also on 'MSCU1234567'"),
        (_mut(containers=[{"container_id": "X1", "seal_ids": ["S1", "S1"]}]),
         r"seal 'S1' on container 'X1' is listed twice"),
        (_mut(containers=[CONTAINERS[0], CONTAINERS[0]]), r"container 'MSCU1234567' is listed "),
        (_mut(containers=[]), r"field 'containers' must be a non-empty list"),
        (_mut(containers=[{"container_id": "X1", "seal_ids": []}]),
         r"container 'X1': seal_ids must be a non-empty list"),
        (_mut(deadline="2024-12-31T00:00:00Z"),
         r"deadline '2024-12-31T00:00:00Z' is not after valid_from"),
        (_mut(deadline="2030-12-31"), r"field 'deadline' '2030-12-31' needs a time of day"),
        (_mut(limits={"max_speed_kmh": -1}), r"limits.max_speed_kmh must be an integer >= 0"),
        (_mut(limits={"Max Speed": 1}), r"limits: name 'Max Speed' must be snake_case"),
        (_mut(corridor={**PLAN_DOC["corridor"], "properties": {"id": "c", "width_m": 0}}),
         r"corridor 'c': properties.width_m must be a positive number"),
        (_mut(corridor={**PLAN_DOC["corridor"], "geometry": {"type": "LineString",
                                                             "coordinates": [[0, 0]]}}),
         r"corridor 'corridor-mvd-01': LineString has 1 point"),
        (_mut(zones={"type": "FeatureCollection", "features": [
            *PLAN_DOC["zones"]["features"],
            feature("office-port-mvd", point(-56.2, -34.9), radius_m=5)]}),
         r"zone 'office-port-mvd' \(#3\): duplicate id \(also used by zone 'office-port-mvd'"),
        (_mut(zones={"type": "FeatureCollection", "features": [
            *PLAN_DOC["zones"]["features"], feature("far", square(100.0, 30.0, 0.01))]}),
         r"corridor 'corridor-mvd-01': extends .* km from its centre|zone 'far' .* km"),
    ],
)
def test_plan_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(GeofenceError, match=r"^plan-7\.json: (.*: )?" + message):
        parse_plan(plan_bytes(doc), source="plan-7.json")


def test_plan_text_errors() -> None:
    for data, message in [
        (b"{", r"not valid JSON"),
        (b"\xff\xfe", r"not UTF-8"),
        (b'{"format": "sealtrail-plan/1", "format": "x"}', r"duplicate key 'format'"),
        (b'{"format": NaN}', r"NaN is not valid JSON"),
        (b"[]", r"expected a JSON object, got list"),
    ]:
        with pytest.raises(GeofenceError, match=r"^p: plan is .*" + message
                           if b"[" not in data else r"^p: " + message):
            parse_plan(data, source="p")


def test_fence_bundle() -> None:
    doc = {"format": "sealtrail-fences/1", "bundle_id": "port-mvd", "version": 3,
           "zones": collection(feature("quay", square(-56.21, -34.9, 0.002), role="port_area"),
                               feature("gate", point(-56.2, -34.9), role="customs_office",
                                       radius_m=30))}
    b = parse_fences(plan_bytes(doc))
    assert (b.bundle_id, b.version, len(b.zones)) == ("port-mvd", 3, 2)
    assert b.zones.projection.lon0_deg == pytest.approx(-56.2055, abs=0.002)
    for bad, message in [({**doc, "version": 0}, r"'version' must be an integer >= 1"),
                         ({**doc, "version": True}, r"'version' must be an integer"),
                         ({**doc, "zones": collection()}, r"at least one zone"),
                         ({**doc, "plan_id": "x"}, r"unknown field\(s\) 'plan_id'")]:
        with pytest.raises(GeofenceError, match=r"^fences\.json: .*" + message):
            parse_fences(plan_bytes(bad), source="fences.json")


# ------------------------------------------------------------------------------------------
# Envelopes


@pytest.fixture(scope="module")
def customs() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _env(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def _bytes(env: dict[str, Any]) -> bytes:
    return json.dumps(env).encode()


def test_sign_and_open(customs: Ed25519PrivateKey) -> None:
    signed = sign_envelope("plan", PLAN_BYTES, customs)
    env = _env(signed)
    assert env["payload"].encode() == PLAN_BYTES  # exact text, never re-serialised
    assert env["signer"] == public_hex(customs)
    plan = open_envelope(signed, [raw(customs)], source="mqtt plans")
    assert isinstance(plan, TransitPlan) and plan.signer == public_hex(customs)
    assert plan.digest == hashlib.sha256(PLAN_BYTES).hexdigest()
    # A re-serialised envelope (other whitespace, key order) still carries the same payload.
    again = open_envelope(json.dumps(dict(reversed(env.items()))).encode(), [raw(customs)])
    assert again.digest == plan.digest


def _reason(data: bytes, trusted: list[bytes]) -> str:
    with pytest.raises(SignatureError) as info:
        open_envelope(data, trusted, source="env.json")
    assert str(info.value).startswith("env.json: ")
    return info.value.reason


def test_tampered_envelopes_are_refused(customs: Ed25519PrivateKey) -> None:
    trusted = [raw(customs)]
    signed = sign_envelope("plan", PLAN_BYTES, customs)
    env = _env(signed)
    # One byte of the payload changed (a seal id), envelope otherwise intact.
    flipped = {**env, "payload": env["payload"].replace("TGHU7654321", "TGHU7654322", 1)}
    assert _reason(_bytes(flipped), trusted) == "bad_signature"
    # Every single byte of the raw payload region flipped: never accepted.
    start = signed.index(b'"payload": "') + 12
    for i in range(start, start + 400, 7):
        data = bytearray(signed)
        data[i] ^= 0x01
        with pytest.raises(SignatureError):
            open_envelope(bytes(data), trusted)
    # Signature made by another key over the same bytes, signer field left alone.
    other = Ed25519PrivateKey.generate()
    forged = {**env, "sig": other.sign(signing_input("plan", PLAN_BYTES)).hex()}
    assert _reason(_bytes(forged), trusted) == "bad_signature"
    # Validly signed by a key the gateway does not trust.
    assert _reason(sign_envelope("plan", PLAN_BYTES, other), trusted) == "unknown_signer"
    # Signature missing / empty; a bare unsigned plan.
    assert _reason(_bytes({k: v for k, v in env.items() if k != "sig"}), trusted) == "unsigned"
    assert _reason(_bytes({**env, "sig": ""}), trusted) == "unsigned"
    assert _reason(PLAN_BYTES, trusted) == "unsigned"
    # The same signature presented as a fence bundle: the kind is signed too.
    assert _reason(_bytes({**env, "kind": "fences"}), trusted) == "bad_signature"
    # Garbage is a SignatureError too (nothing authentic in it), marked malformed.
    for junk in (b"", b"{]", _bytes({**env, "sig": "zz"}), _bytes({**env, "signer": "ab"}),
                 _bytes({**env, "format": "x"}), _bytes({**env, "extra": 1}),
                 _bytes({**env, "payload": 5}), _bytes({**env, "kind": "other"})):
        assert _reason(junk, trusted) == "malformed"
    assert _reason(signed, []) == "unknown_signer"


def test_authentic_but_invalid_payload_is_a_plain_geofence_error(
        customs: Ed25519PrivateKey) -> None:
    bad = plan_bytes(_mut(destination_office="nowhere"))
    with pytest.raises(GeofenceError, match="not a zone"):
        sign_envelope("plan", bad, customs)  # checked before signing by default
    signed = sign_envelope("plan", bad, customs, check=False)
    with pytest.raises(GeofenceError, match=r"^gw \(plan\): .*nowhere. is not a zone") as info:
        open_envelope(signed, [raw(customs)], source="gw")
    assert not isinstance(info.value, SignatureError)
    fences_as_plan = sign_envelope("plan", b'{"format": "sealtrail-fences/1"}', customs,
                                   check=False)
    with pytest.raises(GeofenceError, match="format is 'sealtrail-fences/1', expected"):
        open_envelope(fences_as_plan, [raw(customs)])


def test_fences_envelope(customs: Ed25519PrivateKey) -> None:
    doc = {"format": "sealtrail-fences/1", "bundle_id": "b", "version": 1,
           "zones": collection(feature("q", square(0, 0, 0.01), role="port_area"))}
    signed = sign_envelope("fences", plan_bytes(doc), customs)
    bundle = open_envelope(signed, [raw(customs)])
    assert isinstance(bundle, FenceBundle) and bundle.signer == public_hex(customs)
    assert read_envelope(signed).kind == "fences"


def test_load_trusted_keys(tmp_path: Path) -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    f = tmp_path / "customs.keys"
    f.write_text(f"# customs Montevideo\n{public_hex(a)}  # desk 1\n\n  {public_hex(b)}\n"
                 f"{public_hex(a)}\n")
    assert load_trusted_keys(f) == [raw(a), raw(b)]
    f.write_text(f"{public_hex(a)}\nnot-a-key\n")
    with pytest.raises(GeofenceError, match=r"customs.keys:2: not an Ed25519 public key"):
        load_trusted_keys(f)
    f.write_text("# nobody\n")
    with pytest.raises(GeofenceError, match="no trusted keys"):
        load_trusted_keys(f)
    with pytest.raises(GeofenceError, match="cannot read"):
        load_trusted_keys(tmp_path / "missing")


# ------------------------------------------------------------------------------------------
# CLI


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("customs", "other"):
        key = create_key(tmp_path / f"{name}.key")
        (tmp_path / f"{name}.pub").write_text(f"# {name}\n{public_hex(key)}\n")
        out[name] = tmp_path / f"{name}.key"
        out[f"{name}.pub"] = tmp_path / f"{name}.pub"
    return out


def test_cli_sign_verify_show_round_trip(tmp_path: Path, keys: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    signed = tmp_path / "plan.signed.json"
    assert main(["plan", "sign", "--key", str(keys["customs"]), str(DEMO_PLAN),
                 "-o", str(signed)]) == 0
    out = capsys.readouterr().out
    assert "signed plan plan-demo-0001" in out
    assert hashlib.sha256(PLAN_BYTES).hexdigest() in out
    assert _env(signed.read_bytes())["payload"].encode() == PLAN_BYTES
    assert main(["plan", "sign", "--key", str(keys["customs"]), str(DEMO_PLAN),
                 "-o", str(signed)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err

    assert main(["plan", "verify", "--trusted-keys", str(keys["customs.pub"]), str(signed)]) == 0
    assert "ok: plan plan-demo-0001" in capsys.readouterr().out

    assert main(["plan", "show", str(signed), "--trusted-keys", str(keys["customs.pub"])]) == 0
    text = capsys.readouterr().out
    for expect in ("plan-demo-0001", "UY-DUA-2026-000123", "truck-SBX-1234",
                   "MSCU1234567 (seals MSCU1234567)", "1.28 km", "width_m 60",
                   "customs_office: office-port-mvd", "authorized_stop: stop-rest-01",
                   "2030-12-31T23:59:59Z", "(trusted)", "sha256:"):
        assert expect in text, expect
    assert main(["plan", "show", "--json", str(signed)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["corridor"]["width_m"] == 60 and summary["signer"] in keys_hex(keys)
    assert summary["zones"]["authorized_stop"][0]["id"] == "stop-rest-01"
    assert summary["digest"] == "sha256:" + hashlib.sha256(PLAN_BYTES).hexdigest()
    assert main(["plan", "show", str(DEMO_PLAN)]) == 0
    assert "UNSIGNED" in capsys.readouterr().out


def keys_hex(keys: dict[str, Path]) -> set[str]:
    return {line for p in ("customs.pub", "other.pub")
            for line in keys[p].read_text().splitlines() if not line.startswith("#")}


def test_cli_verify_exit_codes(tmp_path: Path, keys: dict[str, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    signed = tmp_path / "p.signed.json"
    main(["plan", "sign", "--key", str(keys["customs"]), str(DEMO_PLAN), "-o", str(signed)])
    capsys.readouterr()
    trusted, other = str(keys["customs.pub"]), str(keys["other.pub"])
    tampered = tmp_path / "t.json"
    tampered.write_bytes(signed.read_bytes().replace(b"TGHU7654321", b"TGHU7654320", 1))
    garbage = tmp_path / "g.json"
    garbage.write_bytes(b"not json")
    keys_bad = tmp_path / "bad.keys"
    keys_bad.write_text("xyz\n")
    cases = [
        (["--trusted-keys", other, str(signed)], 1, "unknown signer"),
        (["--trusted-keys", trusted, str(tampered)], 1, "bad signature"),
        (["--trusted-keys", trusted, str(DEMO_PLAN)], 1, "unsigned"),
        (["--trusted-keys", trusted, str(garbage)], 2, "not valid JSON"),
        (["--trusted-keys", trusted, str(tmp_path / "none.json")], 2, "cannot read"),
        (["--trusted-keys", str(keys_bad), str(signed)], 2, "bad.keys:1"),
        (["--trusted-keys", trusted, "--kind", "fences", str(signed)], 2, "not a fences"),
    ]
    for args, code, message in cases:
        assert main(["plan", "verify", *args]) == code, args
        err = capsys.readouterr().err
        assert err.startswith("sealtrail plan verify: ") and message in err, (args, err)


def test_cli_sign_refuses_invalid_documents_and_signs_fences(
        tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad-plan.json"
    bad.write_bytes(plan_bytes(_mut(authorized_stops=["office-port-mvd"])))
    assert main(["plan", "sign", "--key", str(keys["customs"]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not signed: " in err and "bad-plan.json" in err and "expected 'authorized_stop'" in err
    assert not (tmp_path / "bad-plan.signed.json").exists()
    fences = tmp_path / "port.json"
    fences.write_bytes(plan_bytes({"format": "sealtrail-fences/1", "bundle_id": "port",
                                   "version": 2, "zones": collection(
                                       feature("q", square(0, 0, 0.01), role="port_area"))}))
    assert main(["plan", "sign", "--key", str(keys["customs"]), "--kind", "plan",
                 str(fences)]) == 2
    assert "is a fences" in capsys.readouterr().err
    assert main(["plan", "sign", "--key", str(keys["customs"]), "--kind", "fences",
                 str(fences)]) == 0
    signed = tmp_path / "port.signed.json"
    assert main(["plan", "verify", "--kind", "fences", "--trusted-keys",
                 str(keys["customs.pub"]), str(signed)]) == 0
    assert "ok: fences port v2" in capsys.readouterr().out
    assert main(["plan", "show", str(signed)]) == 0
    out = capsys.readouterr().out
    assert "bundle        port" in out and "port_area: q" in out and "NOT checked" in out
    missing_key = tmp_path / "nokey"
    assert main(["plan", "sign", "--key", str(missing_key), str(fences), "--force"]) == 2
    assert "customs key" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["sign"], ["verify"], ["show"]])
def test_cli_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plan", *command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: sealtrail plan" in out and len(out) > 300
