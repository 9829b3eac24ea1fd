"""Per-asset rule state, loaded lazily from the journal's state table and written back dirty.

One key per asset: ``rules/src/<src>`` for a sensor (GNSS/comm health, and a GPS's vehicle
rules), ``rules/seal/<seal id>`` for a seal, plus the engine's own ``rules/engine``. The engine
commits ``state_out()`` with the alerts and the cursor of a chunk, so each touched key is
written at most once per chunk, in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edge_agent.journal import Journal
from edge_agent.rules.health import SensorHealth
from edge_agent.rules.seals import SealMonitor
from edge_agent.rules.vehicle import Vehicle

ENGINE_KEY = "rules/engine"
MAX_SEALS_IN_MEMORY = 10_000
"""A port gateway sees a flow of thousands of seals; their state lives in the journal."""


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Sensor:
    """One source id: health always, vehicle rules once it has sent a GPS reading."""

    __slots__ = ("health", "vehicle")

    def __init__(self, health: SensorHealth, vehicle: Vehicle | None = None) -> None:
        self.health = health
        self.vehicle = vehicle

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"health": self.health.to_dict()}
        if self.vehicle is not None:
            d["vehicle"] = self.vehicle.to_dict()
        return d


class Assets:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.sensors: dict[str, Sensor] = {}
        self.seals: dict[str, SealMonitor] = {}
        self.dirty: set[str] = set()

    def sensor(self, src: str) -> Sensor:
        """The sensor's state (loaded or new), marked for saving."""
        sensor = self.sensors.get(src)
        if sensor is None:
            saved = self.journal.state(f"rules/src/{src}")
            d = json.loads(saved) if saved else {}
            vehicle = Vehicle.from_dict(src, d["vehicle"]) if "vehicle" in d else None
            sensor = Sensor(SensorHealth.from_dict(src, d.get("health", {})), vehicle)
            self.sensors[src] = sensor
            self.dirty.add(ENGINE_KEY)  # the engine lists its sensors
        self.dirty.add(f"rules/src/{src}")
        return sensor

    def seal(self, seal_id: str) -> SealMonitor:
        """The seal's state (loaded or new), marked for saving."""
        monitor = self.seals.get(seal_id)
        if monitor is None:
            saved = self.journal.state(f"rules/seal/{seal_id}")
            monitor = SealMonitor.from_dict(seal_id, json.loads(saved) if saved else {})
            self.seals[seal_id] = monitor
        self.dirty.add(f"rules/seal/{seal_id}")
        return monitor

    def state_out(self, engine_state: Callable[[], dict[str, Any]],
                  keep_seals: set[str]) -> dict[str, str]:
        """Every touched key as JSON, then forget the marks."""
        out: dict[str, str] = {}
        for key in self.dirty:
            if key == ENGINE_KEY:
                out[key] = dumps(engine_state())
            elif key.startswith("rules/src/"):
                out[key] = dumps(self.sensors[key.removeprefix("rules/src/")].to_dict())
            else:
                out[key] = dumps(self.seals[key.removeprefix("rules/seal/")].to_dict())
        self.dirty.clear()
        if len(self.seals) > MAX_SEALS_IN_MEMORY:
            self.seals = {k: v for k, v in self.seals.items() if k in keep_seals}
        return out
