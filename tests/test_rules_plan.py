"""Plans and fence bundles in the rules engine: verified or refused, switched at a journal seq.

Customs keys are made at run time; envelopes are signed with geofences.sign_envelope.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_sim.motion import Motion
from firmware_sim.route import Route
from firmware_sim.trace import gps_trace, merge, parked, seal_trace
from geofences import GeofenceError, SignatureError
from tests.helpers.rules_rig import CORRIDOR, T0, Rig, circle, e7, plan_doc, seal
from tests.test_rules_scenarios import closed_seals, summary


def statuses(rig: Rig) -> list[dict[str, object]]:
    return [s.record()["body"] for s in rig.journal.read_after(0, 100_000)
            if s.src == "rules" and s.kind == "status"]


def test_a_signed_plan_is_journaled_once_and_refusals_change_nothing(tmp_path) -> None:
    rig = Rig(tmp_path)
    doc = plan_doc()
    plan = rig.load_plan(doc)
    [loaded] = statuses(rig)
    assert loaded == {"event": "planLoaded", "plan_id": "plan-0001", "digest": plan.digest,
                      "declaration_ref": "DUA-2026-0001", "vehicle": "truck-SBX-1234",
                      "valid_from_ms": T0 - 60_000, "deadline_ms": T0 + 3_600_000,
                      "signer": rig.trusted[0].hex()}
    assert json.loads(rig.journal.state(f"rules/plans/{plan.digest}") or "{}")["kind"] == "plan"
    rig.load_plan(doc)  # the same plan again: nothing new
    assert len(statuses(rig)) == 1
    head = rig.journal.head()[0]
    stranger = Ed25519PrivateKey.generate()
    other = plan_doc(plan_id="plan-0002")
    with pytest.raises(SignatureError, match="unknown signer"):
        rig.engine.set_plan(rig.envelope(other, key=stranger))
    tampered = json.loads(rig.envelope(other))
    tampered["payload"] = tampered["payload"].replace("plan-0002", "plan-0003")
    with pytest.raises(SignatureError, match="bad signature"):
        rig.engine.set_plan(json.dumps(tampered).encode())
    with pytest.raises(SignatureError, match="unsigned"):
        rig.engine.set_plan(rig.payload(other))
    broken = {**other, "destination_office": "nowhere"}
    with pytest.raises(GeofenceError, match="nowhere"):
        rig.engine.set_plan(rig.envelope(broken))
    assert rig.journal.head()[0] == head  # nothing written by any refusal
    rig.engine.catch_up()
    assert rig.engine.plan is not None and rig.engine.plan.plan_id == "plan-0001"


def test_the_switch_happens_at_the_planloaded_record(tmp_path) -> None:
    """A truck on the corridor of plan 1 is off the corridor of plan 2 (its corridor lies
    elsewhere): only fixes after plan 2's record are judged against it."""
    rig = Rig(tmp_path)
    rig.load_plan(plan_doc(), t_ms=T0 - 1000)
    motion = Motion(Route(CORRIDOR, 2.0))
    trace = merge(gps_trace(motion, t0_ms=T0, duration_s=600, seed=9), *closed_seals(600))
    rig.feed([i for i in trace if i.t_ms < T0 + 200_000])
    assert [a["type"] for a in rig.alerts()] == ["geofenceEnter", "geofenceExit"]
    elsewhere = [(lon + 0.05, lat) for lon, lat in CORRIDOR]  # ~4.6 km east
    doc2 = plan_doc(plan_id="plan-0002")
    doc2["corridor"]["geometry"]["coordinates"] = [list(p) for p in elsewhere]
    rig.load_plan(doc2)
    switch = rig.journal.head()[0]
    rig.feed([i for i in trace if i.t_ms >= T0 + 200_000])
    deviation = next(a for a in rig.alerts() if a["type"] == "routeDeviation")
    assert deviation["plan_id"] == "plan-0002" and deviation["details"]["plan_seq"] == switch
    assert min(deviation["evidence"]) > switch
    assert deviation["t_ms"] - rig.reading(min(deviation["evidence"]))["t_ms"] >= 60_000


def test_an_amended_plan_continues_the_trip(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.load_plan(plan_doc(deadline_ms=T0 + 120_000), t_ms=T0 - 1000)
    motion = Motion(Route(CORRIDOR, 2.0))
    trace = merge(gps_trace(motion, t0_ms=T0, duration_s=700, seed=9), *closed_seals(700))
    rig.feed([i for i in trace if i.t_ms < T0 + 150_000])
    assert [a["type"] for a in rig.alerts()][-1] == "lateArrival"
    # customs grant more time: the same trip with a new deadline, late re-armed for it
    rig.load_plan(plan_doc(deadline_ms=T0 + 300_000))
    rig.feed([i for i in trace if i.t_ms >= T0 + 150_000])
    late = [a for a in rig.alerts() if a["type"] == "lateArrival"]
    assert [a["details"]["deadline_ms"] for a in late] == [T0 + 120_000, T0 + 300_000]
    assert rig.engine.trip is not None and rig.engine.trip.loaded_ms == T0 - 1000


def test_a_plan_survives_a_restart_even_after_a_key_rotation(tmp_path) -> None:
    """The envelope is kept in the journal and re-checked against the key that signed it: a
    trust file that no longer lists that key must not silently end a trip in progress."""
    rig = Rig(tmp_path)
    plan = rig.load_plan(plan_doc(), t_ms=T0 - 1000)
    rig.engine.catch_up()
    rig.trusted = [b"\x01" * 32]
    rig.restart()
    assert rig.engine.plan is not None and rig.engine.plan.digest == plan.digest
    with pytest.raises(SignatureError):
        rig.load_plan(plan_doc(plan_id="plan-9"))


def test_a_port_gateway_with_fences_and_a_fixed_site(tmp_path) -> None:
    """No plan: zones from a signed fence bundle, seal events placed at the gateway's site."""
    gate, yard = CORRIDOR[0], CORRIDOR[-1]
    bundle = {"format": "sealtrail-fences/1", "bundle_id": "port-mvd", "version": 3,
              "zones": {"type": "FeatureCollection", "features": [
                  circle("port", "port_area", gate, 150),
                  circle("scrapyard", "forbidden", yard, 100)]}}
    rig = Rig(tmp_path, site=e7(gate), seal_ids=("SEAL-A", "SEAL-B"))
    rig.engine.set_plan(rig.envelope(bundle, kind="fences"), t_ms=T0 - 1000)
    assert statuses(rig)[0]["event"] == "fencesLoaded"
    opened = [seal_trace(seal("SEAL-A"), t0_ms=T0, duration_s=120, events=[(60.0, "O")]),
              seal_trace(seal("SEAL-B"), t0_ms=T0, duration_s=120, events=[(90.0, "T")])]
    truck = gps_trace(parked(yard, 60), t0_ms=T0, duration_s=60, seed=1)
    rig.feed(merge(truck, *opened))
    got = [(a["type"], a["severity"], a["details"].get("zone_id")) for a in rig.alerts()]
    assert got == [("geofenceEnter", "critical", "scrapyard"), ("sealOpened", "critical", None),
                   ("sealTampered", "critical", None)]
    # the truck's last fix (in the scrapyard) placed the seals; without it, the site does
    (tmp_path / "gate").mkdir()
    rig2 = Rig(tmp_path / "gate", site=e7(gate), seal_ids=("SEAL-A",))
    rig2.engine.set_plan(rig2.envelope(bundle, kind="fences"), t_ms=T0 - 1000)
    rig2.feed(seal_trace(seal("SEAL-A"), t0_ms=T0, duration_s=120, events=[(60.0, "O")]))
    [opened_at_gate] = rig2.alerts()
    assert opened_at_gate["severity"] == "warning" and opened_at_gate["plan_id"] is None
    assert opened_at_gate["details"]["zones"] == [{"id": "port", "role": "port_area"}]
    assert summary(rig2) == [("sealOpened", "SEAL-A")]
