"""Scenario files: a fleet of trucks, seal readers and seals, and timed events, in TOML.

The schema is documented in ``firmware_sim/README.md``; this module is its single reader. A
scenario is validated completely before anything starts, because a fleet that dies at
t = 540 s on a typo in an event wastes a test run; every error names the file and the key.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.keystore import default_seal_ids
from firmware_sim.motion import SpeedZone, Stop
from firmware_sim.nmea import SENTENCES
from firmware_sim.seal import STATES, check_seal_id
from firmware_sim.tomlcheck import ScenarioError, Table

PACKAGED_SCENARIOS = Path(__file__).resolve().parent / "scenarios"

SEAL_EVENTS = {"seal_open": "O", "seal_tamper": "T", "seal_close": "C"}
TRUCK_EVENTS = ("dropout", "jamming")
PORT_EVENTS = ("garbage", "wrong_baud", "unplug")
AUTH_EVENTS = ("replay", "forge")
EVENT_TYPES = (*SEAL_EVENTS, *TRUCK_EVENTS, *PORT_EVENTS, *AUTH_EVENTS, "clock_skew")


@dataclass(frozen=True, slots=True)
class TruckSpec:
    """A vehicle with a GNSS receiver on its own pty."""

    id: str
    route: Path
    speed_mps: float = 20.0
    rate_hz: float = 1.0
    noise_m: float = 0.0
    sats: int = 12
    hdop: float = 0.8
    talker: str = "GN"
    sentences: tuple[str, ...] = SENTENCES
    stops: tuple[Stop, ...] = ()
    zones: tuple[SpeedZone, ...] = ()
    link: str | None = None


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """A serial e-seal reader: one pty carrying the ``$PSTSL`` sentences of its seals."""

    id: str
    link: str | None = None


@dataclass(frozen=True, slots=True)
class SealSpec:
    """One e-seal; ``via`` is ``"mqtt"`` or the id of the reader that hears it."""

    id: str
    via: str = "mqtt"
    heartbeat_s: float = 60.0
    first_ctr: int = 1
    state: str = "C"
    battery_pct: float = 100.0
    drain_pct_per_h: float = 0.0
    clock_skew_ms: int = 0
    phase_s: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happens at ``t_s`` to each of ``targets`` (ids, globs resolved)."""

    t_s: float
    type: str
    targets: tuple[str, ...]
    index: int
    duration_s: float | None = None
    ramp_s: float = 10.0
    nbytes: int = 64
    skew_ms: int = 0
    state: str | None = None
    ctr: int | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path | None
    name: str
    duration_s: float
    seed: int = 0
    gateway_id: str = "gw-sim"
    start_ms: int | None = None
    trucks: tuple[TruckSpec, ...] = ()
    readers: tuple[ReaderSpec, ...] = ()
    seals: tuple[SealSpec, ...] = ()
    events: tuple[Event, ...] = field(default=())

    @property
    def pty_device_ids(self) -> list[str]:
        return [t.id for t in self.trucks] + [r.id for r in self.readers]


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ``ScenarioError`` names the key and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return parse_scenario(doc, base_dir=path.parent, path=path)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def parse_scenario(doc: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Scenario:
    """Validate an already-parsed TOML document (relative route paths resolve in base_dir)."""
    top = Table(doc, "")
    run = top.table("run")
    duration = run.number("duration_s", positive=True)
    name = run.string("name", path.stem if path else "scenario")
    seed = run.integer("seed", 0)
    gateway_id = run.string("gateway_id", "gw-sim")
    start_ms = _start_ms(run)
    run.done()
    trucks = tuple(_truck(t, base_dir) for t in top.tables("trucks"))
    readers = tuple(_reader(r) for r in top.tables("readers"))
    defaults = top.table("seal_defaults")
    reader_ids = {r.id for r in readers}
    seals = tuple(s for t in top.tables("seals") for s in _seals(t, defaults, reader_ids))
    defaults.done()
    _check_unique(trucks, readers, seals)
    ids = _Ids(trucks, readers, seals)
    events = tuple(_event(e, i, ids, duration) for i, e in enumerate(top.tables("events")))
    top.done()
    return Scenario(
        path, name, duration, seed, gateway_id, start_ms, trucks, readers, seals, events
    )


def _start_ms(run: Table) -> int | None:
    text = run.optional_string("start_utc")
    if text is None:
        return None
    try:
        ts = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise run.fail("start_utc", f"not an ISO 8601 time: {exc}") from None
    if ts.tzinfo is None:
        raise run.fail("start_utc", "needs a time zone, e.g. 2025-03-01T12:00:00Z")
    return int(ts.timestamp() * 1000)


def _truck(t: Table, base_dir: Path) -> TruckSpec:
    truck_id = check_id(t, "id")
    route_name = t.string("route", "demo_truck_route.geojson")
    route = base_dir / route_name
    if not route.exists() and (PACKAGED_SCENARIOS / route_name).exists():
        route = PACKAGED_SCENARIOS / route_name
    if not route.exists():
        raise t.fail("route", f"file not found: {route_name} (looked in {base_dir})")
    sentences = tuple(t.strings("sentences", list(SENTENCES)))
    for s in sentences:
        if s not in SENTENCES:
            raise t.fail("sentences", f"unknown sentence {s!r}; choose from {SENTENCES}")
    talker = t.string("talker", "GN")
    if len(talker) != 2 or not talker.isalpha() or not talker.isupper():
        raise t.fail("talker", f"must be two upper-case letters, got {talker!r}")
    stops = []
    for s in t.tables("stops"):
        stops.append(Stop(s.number("at_m", minimum=0), s.number("duration_s", positive=True)))
        s.done()
    zones = []
    for z in t.tables("speed_zones"):
        zone = SpeedZone(z.number("from_m", minimum=0), z.number("to_m", positive=True),
                         z.number("speed_mps", positive=True))
        if zone.to_m <= zone.from_m:
            raise z.fail("to_m", f"must be greater than from_m ({zone.from_m:g})")
        z.done()
        zones.append(zone)
    spec = TruckSpec(
        id=truck_id,
        route=route,
        speed_mps=t.number("speed_mps", 20.0, positive=True),
        rate_hz=t.number("rate_hz", 1.0, positive=True, maximum=100.0),
        noise_m=t.number("noise_m", 0.0, minimum=0),
        sats=int(t.number("sats", 12, minimum=4, maximum=32)),
        hdop=t.number("hdop", 0.8, positive=True),
        talker=talker,
        sentences=sentences,
        stops=tuple(stops),
        zones=tuple(zones),
        link=t.optional_string("link"),
    )
    t.done()
    return spec


def _reader(r: Table) -> ReaderSpec:
    spec = ReaderSpec(check_id(r, "id"), r.optional_string("link"))
    r.done()
    return spec


_SEAL_KEYS = ("heartbeat_s", "first_ctr", "state", "battery_pct", "drain_pct_per_h",
              "clock_skew_ms", "phase_s", "via")


def _seals(t: Table, defaults: Table, reader_ids: set[str]) -> list[SealSpec]:
    """One ``[[seals]]`` entry: a single ``id`` or a group (``count``, ``prefix``, ``width``)."""
    if t.has("id") and t.has("count"):
        raise t.fail("count", "give either id (one seal) or count (a group), not both")
    if t.has("id"):
        ids = [check_id(t, "id")]
    else:
        count = t.integer("count", minimum=1)
        try:
            ids = default_seal_ids(count, t.string("prefix", "SEAL-"),
                                   t.integer("width", 5, minimum=1))
        except ValueError as exc:
            raise t.fail("prefix", str(exc)) from None

    def pick(key: str) -> Table:
        return t if t.has(key) else defaults

    state = pick("state").string("state", "C")
    if state not in STATES:
        raise pick("state").fail("state", f"must be one of {STATES}, got {state!r}")
    phase = pick("phase_s").raw("phase_s")
    via = pick("via").string("via", "mqtt")
    if via != "mqtt" and via not in reader_ids:
        raise pick("via").fail("via", f"'{via}' is neither \"mqtt\" nor a reader id")
    common = dict(
        via=via,
        heartbeat_s=pick("heartbeat_s").number("heartbeat_s", 60.0, positive=True),
        first_ctr=pick("first_ctr").integer("first_ctr", 1, minimum=1),
        state=state,
        battery_pct=pick("battery_pct").number("battery_pct", 100.0, minimum=0, maximum=100),
        drain_pct_per_h=pick("drain_pct_per_h").number("drain_pct_per_h", 0.0, minimum=0),
        clock_skew_ms=pick("clock_skew_ms").integer("clock_skew_ms", 0),
        phase_s=None if phase is None else pick("phase_s").number("phase_s", minimum=0),
    )
    for key in _SEAL_KEYS:
        t.raw(key)
        defaults.raw(key)
    t.done()
    return [SealSpec(id=seal_id, **common) for seal_id in ids]  # type: ignore[arg-type]


def check_id(t: Table, key: str) -> str:
    value = t.string(key)
    try:
        return check_seal_id(value)
    except ValueError:
        raise t.fail(key, f"ids must match [A-Za-z0-9_-]{{1,32}}, got {value!r}") from None


def _check_unique(trucks: tuple[TruckSpec, ...], readers: tuple[ReaderSpec, ...],
                  seals: tuple[SealSpec, ...]) -> None:
    seen: dict[str, str] = {}
    for kind, items in (("trucks", trucks), ("readers", readers), ("seals", seals)):
        for item in items:
            if item.id in seen:
                raise ScenarioError(f"{kind}: id '{item.id}' is already used in {seen[item.id]}")
            seen[item.id] = kind


@dataclass(frozen=True, slots=True)
class _Ids:
    trucks_: tuple[TruckSpec, ...]
    readers_: tuple[ReaderSpec, ...]
    seals_: tuple[SealSpec, ...]

    @property
    def trucks(self) -> list[str]:
        return [t.id for t in self.trucks_]

    @property
    def readers(self) -> list[str]:
        return [r.id for r in self.readers_]

    @property
    def seals(self) -> list[str]:
        return [s.id for s in self.seals_]


def _event(e: Table, index: int, ids: _Ids, run_s: float) -> Event:
    etype = e.string("type")
    if etype not in EVENT_TYPES:
        raise e.fail("type", f"unknown event type {etype!r}; choose from {', '.join(EVENT_TYPES)}")
    t_s = e.number("t_s", minimum=0)
    if t_s >= run_s:
        raise e.fail("t_s", f"is at or after the end of the run (duration_s = {run_s:g})")
    if etype in SEAL_EVENTS or etype in AUTH_EVENTS:
        allowed, what = ids.seals, "seal"
    elif etype in TRUCK_EVENTS:
        allowed, what = ids.trucks, "truck"
    elif etype in PORT_EVENTS:
        allowed, what = ids.trucks + ids.readers, "truck or reader (a pty device)"
    else:
        allowed, what = ids.trucks + ids.seals, "truck or seal"
    targets = _resolve(e, allowed, what)
    needs_duration = etype in ("dropout", "jamming", "unplug")
    duration = e.number("duration_s", None if needs_duration else 0.0, minimum=0)
    if needs_duration and duration <= 0:
        raise e.fail("duration_s", "must be > 0")
    ramp = e.number("ramp_s", 10.0, minimum=0) if etype == "jamming" else 10.0
    if etype == "jamming" and 2 * ramp >= duration:
        raise e.fail("ramp_s", f"2 * ramp_s must be less than duration_s ({duration:g})")
    nbytes = e.integer("bytes", 64 if etype == "garbage" else 256, minimum=1) if (
        etype in ("garbage", "wrong_baud")) else 0
    skew = e.integer("skew_ms") if etype == "clock_skew" else 0
    state = e.string("state", "C") if etype == "forge" and e.has("state") else None
    if state is not None and state not in STATES:
        raise e.fail("state", f"must be one of {STATES}, got {state!r}")
    ctr = e.integer("ctr", minimum=1) if etype == "replay" and e.has("ctr") else None
    e.done()
    return Event(t_s, etype, targets, index, duration or None, ramp, nbytes, skew, state, ctr)


def _resolve(e: Table, allowed: list[str], what: str) -> tuple[str, ...]:
    """Targets by id or shell-style glob (``MSCU000*``); each must match something."""
    out: list[str] = []
    for pattern in e.strings("target"):
        if any(c in pattern for c in "*?["):
            matched = fnmatch.filter(allowed, pattern)
        else:
            matched = [pattern] if pattern in allowed else []
        if not matched:
            raise e.fail("target", f"'{pattern}' matches no {what}")
        out += [m for m in matched if m not in out]
    return tuple(out)
