"""Transit plans and fence bundles: the documents customs signs, parsed strictly and all at once.

A plan (``sealtrail-plan/1``) says which vehicle carries which sealed containers along which
corridor, where it may stop, between which customs offices and by when. A fence bundle
(``sealtrail-fences/1``) is a set of zones for a port gateway that has no plan. Both are parsed
from the exact bytes customs signed (``digest`` = SHA-256 of those bytes), and either everything
is accepted or ``GeofenceError`` says which field or feature is wrong: a gateway never runs half
a plan. Corridor and zones share one ``LocalProjection`` centred on the bounding box of the whole
plan, so each fix is projected once for every test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from geofences.corridor import Corridor, GeofenceError, _corridor_parts
from geofences.geojson import loads_strict, parse_time_ms
from geofences.projection import E7, LocalProjection
from geofences.zone_parse import parse_zone_collection, project_zone
from geofences.zones import AUTHORIZED_STOP, CUSTOMS_OFFICE, ZoneIndex

PLAN_FORMAT = "sealtrail-plan/1"
FENCES_FORMAT = "sealtrail-fences/1"

_PLAN_FIELDS = {
    "format", "plan_id", "declaration_ref", "vehicle", "containers", "corridor", "zones",
    "departure_office", "destination_office", "authorized_stops", "valid_from", "deadline",
    "limits",
}
_OPTIONAL_PLAN_FIELDS = {"authorized_stops", "limits"}
_FENCE_FIELDS = {"format", "bundle_id", "version", "zones"}
_LIMIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Container:
    container_id: str
    seal_ids: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class TransitPlan:
    """A verified-shape transit plan; ``zones`` and ``corridor`` share ``projection``.

    ``signer`` is the customs public key (hex) when the plan came out of ``open_envelope``.
    """

    plan_id: str
    declaration_ref: str
    vehicle: str
    containers: tuple[Container, ...]
    corridor: Corridor
    zones: ZoneIndex
    departure_office: str
    destination_office: str
    authorized_stops: tuple[str, ...]
    valid_from_ms: int
    deadline_ms: int
    limits: Mapping[str, int]
    digest: str
    payload: bytes = field(repr=False)
    signer: str | None = None

    @property
    def seal_ids(self) -> tuple[str, ...]:
        """Every seal id of every container, in document order."""
        return tuple(s for c in self.containers for s in c.seal_ids)

    @property
    def projection(self) -> LocalProjection:
        return self.corridor.projection

    def container_of(self, seal_id: str) -> str | None:
        """The container a seal belongs to, or None if the plan does not list it."""
        for c in self.containers:
            if seal_id in c.seal_ids:
                return c.container_id
        return None


@dataclass(frozen=True, eq=False)
class FenceBundle:
    """Zones for a gateway without a plan (a port), versioned by customs."""

    bundle_id: str
    version: int
    zones: ZoneIndex
    digest: str
    payload: bytes = field(repr=False)
    signer: str | None = None


def _text(doc: Mapping[str, Any], key: str) -> str:
    v = doc.get(key)
    if not isinstance(v, str) or not v.strip():
        raise GeofenceError(f"field {key!r} must be a non-empty string, got {v!r}")
    return v


def _check_fields(doc: Any, fmt: str, allowed: set[str], optional: set[str]) -> None:
    if not isinstance(doc, dict):
        raise GeofenceError(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != fmt:
        raise GeofenceError(f"format is {doc.get('format')!r}, expected {fmt!r}")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise GeofenceError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    missing = sorted(allowed - optional - set(doc))
    if missing:
        raise GeofenceError(f"missing field(s) {', '.join(map(repr, missing))}")


def _containers(value: Any) -> tuple[Container, ...]:
    if not isinstance(value, list) or not value:
        raise GeofenceError("field 'containers' must be a non-empty list")
    out: list[Container] = []
    seal_owner: dict[str, str] = {}
    for i, c in enumerate(value):
        if not isinstance(c, dict) or set(c) != {"container_id", "seal_ids"}:
            raise GeofenceError(
                f"containers[{i}] must be an object with exactly 'container_id' and 'seal_ids'"
            )
        cid = c["container_id"]
        if not isinstance(cid, str) or not cid.strip():
            raise GeofenceError(f"containers[{i}].container_id must be a non-empty string")
        if any(o.container_id == cid for o in out):
            raise GeofenceError(f"container {cid!r} is listed twice")
        seals = c["seal_ids"]
        if not isinstance(seals, list) or not seals:
            raise GeofenceError(f"container {cid!r}: seal_ids must be a non-empty list")
        for s in seals:
            if not isinstance(s, str) or not s.strip():
                raise GeofenceError(f"container {cid!r}: seal id {s!r} is not a non-empty string")
            if s in seal_owner:
                where = "twice" if seal_owner[s] == cid else f"also on {seal_owner[s]!r}"
                raise GeofenceError(f"seal {s!r} on container {cid!r} is listed {where}")
            seal_owner[s] = cid
        out.append(Container(cid, tuple(seals)))
    return tuple(out)


def _limits(value: Any) -> Mapping[str, int]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise GeofenceError("field 'limits' must be an object of integer rule overrides")
    for k, v in value.items():
        if not _LIMIT_NAME.match(k):
            raise GeofenceError(f"limits: name {k!r} must be snake_case")
        if type(v) is not int or v < 0:
            raise GeofenceError(f"limits.{k} must be an integer >= 0, got {v!r}")
    return MappingProxyType(dict(value))


def _plan(payload: bytes) -> TransitPlan:
    doc = loads_strict(payload, "plan")
    _check_fields(doc, PLAN_FORMAT, _PLAN_FIELDS, _OPTIONAL_PLAN_FIELDS)
    plan_id = _text(doc, "plan_id")
    declaration = _text(doc, "declaration_ref")
    vehicle = _text(doc, "vehicle")
    containers = _containers(doc["containers"])
    valid_from = parse_time_ms(doc["valid_from"], "field 'valid_from'")
    deadline = parse_time_ms(doc["deadline"], "field 'deadline'")
    if deadline <= valid_from:
        raise GeofenceError(
            f"deadline {doc['deadline']!r} is not after valid_from {doc['valid_from']!r}"
        )
    limits = _limits(doc.get("limits"))
    # Geometry: read everything in degrees first, then project with one shared projection.
    cfeat = doc["corridor"]
    cprops = cfeat.get("properties") if isinstance(cfeat, dict) else None
    cid = cprops.get("id") if isinstance(cprops, dict) else None
    clabel = f"corridor {cid!r}" if isinstance(cid, str) else "corridor"
    cid, width, verts = _corridor_parts(cfeat, clabel)
    drafts = parse_zone_collection(doc["zones"])
    pts = [(la / E7, lo / E7) for la, lo in verts]
    pts += [(lat, lon) for d in drafts for lon, lat in d.lonlat_points()]
    proj = LocalProjection.around(pts)
    corridor = Corridor(cid, width, tuple(verts), proj)
    corridor.prepare()  # a plan is loaded to be evaluated fix after fix
    zones = ZoneIndex([project_zone(d, proj) for d in drafts], proj)
    labels = {d.zone_id: d.label for d in drafts}

    def office(key: str, role: str) -> str:
        zid = doc.get(key)
        if not isinstance(zid, str):
            raise GeofenceError(f"field {key!r} must be a zone id (string), got {zid!r}")
        zone = zones.get(zid)
        if zone is None:
            raise GeofenceError(f"{key} {zid!r} is not a zone of this plan")
        if zone.role != role:
            raise GeofenceError(
                f"{key} {zid!r}: {labels[zid]} has role {zone.role!r}, expected {role!r}"
            )
        return zid

    departure = office("departure_office", CUSTOMS_OFFICE)
    destination = office("destination_office", CUSTOMS_OFFICE)
    stops_doc = doc.get("authorized_stops", [])
    if not isinstance(stops_doc, list):
        raise GeofenceError("field 'authorized_stops' must be a list of zone ids")
    stops: list[str] = []
    for i, zid in enumerate(stops_doc):
        zone = zones.get(zid) if isinstance(zid, str) else None
        if zone is None:
            raise GeofenceError(f"authorized_stops[{i}] {zid!r} is not a zone of this plan")
        if zone.role != AUTHORIZED_STOP:
            raise GeofenceError(
                f"authorized_stops[{i}] {zid!r}: {labels[zid]} has role {zone.role!r}, "
                f"expected {AUTHORIZED_STOP!r}"
            )
        if zid in stops:
            raise GeofenceError(f"authorized_stops[{i}] {zid!r} is listed twice")
        stops.append(zid)
    return TransitPlan(
        plan_id=plan_id,
        declaration_ref=declaration,
        vehicle=vehicle,
        containers=containers,
        corridor=corridor,
        zones=zones,
        departure_office=departure,
        destination_office=destination,
        authorized_stops=tuple(stops),
        valid_from_ms=valid_from,
        deadline_ms=deadline,
        limits=limits,
        digest=hashlib.sha256(payload).hexdigest(),
        payload=payload,
    )


def parse_plan(payload: bytes | str, source: str = "<plan>") -> TransitPlan:
    """Parse and validate a plan document; ``GeofenceError("<source>: ...")`` if anything is off.

    ``payload`` is the exact text that was (or will be) signed; ``digest`` is its SHA-256.
    """
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    try:
        return _plan(data)
    except GeofenceError as exc:
        raise GeofenceError(f"{source}: {exc}") from None


def _fences(payload: bytes) -> FenceBundle:
    doc = loads_strict(payload, "fence bundle")
    _check_fields(doc, FENCES_FORMAT, _FENCE_FIELDS, set())
    bundle_id = _text(doc, "bundle_id")
    version = doc["version"]
    if type(version) is not int or version < 1:
        raise GeofenceError(f"field 'version' must be an integer >= 1, got {version!r}")
    drafts = parse_zone_collection(doc["zones"])
    if not drafts:
        raise GeofenceError("a fence bundle needs at least one zone")
    proj = LocalProjection.around([(lat, lon) for d in drafts for lon, lat in d.lonlat_points()])
    zones = ZoneIndex([project_zone(d, proj) for d in drafts], proj)
    return FenceBundle(bundle_id, version, zones, hashlib.sha256(payload).hexdigest(), payload)


def parse_fences(payload: bytes | str, source: str = "<fences>") -> FenceBundle:
    """Parse and validate a fence bundle; ``GeofenceError("<source>: ...")`` if anything is off."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    try:
        return _fences(data)
    except GeofenceError as exc:
        raise GeofenceError(f"{source}: {exc}") from None
