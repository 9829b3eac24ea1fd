"""Trip and alert credentials from facts: unsigned VC Data Model 2.0 documents, pure.

The subject uses UN/CEFACT vocabulary terms where one fits (a trip is a TransportMovement
with a departureEvent and arrivalEvent at LogisticsLocations; containers are
LogisticsTransportEquipment with an affixedSeal), and our context's terms for the rest (the
customs declaration reference, alerts, the record and anchor each fact rests on). Every term
is defined in the two shipped contexts, so a JSON-LD processor in safe mode accepts it.
"""

from __future__ import annotations

from typing import Any

from customs.credentials.dates import xsd_datetime
from customs.credentials.facts import AlertFact, ContainerFact, RecordRef, TripFacts
from customs.credentials.loader import CREDENTIALS_V2, SEALTRAIL_V1

TRIP_TYPE = "TransitTripCredential"
ALERT_TYPE = "TransitAlertCredential"


def trip_credential(facts: TripFacts, *, issuer: str, credential_id: str, valid_from_ms: int,
                    valid_until_ms: int | None = None,
                    status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The unsigned credential for one trip."""
    departure: dict[str, Any] = {
        "type": "TransportEvent", "occurrenceLogisticsLocation": _office(facts.departure_office),
        "actualOccurrenceDateTime": xsd_datetime(facts.departure_t_ms),
        "gatewayRecord": record_json(facts.departure_record)}
    arrival: dict[str, Any] = {
        "type": "TransportEvent",
        "occurrenceLogisticsLocation": _office(facts.destination_office)}
    if facts.arrival_t_ms is not None and facts.arrival_record is not None:
        arrival["actualOccurrenceDateTime"] = xsd_datetime(facts.arrival_t_ms)
        arrival["gatewayRecord"] = record_json(facts.arrival_record)
    subject = {
        "type": "TransportMovement",
        "identifier": facts.plan_id,
        "declarationReference": facts.declaration_ref,
        "usedTransportMeans": {"type": "LogisticsTransportMeans", "identifier": facts.vehicle},
        "transportEquipment": [_container(c) for c in facts.containers],
        "departureEvent": departure,
        "arrivalEvent": arrival,
        "alert": [alert_json(a) for a in facts.alerts],
    }
    return _envelope(TRIP_TYPE, subject, issuer, credential_id, valid_from_ms, valid_until_ms,
                     status)


def alert_credential(alert: AlertFact, *, plan_id: str, issuer: str, credential_id: str,
                     valid_from_ms: int, valid_until_ms: int | None = None,
                     status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The unsigned credential for one alert of trip ``plan_id``."""
    subject = {"transitPlanId": plan_id, **alert_json(alert)}
    return _envelope(ALERT_TYPE, subject, issuer, credential_id, valid_from_ms, valid_until_ms,
                     status)


def _envelope(kind: str, subject: dict[str, Any], issuer: str, credential_id: str,
              valid_from_ms: int, valid_until_ms: int | None,
              status: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": [CREDENTIALS_V2, SEALTRAIL_V1],
        "id": credential_id,
        "type": ["VerifiableCredential", kind],
        "issuer": issuer,
        "validFrom": xsd_datetime(valid_from_ms),
    }
    if valid_until_ms is not None:
        if valid_until_ms < valid_from_ms:
            raise ValueError("validUntil is before validFrom")
        doc["validUntil"] = xsd_datetime(valid_until_ms)
    if status is not None:
        doc["credentialStatus"] = status
    doc["credentialSubject"] = subject
    return doc


def _office(code: str) -> dict[str, Any]:
    return {"type": "LogisticsLocation", "identifier": code}


def _container(container: ContainerFact) -> dict[str, Any]:
    seals = []
    for seal in container.seals:
        item: dict[str, Any] = {"type": "Seal", "identifier": seal.seal_id}
        if seal.state is not None and seal.record is not None:
            item["sealState"] = seal.state
            item["gatewayRecord"] = record_json(seal.record)
        seals.append(item)
    return {"type": "LogisticsTransportEquipment", "identifier": container.container_id,
            "affixedSeal": seals}


def alert_json(alert: AlertFact) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "TransitAlert", "identifier": alert.alert_id, "alertType": alert.type,
        "severity": alert.severity, "actualOccurrenceDateTime": xsd_datetime(alert.t_ms)}
    if alert.lat_e7 is not None:
        out["position"] = {"type": "GeoPositionE7", "latitudeE7": alert.lat_e7,
                           "longitudeE7": alert.lon_e7}
    if alert.resolution is not None:
        r = alert.resolution
        out["resolution"] = {"type": "AlertResolution", "resolutionState": r.state,
                             "reason": r.reason, "officer": r.officer,
                             "resolvedAt": xsd_datetime(r.t_ms)}
    out["gatewayRecord"] = record_json(alert.record)
    return out


def record_json(ref: RecordRef) -> dict[str, Any]:
    """A fact's record, with what ``sealtrail verify`` needs to find and check it on chain."""
    out: dict[str, Any] = {"type": "GatewayRecord", "gateway": ref.gw, "sequence": ref.seq,
                           "recordHash": ref.record_hash}
    if ref.anchor is not None:
        a = ref.anchor
        out["anchor"] = {"type": "LedgerAnchor", "chainId": a.chain_id, "contract": a.contract,
                         "batchSequence": a.batch_seq, "blockNumber": a.block_number,
                         "transactionHash": a.tx_hash}
    return out
