"""A test rig for the rules: firmware_sim traces -> the agent's real decoders -> a real journal
(SQLite in tmp_path) -> the real RulesEngine, on simulated time and without ports.

Everything between the bytes and the alerts is production code: NmeaHandler + GpsStream (bad-fix
filters, GNSS health), SealSentenceHandler + SealAuthenticator (MAC, counters), Journal (signing,
chain, state table), RulesEngine (cursor, state, alerts). Only the clock is simulated: the
sources' clocks read the trace's time, and heartbeats are written every ``heartbeat_s`` of it,
as HeartbeatSource does in the agent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal import Draft, Journal
from edge_agent.rules import RuleParams, RulesEngine
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.serial_gps import NmeaHandler
from edge_agent.sources.serial_seal import SealSentenceHandler
from firmware_sim.route import LonLat, load_linestring
from firmware_sim.seal import Seal
from firmware_sim.trace import TraceItem, point_along
from geofences import sign_envelope
from ledger_client.keys import public_hex

ROOT = Path(__file__).resolve().parents[2]
CORRIDOR_FILE = ROOT / "firmware_sim" / "scenarios" / "demo_corridor.geojson"
CORRIDOR: list[LonLat] = load_linestring(CORRIDOR_FILE)
"""The demo corridor's centre line: 1.28 km NE out of the port of Montevideo, 60 m wide."""
T0 = 1_790_000_000_000
REPLAY = FixFilterParams(max_age_ms=None, max_future_ms=None)  # simulated time, not now
GW = "gw-test"


def iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def circle(zone_id: str, role: str, at: LonLat, radius_m: float, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(at)},
            "properties": {"id": zone_id, "role": role, "radius_m": radius_m, **props}}


def zone_points() -> dict[str, LonLat]:
    """Where the plan's zones are: offices (radius 80 m) at the ends, a fuel stop (radius 30 m)
    50 m right of the centre line at 700 m (its edge 20 m from the line, inside the 60 m
    corridor), a forbidden yard (radius 60 m) 250 m left of it at 600 m."""
    return {"office-dep": CORRIDOR[0], "office-dest": CORRIDOR[-1],
            "stop-fuel": point_along(CORRIDOR, 700, -50), "yard-x": point_along(CORRIDOR, 600, 250)}


def plan_doc(*, plan_id: str = "plan-0001", seals: dict[str, list[str]] | None = None,
             valid_from_ms: int = T0 - 60_000, deadline_ms: int = T0 + 3_600_000,
             limits: dict[str, int] | None = None, width_m: int = 60) -> dict[str, Any]:
    """A transit plan on the demo corridor (see zone_points), signed by tests at run time."""
    pts = zone_points()
    zones = [circle("office-dep", "customs_office", pts["office-dep"], 80, name="Puerto"),
             circle("office-dest", "customs_office", pts["office-dest"], 80, name="Destino"),
             circle("stop-fuel", "authorized_stop", pts["stop-fuel"], 30),
             circle("yard-x", "forbidden", pts["yard-x"], 60)]
    seals = seals if seals is not None else {"MSCU1234567": ["SEAL-A"],
                                             "TGHU7654321": ["SEAL-B"]}
    doc: dict[str, Any] = {
        "format": "sealtrail-plan/1", "plan_id": plan_id, "declaration_ref": "DUA-2026-0001",
        "vehicle": "truck-SBX-1234",
        "containers": [{"container_id": c, "seal_ids": s} for c, s in seals.items()],
        "corridor": {"type": "Feature",
                     "geometry": {"type": "LineString", "coordinates": [list(p) for p in CORRIDOR]},
                     "properties": {"id": "corridor-mvd-01", "width_m": width_m}},
        "zones": {"type": "FeatureCollection", "features": zones},
        "departure_office": "office-dep", "destination_office": "office-dest",
        "authorized_stops": ["stop-fuel"],
        "valid_from": iso(valid_from_ms), "deadline": iso(deadline_ms),
    }
    if limits:
        doc["limits"] = limits
    return doc


def seal_key(seal_id: str) -> bytes:
    return (seal_id.encode() * 32)[:32]


def seal(seal_id: str, t0_ms: int = T0, **kw: Any) -> Seal:
    return Seal(seal_id, seal_key(seal_id), t0_ms=t0_ms, **kw)


class Rig:
    """One gateway: journal + sources' decoders + rules, fed from traces (see module doc)."""

    def __init__(self, tmp_path: Path, *, params: RuleParams | None = None,
                 seal_ids: Sequence[str] = ("SEAL-A", "SEAL-B", "SEAL-X"),
                 heartbeat_s: float | None = 10.0, site: tuple[int, int] | None = None,
                 saves_only_alerts: bool = False) -> None:
        """``saves_only_alerts``: the engine commits state and cursor only with alerts (its
        checkpoint interval never comes), so a restart re-evaluates everything since the last
        alert; otherwise every evaluation ends with a checkpoint (catch_up)."""
        self.path = tmp_path / "journal.db"
        self.key = Ed25519PrivateKey.generate()
        self.customs = Ed25519PrivateKey.generate()
        self.trusted = [bytes.fromhex(public_hex(self.customs))]
        self.params = params
        self.site = site
        self.saves_only_alerts = saves_only_alerts
        self.seal_keys = {s: seal_key(s) for s in seal_ids}
        self.heartbeat_s = heartbeat_s
        self.now = T0
        self.last_beat: int | None = None
        self._open()

    def _open(self) -> None:
        self.journal = Journal(self.path, gateway_id=GW, key=self.key)
        never = {"checkpoint_s": math.inf, "checkpoint_records": 2**62}
        self.engine = RulesEngine(self.journal, trusted_keys=self.trusted, params=self.params,
                                  site=self.site, **(never if self.saves_only_alerts else {}))
        self.auth = SealAuthenticator(self.journal, self.seal_keys, clock=lambda: self.now,
                                      monotonic=lambda: self.now / 1000)
        self.gps: dict[str, NmeaHandler] = {}
        self.readers: dict[str, SealSentenceHandler] = {}

    def restart(self, at_ms: int | None = None) -> None:
        """Power cut and reboot: everything in memory is lost, the journal file stays.
        ``at_ms``: when the agent is back (no heartbeats in between)."""
        self.journal.close()
        if at_ms is not None:
            self.now, self.last_beat = at_ms, None
        self._open()

    def close(self) -> None:
        self.journal.close()

    # -- plans ---------------------------------------------------------------------------------

    @staticmethod
    def payload(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, indent=1).encode()

    def envelope(self, doc: dict[str, Any], key: Ed25519PrivateKey | None = None,
                 kind: str = "plan") -> bytes:
        return sign_envelope(kind, self.payload(doc), key or self.customs)

    def load_plan(self, doc: dict[str, Any], t_ms: int | None = None) -> Any:
        return self.engine.set_plan(self.envelope(doc), t_ms=self.now if t_ms is None else t_ms)

    # -- feeding -------------------------------------------------------------------------------

    def _drafts(self, item: TraceItem) -> list[Draft]:
        out: list[Draft] = []
        if item.kind == "nmea":
            handler = self.gps.get(item.device)
            if handler is None:
                stream = GpsStream(item.device, REPLAY, clock=lambda: self.now)
                handler = self.gps[item.device] = NmeaHandler(stream)
            for line in item.lines():
                out += handler.handle(line)  # type: ignore[arg-type]
        elif item.kind == "seal":
            reader = self.readers.get(item.device)
            if reader is None:
                reader = self.readers[item.device] = SealSentenceHandler(
                    self.auth, f"serial:{item.device}")
            for line in item.lines():
                out += reader.handle(line)  # type: ignore[arg-type]
        return out

    def beats(self, until_ms: int) -> list[Draft]:
        """Heartbeats due up to ``until_ms`` (the agent's clock is the trace's)."""
        if self.heartbeat_s is None:
            return []
        step = round(self.heartbeat_s * 1000)
        nxt = self.now if self.last_beat is None else self.last_beat + step
        out = []
        while nxt <= until_ms:
            out.append(Draft(nxt, "status", "agent", {"event": "heartbeat"}))
            self.last_beat = nxt
            nxt += step
        return out

    def feed(self, items: Iterable[TraceItem], *, until_ms: int | None = None,
             every: int = 25, evaluate: bool = True) -> list[dict[str, Any]]:
        """Decode, journal and (unless ``evaluate`` is False) evaluate the items in order;
        the rules run after every ``every`` items, as the live agent's rules chase the head.
        Returns the bodies of the alerts raised."""
        raised: list[dict[str, Any]] = []
        pending: list[Draft] = []
        for count, item in enumerate(items, start=1):
            pending += self.beats(item.t_ms - 1)
            self.now = item.t_ms
            pending += self._drafts(item)
            if count % every == 0:
                raised += self._commit(pending, evaluate)
                pending = []
        if until_ms is not None:
            pending += self.beats(until_ms)
            self.now = max(self.now, until_ms)
        raised += self._commit(pending, evaluate)
        return raised

    def idle(self, until_ms: int) -> list[dict[str, Any]]:
        """Nothing but heartbeats until ``until_ms``."""
        return self.feed([], until_ms=until_ms)

    def _commit(self, drafts: list[Draft], evaluate: bool) -> list[dict[str, Any]]:
        if drafts:
            self.journal.append(drafts)
        if not evaluate:
            return []
        raised = self.engine.chase() if self.saves_only_alerts else self.engine.catch_up()
        return [s.record()["body"] for s in raised]

    def status(self, src: str, body: dict[str, Any], t_ms: int | None = None) -> None:
        """A status record as a source would emit it (e.g. sensorDisconnected)."""
        self.now = max(self.now, t_ms or self.now)
        self.journal.append([*self.beats(self.now - 1), Draft(self.now, "status", src, body)])

    # -- looking -------------------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Bodies of the rules' alerts, each with its record's ``seq`` and ``t_ms`` added."""
        return [{**s.record()["body"], "seq": s.seq, "t_ms": s.t_ms}
                for s in self.journal.alerts_after(0, 100_000) if s.src == "rules"]

    def types(self) -> list[str]:
        return [a["type"] for a in self.alerts()]

    def reading(self, seq: int) -> dict[str, Any]:
        stored = self.journal.get(seq)
        assert stored is not None, f"no record {seq}"
        return stored.record()


def duration_ms(items: Sequence[TraceItem]) -> int:
    return items[-1].t_ms - items[0].t_ms if items else 0


def e7(point: LonLat) -> tuple[int, int]:
    """(lat_e7, lon_e7) of a (lon, lat) position."""
    return round(point[1] * 1e7), round(point[0] * 1e7)

