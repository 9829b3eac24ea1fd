"""What customs vouches for, as plain frozen values, and their JSON form (the ``--facts`` file).

The store (the lead's side) fills these from its tables; the builders in ``build.py`` turn
them into credential subjects. Every fact rests on a record: a gateway reading or alert, or
an entry of the customs audit chain (same record format, ``kind: "audit"``), named by
gateway id, seq and record hash, with the anchor of its Merkle batch once it has one. A
verifier that does not take customs' word for it checks that record with ``sealtrail
verify``. Numbers are integers, as in the records: times in Unix ms, positions in degrees x
1e7. Validation happens at construction, so a malformed fact never reaches a signature.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from customs.credentials.errors import InputError

MAX_SAFE_INT = 2**53 - 1
SEAL_STATES = ("closed", "opened", "tampered", "missing")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _text(value: Any, name: str) -> None:
    if (not isinstance(value, str) or not value.strip() or len(value) > 256
            or any(ord(c) < 0x20 for c in value)):
        raise ValueError(f"{name} must be a non-empty single-line string of at most 256 "
                         f"characters, got {value!r:.60}")


def _int(value: Any, name: str, low: int = -MAX_SAFE_INT, high: int = MAX_SAFE_INT) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r:.40}")


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Where the record's Merkle batch root is anchored."""

    chain_id: int
    contract: str
    batch_seq: int
    block_number: int
    tx_hash: str

    def __post_init__(self) -> None:
        _int(self.chain_id, "chain_id", 1)
        _int(self.batch_seq, "batch_seq", 0)
        _int(self.block_number, "block_number", 0)
        if not isinstance(self.contract, str) or not _ADDRESS.match(self.contract):
            raise ValueError(f"contract must be a 0x-prefixed address, got {self.contract!r:.60}")
        if not isinstance(self.tx_hash, str) or not _TX.match(self.tx_hash):
            raise ValueError(f"tx_hash must be 0x and 64 hex digits, got {self.tx_hash!r:.80}")


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A signed record: gateway (or customs audit chain) id, seq, SHA-256 of its signed bytes."""

    gw: str
    seq: int
    record_hash: str
    anchor: AnchorRef | None = None

    def __post_init__(self) -> None:
        _text(self.gw, "gw")
        _int(self.seq, "seq", 1)
        if not isinstance(self.record_hash, str) or not _HASH.match(self.record_hash):
            raise ValueError(f"record_hash must be 64 lowercase hex digits, got "
                             f"{self.record_hash!r:.80}")


@dataclass(frozen=True, slots=True)
class SealFact:
    """A seal of a container; ``state`` is what its last reading said, resting on ``record``."""

    seal_id: str
    state: str | None = None
    record: RecordRef | None = None

    def __post_init__(self) -> None:
        _text(self.seal_id, "seal_id")
        if self.state is not None and self.state not in SEAL_STATES:
            raise ValueError(f"seal state must be one of {', '.join(SEAL_STATES)}, "
                             f"got {self.state!r:.40}")
        if (self.state is None) != (self.record is None):
            raise ValueError(f"seal {self.seal_id}: a state needs the record it comes from, "
                             "and a record a state")


@dataclass(frozen=True, slots=True)
class ContainerFact:
    container_id: str
    seals: tuple[SealFact, ...]

    def __post_init__(self) -> None:
        _text(self.container_id, "container_id")
        if not self.seals:
            raise ValueError(f"container {self.container_id} has no seals")


@dataclass(frozen=True, slots=True)
class Resolution:
    """How an officer closed an alert."""

    state: str
    reason: str
    officer: str
    t_ms: int

    def __post_init__(self) -> None:
        for name in ("state", "reason", "officer"):
            _text(getattr(self, name), name)
        _int(self.t_ms, "t_ms")


@dataclass(frozen=True, slots=True)
class AlertFact:
    """An alert as raised by the gateway (its record) and, if so, as resolved by customs."""

    alert_id: str
    type: str
    severity: str
    t_ms: int
    record: RecordRef
    lat_e7: int | None = None
    lon_e7: int | None = None
    resolution: Resolution | None = None

    def __post_init__(self) -> None:
        for name in ("alert_id", "type", "severity"):
            _text(getattr(self, name), name)
        _int(self.t_ms, "t_ms")
        if not isinstance(self.record, RecordRef):
            raise ValueError("an alert needs the record that raised it")
        if (self.lat_e7 is None) != (self.lon_e7 is None):
            raise ValueError("lat_e7 and lon_e7 come together or not at all")
        if self.lat_e7 is not None:
            _int(self.lat_e7, "lat_e7", -900_000_000, 900_000_000)
            _int(self.lon_e7, "lon_e7", -1_800_000_000, 1_800_000_000)


@dataclass(frozen=True, slots=True)
class TripFacts:
    """One transit trip: the plan's parties and seals, departure, arrival (if it has
    arrived), and the alerts raised on the way."""

    plan_id: str
    declaration_ref: str
    vehicle: str
    containers: tuple[ContainerFact, ...]
    departure_office: str
    destination_office: str
    departure_t_ms: int
    departure_record: RecordRef
    arrival_t_ms: int | None = None
    arrival_record: RecordRef | None = None
    alerts: tuple[AlertFact, ...] = ()

    def __post_init__(self) -> None:
        for name in ("plan_id", "declaration_ref", "vehicle", "departure_office",
                     "destination_office"):
            _text(getattr(self, name), name)
        if not self.containers:
            raise ValueError("a trip has at least one container")
        _int(self.departure_t_ms, "departure_t_ms")
        if (self.arrival_t_ms is None) != (self.arrival_record is None):
            raise ValueError("an arrival time needs the record it comes from, and back")
        if self.arrival_t_ms is not None:
            _int(self.arrival_t_ms, "arrival_t_ms", self.departure_t_ms)


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """One alert of one trip, attested on its own (e.g. as soon as it is resolved)."""

    plan_id: str
    alert: AlertFact

    def __post_init__(self) -> None:
        _text(self.plan_id, "plan_id")


def facts_from_json(doc: Any) -> TripFacts | AlertFacts:
    """The facts of a ``--facts`` file: ``{"kind": "trip", ...}`` or ``{"kind": "alert",
    "plan_id": ..., "alert": {...}}`` with the fields of the dataclasses above. InputError
    names the first field that is wrong, as a path (``alerts[1].record.seq``)."""
    obj = _obj(doc, "facts")
    kind = obj.get("kind")
    if kind == "trip":
        return _make(TripFacts, obj, "facts", {
            "containers": lambda v, p: tuple(_container(c, f"{p}[{i}]")
                                             for i, c in enumerate(_list(v, p))),
            "departure_record": _record, "arrival_record": _record,
            "alerts": lambda v, p: tuple(_alert(a, f"{p}[{i}]") for i, a in enumerate(_list(v, p))),
        }, skip={"kind"})
    if kind == "alert":
        return _make(AlertFacts, obj, "facts", {"alert": _alert}, skip={"kind"})
    raise InputError(f"facts.kind must be \"trip\" or \"alert\", got {kind!r:.40}")


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{path} must be a JSON object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{path} must be a list")
    return value


def _make(cls: Any, value: Any, path: str, nested: Mapping[str, Any],
          skip: frozenset[str] | set[str] = frozenset()) -> Any:
    obj = _obj(value, path)
    fields = dataclasses.fields(cls)
    unknown = sorted(set(obj) - {f.name for f in fields} - set(skip))
    if unknown:
        raise InputError(f"{path}.{unknown[0]}: unknown field")
    for f in fields:
        if f.default is dataclasses.MISSING and f.name not in obj:
            raise InputError(f"{path}.{f.name}: missing")
    kwargs = {}
    for name, item in obj.items():
        if name in skip:
            continue
        convert = nested.get(name)
        kwargs[name] = (convert(item, f"{path}.{name}")
                        if convert is not None and item is not None else item)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _anchor(value: Any, path: str) -> AnchorRef:
    result: AnchorRef = _make(AnchorRef, value, path, {})
    return result


def _record(value: Any, path: str) -> RecordRef:
    result: RecordRef = _make(RecordRef, value, path, {"anchor": _anchor})
    return result


def _seal(value: Any, path: str) -> SealFact:
    result: SealFact = _make(SealFact, value, path, {"record": _record})
    return result


def _container(value: Any, path: str) -> ContainerFact:
    result: ContainerFact = _make(ContainerFact, value, path, {
        "seals": lambda v, p: tuple(_seal(s, f"{p}[{i}]") for i, s in enumerate(_list(v, p)))})
    return result


def _alert(value: Any, path: str) -> AlertFact:
    result: AlertFact = _make(AlertFact, value, path, {
        "record": _record,
        "resolution": lambda v, p: _make(Resolution, v, p, {})})
    return result
