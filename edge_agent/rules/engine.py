"""The rules engine: a journal consumer that turns readings into alerts, per asset, durably.

It reads committed records from its cursor (never the live source stream) and commits the
alerts it raises together with its per-asset state and the cursor, in one ``journal.append``.
A crash at any point therefore re-evaluates exactly the records whose effects were not
committed, with the state they were evaluated against: a restart neither re-fires an alert nor
forgets an open one, and ids (alerts.alert_id) come out the same.

Because evaluation depends on nothing but the records, state and cursor need committing only
with alerts; otherwise they are checkpointed every ``checkpoint_s`` (or ``checkpoint_records``),
and at stop. A chunk without alerts then costs no fsync and no state upserts (200 seals in a
chunk were 200 upserts), and a crash costs at most that much re-evaluation.

State table keys (JSON values, at most one write per key per checkpoint):

* ``rules/engine``: record clock, last resumption, active plan (digest, seq) and its trip,
  fence bundle, known sensors, the vehicle's last fix.
* ``rules/src/<src>``: one sensor: GNSS/comm health, and for a GPS its vehicle rules
  (route monitor, zones, stop, speed, last fix).
* ``rules/seal/<seal id>``: one e-seal.
* ``rules/plans/<digest>``: signed envelopes, written by ``set_plan`` (plans.py).

Time is record time: the clock is the largest ``t_ms`` seen on any record not written by the
rules themselves; heartbeats (sources/heartbeat.py) keep it moving when no sensor speaks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any

from edge_agent.journal import Draft, Journal, JournalUnwritable, Stored
from edge_agent.rules import plans
from edge_agent.rules.alerts import Alert
from edge_agent.rules.assets import ENGINE_KEY, Assets
from edge_agent.rules.context import ActivePlan, Fix, Place, ZoneLookup, zones_at
from edge_agent.rules.health import DOWN_EVENTS, UP_EVENTS
from edge_agent.rules.params import RuleParams
from edge_agent.rules.records import SRC, Where, alert_draft, unique
from edge_agent.rules.seals import SealContext
from edge_agent.rules.trip import Trip
from edge_agent.rules.vehicle import Vehicle, VehicleContext
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail
from geofences import FenceBundle, TransitPlan, ZoneIndex

log = logging.getLogger(__name__)

CURSOR = "rules"
HEALTH_EVENTS = DOWN_EVENTS | UP_EVENTS | {"gnssLost", "gnssRestored", "jammingSuspected",
                                          "jammingCleared"}
_NEVER = math.inf


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class RulesEngine:
    """All rules for one gateway; ``name``/``position``/``run`` make it an agent consumer.

    ``trusted_keys``: customs public keys (32 raw bytes each) accepted by ``set_plan``.
    ``vehicle``: the vehicle id for alerts when no plan names one. ``gps_sensors``: the GPS
    source ids that belong to the plan's vehicle (default: every GPS). ``site``: (lat_e7,
    lon_e7) of a fixed gateway (a port gate), used to place seal events when no vehicle fix is
    fresh.
    """

    name = CURSOR

    def __init__(self, journal: Journal, *, trusted_keys: Collection[bytes] = (),
                 params: RuleParams | None = None, vehicle: str | None = None,
                 gps_sensors: Collection[str] | None = None,
                 site: tuple[int, int] | None = None, read_chunk: int = 500,
                 checkpoint_s: float = 1.0, checkpoint_records: int = 5000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.trusted_keys = [bytes(k) for k in trusted_keys]
        self.params = params or RuleParams()
        self.vehicle = vehicle
        self.gps_sensors = None if gps_sensors is None else frozenset(gps_sensors)
        self.site = site
        self.read_chunk = read_chunk
        self.checkpoint_s = checkpoint_s
        self.checkpoint_records = checkpoint_records
        self.position = journal.cursor(CURSOR)  # last seq evaluated; saved as the cursor
        self._unsaved = 0  # records evaluated since the last commit of state and cursor
        self._monotonic = monotonic
        self._saved_at = monotonic()
        self.raised: Counter[str] = Counter()
        self.errors = 0
        self.evaluated = 0  # records, this process
        self._tail: JournalTail | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._verified: dict[str, plans.Document] = {}
        self._assets = Assets(journal)
        self._next_due: float = -_NEVER
        self._clock = 0
        self._resumed = 0
        self._plan: ActivePlan | None = None
        self._trip: Trip | None = None
        self._fences: plans.Document | None = None
        self._fences_seq = 0
        self._last_fix: Fix | None = None
        self._announced: dict[str, str] = {}
        self._load()

    # -- public ------------------------------------------------------------------------------

    @property
    def plan(self) -> TransitPlan | None:
        """The plan the rules are applying (as of the records evaluated so far)."""
        plan = self._plan.plan if self._plan is not None else None
        return plan if isinstance(plan, TransitPlan) else None

    @property
    def trip(self) -> Trip | None:
        return self._trip

    def set_plan(self, envelope: bytes, trusted_keys: Collection[bytes] | None = None, *,
                 t_ms: int | None = None, source: str = "<envelope>") -> plans.Document:
        """Verify a signed plan or fence bundle and switch to it (from the next record on).

        Raises ``geofences.SignatureError`` (untrusted or bad signature) or ``GeofenceError``
        (unusable payload) and changes nothing. Loading the document already loaded is a
        no-op. ``trusted_keys`` overrides the constructor's for this call.
        """
        keys = self.trusted_keys if trusted_keys is None else [bytes(k) for k in trusted_keys]
        doc = plans.verify(envelope, keys, source)
        kind = plans.kind_of(doc)
        if self._announced.get(kind) == doc.digest:
            return doc
        self._verified[doc.digest] = doc
        stored = plans.announce(self.journal, doc, envelope, wall_ms() if t_ms is None else t_ms)
        self._announced[kind] = doc.digest
        log.info("rules: %s %s loaded at seq %d (digest %s)", kind,
                 getattr(doc, "plan_id", getattr(doc, "bundle_id", "?")), stored.seq,
                 doc.digest[:16])
        self._notify(stored.seq)
        return doc

    def evaluate(self, records: list[Stored]) -> list[Stored]:
        """Evaluate a run of committed records (the next after ``position``, which moves past
        them); return the alerts raised, committed together with state and cursor. Without
        alerts the commit waits for the checkpoint interval."""
        drafts = self._judge(records)
        return self._save(drafts) if drafts is not None else []

    def _judge(self, records: list[Stored]) -> list[Draft] | None:
        """Evaluate `records`: the drafts to commit now with state and cursor, or None when
        nothing is due before the checkpoint interval."""
        drafts: list[Draft] = []
        for stored in records:
            try:
                drafts += self._record(stored)
            except Exception:  # a rules bug must not stop ingest: skip the record, say so
                self.errors += 1
                log.exception("rules: record seq %d (%s from %s) not evaluated", stored.seq,
                              stored.kind, stored.src)
        drafts = unique(self.journal, drafts, log.warning)
        self.position = records[-1].seq
        self.evaluated += len(records)
        self._unsaved += len(records)
        if (drafts or self._unsaved >= self.checkpoint_records
                or self._monotonic() - self._saved_at >= self.checkpoint_s):
            return drafts
        return None

    def checkpoint(self) -> None:
        """Commit state and cursor if evaluation has run ahead of them (at stop, and for
        tools and tests that want the journal to show everything evaluated)."""
        if self._unsaved:
            self._save([])

    def _save(self, drafts: list[Draft]) -> list[Stored]:
        return self._saved(drafts, self.journal.append(drafts, **self._commit_args()))

    async def _save_off_loop(self, drafts: list[Draft]) -> list[Stored]:
        """_save with the commit (an fsync) in a worker thread: the event loop reads the
        sensors meanwhile. State is taken here, on the loop, where the rules change it."""
        stored = await asyncio.to_thread(self.journal.append, drafts, **self._commit_args())
        return self._saved(drafts, stored)

    def _commit_args(self) -> dict[str, Any]:
        keep = set(self._plan.seal_container) if self._plan is not None else set()
        return {"cursors": {CURSOR: self.position},
                "state": self._assets.state_out(self._engine_state, keep)}

    def _saved(self, drafts: list[Draft], stored: list[Stored]) -> list[Stored]:
        self._unsaved, self._saved_at = 0, self._monotonic()
        self.raised.update(d.body["type"] for d in drafts)
        return stored

    def chase(self) -> list[Stored]:
        """Evaluate everything up to the journal's head now, as the live consumer does
        (checkpointing at its interval); returns the alerts raised."""
        raised: list[Stored] = []
        while records := self.journal.read_after(self.position, self.read_chunk):
            raised += self.evaluate(records)
        return raised

    def catch_up(self) -> list[Stored]:
        """chase(), then checkpoint: for tests and tools."""
        raised = self.chase()
        self.checkpoint()
        return raised

    async def run(self, tail: JournalTail) -> None:
        self._tail, self._loop = tail, asyncio.get_running_loop()
        delay = 0.5
        try:
            while True:
                try:
                    alerts = await self._step(tail)
                except JournalUnwritable as exc:  # a full disk: what was not saved is redone
                    self._reload()
                    log.warning("rules: %s; evaluating again from seq %d once it can be "
                                "written (retry in %.1fs)", exc, self.position, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                delay = 0.5
                if alerts:
                    for alert in alerts:
                        body = alert.record()["body"]
                        log.info("alert seq %d: %s %s", alert.seq, body["severity"],
                                 body["type"])
                    await tail.advanced(alerts[-1].seq)
        finally:
            try:
                self.checkpoint()
            except Exception:  # stopping anyway; the records are re-evaluated on restart
                log.exception("rules: could not save state at stop")

    async def _step(self, tail: JournalTail) -> list[Stored]:
        """Evaluate what the head has beyond the position (or checkpoint when quiet)."""
        if not await tail.wait_beyond(self.position, self.checkpoint_s):
            if self._unsaved:  # quiet: save what was evaluated instead of waiting
                await self._save_off_loop([])
            return []
        records = self.journal.read_after(self.position, self.read_chunk)
        if not records:
            await asyncio.sleep(0.05)
            return []
        drafts = self._judge(records)
        return await self._save_off_loop(drafts) if drafts is not None else []

    def _reload(self) -> None:
        """Forget everything not committed and start again from the journal's state and
        cursor, as a restart would (after a write that failed mid-way)."""
        self.position = self.journal.cursor(CURSOR)
        self._unsaved = 0
        self._saved_at = self._monotonic()
        self._assets = Assets(self.journal)
        self._next_due = -_NEVER
        self._clock = self._resumed = self._fences_seq = 0
        self._plan = self._trip = self._fences = self._last_fix = None
        self._announced = {}
        self._load()

    def stats(self) -> ComponentStats:
        """Records evaluated and alerts raised (this process); fixes ignored (out of order, no
        fix) and records a rule failed on are dropped; alerts by type are events."""
        vehicles = [s.vehicle for s in self._assets.sensors.values() if s.vehicle is not None]
        dropped = {"ignored_out_of_order": sum(v.ignored_out_of_order for v in vehicles),
                   "ignored_no_fix": sum(v.ignored_no_fix for v in vehicles),
                   "errors": self.errors}
        return ComponentStats(added=self.evaluated, written=sum(self.raised.values()),
                              dropped=dropped,
                              events={f"alerts_{k}": v for k, v in self.raised.items()})

    # -- one record ----------------------------------------------------------------------------

    def _record(self, stored: Stored) -> list[Draft]:
        if stored.src == SRC:
            if stored.kind == "status":
                self._switch(stored, stored.body())
            return []
        alerts = self._advance(stored.t_ms, stored.seq)
        kind = stored.kind
        if kind in ("gps", "seal", "status"):
            body = stored.body()
            if kind == "gps":
                alerts += self._gps(stored, body)
            elif kind == "seal":
                alerts += self._seal(stored, body)
            elif body.get("event") in HEALTH_EVENTS:
                sensor = self._assets.sensor(stored.src)
                alerts += sensor.health.status(stored.seq, stored.t_ms, body)
                self._note(sensor.health.due_ms(self._params, self._resumed))
        return [self._draft(a) for a in alerts]

    def _gps(self, stored: Stored, body: Mapping[str, Any]) -> list[Alert]:
        sensor = self._assets.sensor(stored.src)
        if sensor.vehicle is None:
            sensor.vehicle = Vehicle(stored.src)
        fix = sensor.vehicle.accept(stored.seq, stored.t_ms, body)
        alerts = sensor.health.reading(stored.seq, stored.t_ms, fix is not None)
        self._note(sensor.health.due_ms(self._params, self._resumed))
        if fix is None:
            return alerts
        ours = self.gps_sensors is None or stored.src in self.gps_sensors
        in_trip = ours and self._in_trip(fix.t_ms)
        plan = self._plan if in_trip else None
        ctx = VehicleContext(plan, self._params, self._lookups(), self._watched(in_trip))
        alerts += sensor.vehicle.evaluate(fix, ctx)
        if ours:
            self._last_fix = fix
        trip = self._trip
        if (plan is not None and trip is not None and trip.arrived_seq is None
                and sensor.vehicle.zones.reached(f"plan:{plan.plan_id}",
                                                 plan.plan.destination_office)):
            trip.arrive(fix)  # the first fix in the destination office
            self._assets.dirty.add(ENGINE_KEY)
        return alerts

    def _seal(self, stored: Stored, body: Mapping[str, Any]) -> list[Alert]:
        seal_id = body.get("seal_id")
        if not isinstance(seal_id, str):
            seal_id = stored.src
        monitor = self._assets.seal(seal_id)
        plan, trip, t_ms = self._plan, self._trip, stored.t_ms
        released = (plan is not None and trip is not None and not trip.open
                    and seal_id in plan.seal_container)
        ctx = SealContext(plan if self._in_trip(t_ms) else None, released,
                          lambda: self._place(t_ms), self._params)
        alerts = monitor.reading(stored.seq, t_ms, body, ctx)
        for alert in alerts:
            if alert.type == "tripClosed" and trip is not None:
                trip.close(stored.seq, t_ms)
                self._assets.dirty.add(ENGINE_KEY)
        return alerts

    # -- time ----------------------------------------------------------------------------------

    def _advance(self, t_ms: int, seq: int) -> list[Alert]:
        if t_ms > self._clock:
            if self._clock == 0 or t_ms - self._clock > self.params.blackout_ms:
                self._resumed = t_ms
            self._clock = t_ms
            self._assets.dirty.add(ENGINE_KEY)
        if self._clock < self._next_due:
            return []
        return self._tick(seq)

    def _tick(self, seq: int) -> list[Alert]:
        """Fire every timer due at the clock; then find when the next one is due."""
        now, params, resumed = self._clock, self._params, self._resumed
        alerts: list[Alert] = []
        due: float = _NEVER
        for src, sensor in self._assets.sensors.items():
            d = sensor.health.due_ms(params, resumed)
            if d is not None and d <= now:
                alerts += sensor.health.tick(now, seq, params, resumed)
                self._assets.dirty.add(f"rules/src/{src}")
                d = sensor.health.due_ms(params, resumed)
            due = min(due, _NEVER if d is None else d)
        plan, trip = self._plan, self._trip
        if plan is not None and trip is not None and trip.open:
            if self._in_trip(now):
                floor = max(trip.floor_ms(plan), resumed)
                for seal_id in plan.seal_container:
                    monitor = self._assets.seal(seal_id)
                    d = monitor.due_ms(floor, params)
                    if d is not None and d <= now:
                        alerts += monitor.tick(now, seq, floor, plan.seq, params)
                        d = monitor.due_ms(floor, params)
                    due = min(due, _NEVER if d is None else d)
                late = trip.tick(now, seq, self._last_fix)
                if late:
                    alerts += late
                    self._assets.dirty.add(ENGINE_KEY)
                d = trip.due_ms()
                due = min(due, _NEVER if d is None else d)
            else:
                due = min(due, plan.plan.valid_from_ms)
        self._next_due = due
        return alerts

    def _note(self, due: int | None) -> None:
        if due is not None and due < self._next_due:
            self._next_due = due

    # -- context -------------------------------------------------------------------------------

    @property
    def _params(self) -> RuleParams:
        return self._plan.params if self._plan is not None else self.params

    def _in_trip(self, t_ms: int) -> bool:
        return (self._plan is not None and self._trip is not None and self._trip.open
                and self._plan.started(t_ms))

    def _lookups(self) -> list[ZoneLookup]:
        out: list[ZoneLookup] = []
        if self._plan is not None:
            out.append(self._plan.plan.zones)
        if self._fences is not None:
            out.append(self._fences.zones)
        return out

    def _watched(self, in_trip: bool) -> list[tuple[str, ZoneIndex]]:
        out: list[tuple[str, ZoneIndex]] = []
        if in_trip and self._plan is not None:
            out.append((f"plan:{self._plan.plan_id}", self._plan.plan.zones))
        if isinstance(self._fences, FenceBundle):
            out.append((f"fences:{self._fences.bundle_id}", self._fences.zones))
        return out

    def _place(self, t_ms: int) -> Place:
        """Where the vehicle is (a fresh fix), else the gateway's site, else unknown."""
        fix = self._last_fix
        if fix is None or t_ms - fix.t_ms > self._params.position_max_age_ms:
            fix = None if self.site is None else Fix(0, t_ms, *self.site, 1, 0, 0, 0)
        if fix is None:
            return Place(None)
        return Place(fix, zones_at(self._lookups(), fix, t_ms, self._params.zone_margin_m))

    # -- alerts --------------------------------------------------------------------------------

    def _draft(self, a: Alert) -> Draft:
        sensor = self._assets.sensors.get(a.gps or a.key)
        position = None
        if sensor is not None and sensor.vehicle is not None and a.gps:
            position = sensor.vehicle.last
        if position is None:
            position = self._last_fix
        if position is None and self.site is not None:
            position = Fix(0, a.t_ms, *self.site, 1, 0, 0, 0)
        gps_sensor = sensor is not None and sensor.vehicle is not None
        return alert_draft(self.journal.gateway_id, a, Where(
            self._plan, self._trip, self.vehicle, position, gps_sensor))

    # -- plans ---------------------------------------------------------------------------------

    def _switch(self, stored: Stored, body: Mapping[str, Any]) -> None:
        event, digest = body.get("event"), body.get("digest")
        if event not in (plans.PLAN_LOADED, plans.FENCES_LOADED) or not isinstance(digest, str):
            return
        if event == plans.PLAN_LOADED:
            current = self._plan.digest if self._plan is not None else None
        else:
            current = self._fences.digest if self._fences is not None else None
        if digest == current:
            return
        doc = self._verified.get(digest) or plans.reopen(self.journal, digest)
        if doc is None:
            return
        if isinstance(doc, TransitPlan):
            active = ActivePlan.build(doc, stored.seq, self.params)
            self._trip = Trip.start(active, stored.t_ms, self._trip)
            self._plan = active
            for seal_id in active.seal_container:
                self._assets.seal(seal_id)
        else:
            self._fences, self._fences_seq = doc, stored.seq
        self._announced.setdefault(plans.kind_of(doc), digest)
        self._assets.dirty.add(ENGINE_KEY)
        self._next_due = -_NEVER

    def _notify(self, seq: int) -> None:
        tail, loop = self._tail, self._loop
        if tail is None or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(tail.advanced(seq)))

    # -- state ---------------------------------------------------------------------------------

    def _engine_state(self) -> dict[str, Any]:
        d: dict[str, Any] = {"v": 1, "clock": self._clock, "resumed": self._resumed,
                             "sensors": sorted(self._assets.sensors)}
        if self._plan is not None and self._trip is not None:
            d["plan"] = {"digest": self._plan.digest, "seq": self._plan.seq}
            d["trip"] = self._trip.to_dict()
        if self._fences is not None:
            d["fences"] = {"digest": self._fences.digest, "seq": self._fences_seq}
        if self._last_fix is not None:
            d["fix"] = self._last_fix.to_list()
        return d

    def _load(self) -> None:
        saved = self.journal.state(ENGINE_KEY)
        if not saved:
            return
        d = json.loads(saved)
        self._clock, self._resumed = d.get("clock", 0), d.get("resumed", 0)
        self._last_fix = Fix.from_list(d.get("fix"))
        plan_ref = d.get("plan")
        if plan_ref is not None:
            doc = plans.reopen(self.journal, plan_ref["digest"])
            if isinstance(doc, TransitPlan):
                self._plan = ActivePlan.build(doc, plan_ref["seq"], self.params)
                self._trip = Trip.from_dict(d["trip"])
                self._announced["plan"] = doc.digest
                for seal_id in self._plan.seal_container:
                    self._assets.seal(seal_id)
        fences_ref = d.get("fences")
        if fences_ref is not None:
            doc = plans.reopen(self.journal, fences_ref["digest"])
            if doc is not None and not isinstance(doc, TransitPlan):
                self._fences, self._fences_seq = doc, fences_ref["seq"]
                self._announced["fences"] = doc.digest
        for src in d.get("sensors", []):
            self._assets.sensor(src)
        self._assets.dirty.clear()
