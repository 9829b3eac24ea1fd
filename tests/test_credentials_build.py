"""Facts, the credentials built from them, and issuing."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.credentials import ANCHOR, T0, facts_json, record, sample_alert, sample_trip

from customs.credentials import jcs
from customs.credentials.build import alert_credential, trip_credential
from customs.credentials.errors import InputError
from customs.credentials.facts import (
    AlertFact,
    AnchorRef,
    RecordRef,
    SealFact,
    TripFacts,
    facts_from_json,
)
from customs.credentials.issue import issue
from customs.credentials.keys import public_bytes
from customs.credentials.loader import CREDENTIALS_V2, SEALTRAIL_V1, load_context
from customs.credentials.multikey import did_key
from ledger_client.records import canonical

ISSUER = "did:web:customs.example.gov"
CID = "urn:uuid:0b6f3ad4-3c1b-4b36-9a0e-4f7e6f2b9c01"


def _trip() -> dict[str, Any]:
    return trip_credential(sample_trip(), issuer=ISSUER, credential_id=CID,
                           valid_from_ms=T0 + 1_000_000)


def test_the_trip_subject_says_what_customs_vouches_for() -> None:
    cred = _trip()
    assert cred["@context"] == [CREDENTIALS_V2, SEALTRAIL_V1]
    assert cred["type"] == ["VerifiableCredential", "TransitTripCredential"]
    assert (cred["issuer"], cred["id"], cred["validFrom"]) == \
        (ISSUER, CID, "2023-11-14T22:30:00Z")
    s = cred["credentialSubject"]
    assert (s["type"], s["identifier"], s["declarationReference"]) == \
        ("TransportMovement", "PLAN-2024-0042", "24UY000000123456")
    assert s["usedTransportMeans"] == {"type": "LogisticsTransportMeans",
                                       "identifier": "ABC 1234"}
    container = s["transportEquipment"][0]
    assert container["identifier"] == "MSCU1234567"
    sealed, unread = container["affixedSeal"]
    assert (sealed["identifier"], sealed["sealState"]) == ("SEAL-001", "closed")
    assert sealed["gatewayRecord"]["sequence"] == 90
    assert unread == {"type": "Seal", "identifier": "SEAL-002"}
    dep, arr = s["departureEvent"], s["arrivalEvent"]
    assert dep["occurrenceLogisticsLocation"]["identifier"] == "UYMVD01"
    assert dep["actualOccurrenceDateTime"] == "2023-11-14T22:13:20Z"
    assert arr["occurrenceLogisticsLocation"]["identifier"] == "ARBUE02"
    assert arr["actualOccurrenceDateTime"] == "2023-11-14T22:28:20Z"
    assert arr["gatewayRecord"]["sequence"] == 99
    (alert,) = s["alert"]
    assert (alert["identifier"], alert["alertType"], alert["severity"]) == \
        ("6f1c1d7e-5a43-5b57-9d8e-0c2f6f0e4a11", "routeDeviation", "critical")
    assert alert["position"] == {"type": "GeoPositionE7", "latitudeE7": -349_012_345,
                                 "longitudeE7": -562_098_765}
    assert alert["resolution"] == {"type": "AlertResolution", "resolutionState": "resolved",
                                   "reason": "detour ordered by road police",
                                   "officer": "officer-7", "resolvedAt": "2023-11-14T22:16:40Z"}


def test_each_fact_names_its_record_and_anchor() -> None:
    rec = _trip()["credentialSubject"]["alert"][0]["gatewayRecord"]
    assert rec == {"type": "GatewayRecord", "gateway": "gw-truck-7", "sequence": 40,
                   "recordHash": f"{40:064x}",
                   "anchor": {"type": "LedgerAnchor", "chainId": ANCHOR.chain_id,
                              "contract": ANCHOR.contract, "batchSequence": ANCHOR.batch_seq,
                              "blockNumber": ANCHOR.block_number,
                              "transactionHash": ANCHOR.tx_hash}}
    facts = sample_trip()
    unanchored = TripFacts(**{**{f: getattr(facts, f) for f in facts.__dataclass_fields__},
                              "departure_record": record(1, anchored=False)})
    dep = trip_credential(unanchored, issuer=ISSUER, credential_id=CID, valid_from_ms=T0)
    assert "anchor" not in dep["credentialSubject"]["departureEvent"]["gatewayRecord"]


def test_a_trip_not_yet_arrived_names_its_destination_only() -> None:
    facts = sample_trip()
    open_trip = TripFacts(**{**{f: getattr(facts, f) for f in facts.__dataclass_fields__},
                             "arrival_t_ms": None, "arrival_record": None, "alerts": ()})
    s = trip_credential(open_trip, issuer=ISSUER, credential_id=CID,
                        valid_from_ms=T0)["credentialSubject"]
    assert s["arrivalEvent"] == {"type": "TransportEvent", "occurrenceLogisticsLocation": {
        "type": "LogisticsLocation", "identifier": "ARBUE02"}}
    assert s["alert"] == []


def test_the_alert_credential_names_its_plan() -> None:
    cred = alert_credential(sample_alert(resolved=False), plan_id="PLAN-2024-0042",
                            issuer=ISSUER, credential_id=CID, valid_from_ms=T0,
                            valid_until_ms=T0 + 86_400_000)
    s = cred["credentialSubject"]
    assert cred["type"][1] == "TransitAlertCredential"
    assert cred["validUntil"] == "2023-11-15T22:13:20Z"
    assert (s["transitPlanId"], s["type"], s["alertType"]) == \
        ("PLAN-2024-0042", "TransitAlert", "routeDeviation")
    assert "resolution" not in s and s["gatewayRecord"]["sequence"] == 40


def test_our_credentials_are_integer_only_and_canonical_as_records_are() -> None:
    # Integers and ASCII keys only: the record encoder (sorted compact JSON) gives the same
    # bytes as full JCS, so nothing in our credentials depends on the hard parts of RFC 8785.
    cred = _trip()
    assert canonical(cred) == jcs.canonicalize(cred)
    assert not any(isinstance(v, float) for v in _leaves(cred))


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _terms(context: dict[str, Any]) -> set[str]:
    out = set()
    for name, definition in context.items():
        out.add(name)
        if isinstance(definition, dict) and isinstance(definition.get("@context"), dict):
            out |= _terms(definition["@context"])
    return out


def _used(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "@context":
                yield k
                if k == "type":
                    yield from ([v] if isinstance(v, str) else v)
                else:
                    yield from _used(v)
    elif isinstance(value, list):
        for v in value:
            yield from _used(v)


def test_every_term_is_defined_in_the_shipped_contexts() -> None:
    # The Node test expands credentials with jsonld.js in safe mode too; this is the quick
    # check that runs without Node.
    defined = _terms(load_context(CREDENTIALS_V2)["@context"]) | \
        _terms(load_context(SEALTRAIL_V1)["@context"])
    for cred in (_trip(), alert_credential(sample_alert(), plan_id="P", issuer=ISSUER,
                                           credential_id=CID, valid_from_ms=T0)):
        assert set(_used(cred)) - defined == set()


def test_facts_file_round_trip() -> None:
    assert facts_from_json(facts_json()) == sample_trip()
    alert = facts_from_json({"kind": "alert", "plan_id": "PLAN-2024-0042",
                             "alert": facts_json()["alerts"][0]})
    assert alert.alert == sample_alert()  # type: ignore[union-attr]


@pytest.mark.parametrize(("edit", "path"), [
    (lambda d: d["alerts"][0]["record"].update(seq=0), "facts.alerts[0].record: seq"),
    (lambda d: d["alerts"][0]["record"].update(seq=True), "facts.alerts[0].record: seq"),
    (lambda d: d["alerts"][0]["record"].pop("record_hash"),
     "facts.alerts[0].record.record_hash: missing"),
    (lambda d: d["containers"][0]["seals"][0].update(colour="red"),
     "facts.containers[0].seals[0].colour: unknown field"),
    (lambda d: d["containers"][0]["seals"][0].update(state="broken"),
     "facts.containers[0].seals[0]: seal state"),
    (lambda d: d["departure_record"]["anchor"].update(contract="0x12"),
     "facts.departure_record.anchor: contract"),
    (lambda d: d["departure_record"].update(record_hash="F" * 64),
     "facts.departure_record: record_hash"),
    (lambda d: d.update(arrival_t_ms=d["departure_t_ms"] - 1), "facts: arrival_t_ms"),
    (lambda d: d.update(arrival_record=None), "facts: an arrival time"),
    (lambda d: d["alerts"][0].pop("lon_e7"), "facts.alerts[0]: lat_e7 and lon_e7"),
    (lambda d: d["alerts"][0].update(lat_e7=900_000_001), "facts.alerts[0]: lat_e7"),
    (lambda d: d.update(alerts={}), "facts.alerts must be a list"),
    (lambda d: d.update(containers=[]), "facts: a trip has at least one container"),
    (lambda d: d.update(vehicle="two\nlines"), "facts: vehicle"),
    (lambda d: d.update(kind="voyage"), "facts.kind"),
])
def test_facts_errors_name_the_field(edit: Any, path: str) -> None:
    doc = copy.deepcopy(facts_json())
    edit(doc)
    with pytest.raises(InputError) as err:
        facts_from_json(doc)
    assert err.value.message.startswith(path), err.value.message
    assert err.value.code == 2


def test_facts_refuse_what_could_not_be_signed_faithfully() -> None:
    with pytest.raises(ValueError, match="tx_hash"):
        AnchorRef(1, "0x" + "00" * 20, 1, 1, "cd" * 32)
    with pytest.raises(ValueError, match="record_hash"):
        RecordRef("gw", 1, "ab")
    with pytest.raises(ValueError, match="state needs the record"):
        SealFact("S1", "closed")
    with pytest.raises(ValueError, match="t_ms"):
        AlertFact("a", "gnssLost", "warning", 1.5, record(3))  # type: ignore[arg-type]


def test_issue_signs_under_the_issuers_own_method() -> None:
    key = Ed25519PrivateKey.generate()
    mine = did_key(public_bytes(key))
    cred = issue(sample_trip(), key, mine, at_ms=T0 + 1_234)
    assert cred["validFrom"] == cred["proof"]["created"] == "2023-11-14T22:13:21Z"
    assert cred["proof"]["verificationMethod"] == f"{mine}#{mine[len('did:key:'):]}"
    assert cred["id"].startswith("urn:uuid:")
    web = issue(sample_trip(), key, ISSUER, at_ms=T0)
    assert web["proof"]["verificationMethod"] == f"{ISSUER}#{mine[len('did:key:'):]}"
    json.dumps(web)  # plain JSON all the way down


def test_issue_refuses_an_issuer_the_key_cannot_sign_for() -> None:
    key = Ed25519PrivateKey.generate()
    someone_else = did_key(public_bytes(Ed25519PrivateKey.generate()))
    for bad in (someone_else, "did:example:123", "https://customs.example.gov"):
        with pytest.raises(InputError):
            issue(sample_trip(), key, bad, at_ms=T0)
