"""The fleet runner: every device of a scenario on one simulated clock and one event loop.

All device actions (GPS epochs, seal heartbeats, scenario events) go through one time-ordered
queue keyed by (time, priority, declaration order), so the order of actions, and therefore
every byte, depends only on the scenario, the seed and the start time, never on scheduling.
Fast mode runs the queue as fast as the ports and the broker absorb it; real time paces it
on the monotonic clock.

A few thousand devices cost a few thousand small objects and sockets, never a thread each:
ports are non-blocking fds on the loop, MQTT clients are aiomqtt clients on the same loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim import faults
from firmware_sim.devices import GpsDevice, SealDevice
from firmware_sim.keystore import derive_key, forger_key, read_counters, write_counters
from firmware_sim.mqttpool import MqttPool, default_connections
from firmware_sim.ptyport import PtyPort
from firmware_sim.scenario import SEAL_EVENTS, Event, Scenario
from firmware_sim.seal import SealMessage
from firmware_sim.tomlcheck import ScenarioError

SUMMARY_FORMAT = "sealtrail-sim-summary/1"
Action = Callable[[int], Awaitable[None]]


@dataclass
class FleetOptions:
    """How to run a scenario; ``None`` means "what the scenario says"."""

    seed: int | None = None
    fast: bool = True
    t0_ms: int | None = None
    duration_s: float | None = None
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    gateway_id: str | None = None
    mqtt_connections: int | None = None
    pty_dir: Path | None = None
    wait_readers: bool = False
    counters_file: Path | None = None
    keys: dict[str, bytes] | None = None
    progress_s: float = 5.0
    drain_timeout_s: float = 10.0
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))
    on_event: Callable[[dict[str, Any]], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class Fleet:
    """Build with a validated scenario; ``await run()`` returns the summary dict."""

    def __init__(self, scenario: Scenario, options: FleetOptions) -> None:
        self.sc = scenario
        self.opt = options
        self.seed = options.seed if options.seed is not None else scenario.seed
        self.duration_s = options.duration_s or scenario.duration_s
        self.end_ms = round(self.duration_s * 1000)
        self.gateway_id = options.gateway_id or scenario.gateway_id
        if options.fast:
            t0 = options.t0_ms if options.t0_ms is not None else scenario.start_ms
        else:
            t0 = None
        self.t0_ms = t0 if t0 is not None else (time.time_ns() // 1_000_000_000) * 1000
        self._heap: list[tuple[int, int, int, int, Action]] = []
        self._seq = itertools.count()
        self.ports: dict[str, PtyPort] = {}
        self.gps: dict[str, GpsDevice] = {}
        self.seals: dict[str, SealDevice] = {}
        self.mqtt: MqttPool | None = None
        self._mqtt_index: dict[str, int] = {}
        self._port_log: dict[str, list[dict[str, Any]]] = {}
        self._rngs: dict[str, random.Random] = {}
        self.sim_ms = 0
        self._next_progress = 0.0
        self._build()

    # ---- construction -------------------------------------------------------------------

    def _build(self) -> None:
        sc, seed = self.sc, self.seed
        for truck in sc.trucks:
            try:
                self.gps[truck.id] = GpsDevice(truck, seed, faults.truck_conditions(sc.events,
                                                                                    truck.id))
            except (OSError, ValueError) as exc:
                raise ScenarioError(f"trucks '{truck.id}': {exc}") from exc
        counters = read_counters(self.opt.counters_file) if self.opt.counters_file else {}
        keys = self.opt.keys
        mqtt_ids = [s.id for s in sc.seals if s.via == "mqtt"]
        if mqtt_ids and not self.opt.mqtt_host:
            raise ScenarioError(f"{len(mqtt_ids)} seals use MQTT: give an MQTT host")
        for spec in sc.seals:
            if keys is not None and spec.id not in keys:
                raise ScenarioError(f"seals '{spec.id}': no key in the keystore")
            key = keys[spec.id] if keys is not None else derive_key(seed, spec.id)
            ctr = max(counters.get(spec.id, 0), spec.first_ctr - 1)
            self.seals[spec.id] = SealDevice(
                spec, key, seed=seed, t0_ms=self.t0_ms, ctr=ctr,
                skews=faults.seal_skews(sc.events, spec.id), forger_key=forger_key(seed, spec.id),
            )
        if mqtt_ids:
            n = self.opt.mqtt_connections or default_connections(len(mqtt_ids))
            self._mqtt_conn_count = min(n, len(mqtt_ids))
            self._mqtt_index = {sid: i % self._mqtt_conn_count for i, sid in enumerate(mqtt_ids)}
        self._mqtt_ids = mqtt_ids

    def _open_ports(self) -> None:
        for dev_id in self.sc.pty_device_ids:
            link = self._link_for(dev_id)
            port = PtyPort(dev_id, link, fast=self.opt.fast)
            port.log = lambda m, d=dev_id: self.opt.log(f"[{d}] {m}")
            self.ports[dev_id] = port
            self._port_log[dev_id] = []

    def _link_for(self, dev_id: str) -> Path | None:
        spec_link = next((t.link for t in self.sc.trucks if t.id == dev_id), None) or next(
            (r.link for r in self.sc.readers if r.id == dev_id), None)
        if spec_link:
            return Path(spec_link)
        return self.opt.pty_dir / dev_id if self.opt.pty_dir is not None else None

    def _rng(self, name: str) -> random.Random:
        if name not in self._rngs:
            self._rngs[name] = random.Random(f"{self.seed}:{name}:faults")
        return self._rngs[name]

    # ---- scheduling ---------------------------------------------------------------------

    def _at(self, t_ms: int, prio: int, order: int, action: Action) -> None:
        if t_ms < self.end_ms:
            heapq.heappush(self._heap, (t_ms, prio, order, next(self._seq), action))

    def _schedule_all(self) -> None:
        for i, dev in enumerate(self.gps.values()):
            self._at(0, 2, i, self._gps_action(dev, i, 0))
        for i, seal in enumerate(self.seals.values()):
            self._at(seal.heartbeat_due_ms(0), 1, i, self._heartbeat_action(seal, i, 0))
        for event in self.sc.events:
            if event.type in ("dropout", "jamming", "clock_skew"):
                continue  # conditions, applied when the devices were built
            for target in event.targets:
                self._at(round(event.t_s * 1000), 0, event.index,
                         self._event_action(event, target))

    def _gps_action(self, dev: GpsDevice, order: int, k: int) -> Action:
        async def act(t_ms: int) -> None:
            data = dev.epoch(k, self.t0_ms)
            if not await self.ports[dev.spec.id].write(data, self.opt.stop.is_set):
                dev.lost_epochs += 1
            self._at(dev.due_ms(k + 1), 2, order, self._gps_action(dev, order, k + 1))
        return act

    def _heartbeat_action(self, seal: SealDevice, order: int, n: int) -> Action:
        async def act(t_ms: int) -> None:
            await self._send(seal, "genuine", seal.genuine(t_ms))
            self._at(seal.heartbeat_due_ms(n + 1), 1, order,
                     self._heartbeat_action(seal, order, n + 1))
        return act

    def _event_action(self, event: Event, target: str) -> Action:
        async def act(t_ms: int) -> None:
            await self._apply(event, target, t_ms)
        return act

    async def _apply(self, e: Event, target: str, t_ms: int) -> None:
        if e.type in SEAL_EVENTS:
            seal = self.seals[target]
            await self._send(seal, "genuine", seal.genuine(t_ms, SEAL_EVENTS[e.type]))
        elif e.type == "replay":
            seal = self.seals[target]
            msg = seal.replay(e.ctr)
            if msg is None:
                seal.log.skipped.append(f"replay at {t_ms} ms: no earlier message heard")
            else:
                await self._send(seal, "replay", msg)
        elif e.type == "forge":
            seal = self.seals[target]
            await self._send(seal, "forged", seal.forged(t_ms, e.state))
        elif e.type in ("garbage", "wrong_baud"):
            rng = self._rng(target)
            make = faults.garbage if e.type == "garbage" else faults.wrong_baud
            ok = await self.ports[target].write(make(rng, e.nbytes), self.opt.stop.is_set)
            self._port_log[target].append(
                {"t_ms": t_ms, "type": e.type, "bytes": e.nbytes + 2, "delivered": ok})
        elif e.type == "unplug":
            await self._unplug(target, t_ms, e.duration_s or 0.0)

    async def _unplug(self, target: str, t_ms: int, duration_s: float) -> None:
        port = self.ports[target]
        if self.opt.fast:
            await port.drain(self.opt.drain_timeout_s)
        info = {"t_ms": t_ms, "type": "unplug", **port.unplug(),
                "until_ms": t_ms + round(duration_s * 1000)}
        self._port_log[target].append(info)
        self._notify({"type": "unplug", "device": target, **info})

        async def replug(at_ms: int) -> None:
            new = port.replug()
            info.update(new)
            self._notify({"type": "replug", "device": target, "t_ms": at_ms, **new,
                          "path": port.path})
        self._at(info["until_ms"], 0, -1, replug)

    async def _send(self, seal: SealDevice, kind: str, msg: SealMessage) -> None:
        if seal.spec.via == "mqtt":
            assert self.mqtt is not None
            payload = msg.json_payload()
            seal.note_payload(payload)
            topic = f"sealtrail/v1/{self.gateway_id}/sensors/{seal.spec.id}"
            await self.mqtt.publish(self._mqtt_index[seal.spec.id], topic, payload,
                                    lambda ok: seal.record(kind, msg, ok))
        else:
            ok = await self.ports[seal.spec.via].write(msg.sentence(), self.opt.stop.is_set)
            seal.record(kind, msg, ok)

    def _notify(self, event: dict[str, Any]) -> None:
        if self.opt.on_event is not None:
            self.opt.on_event(event)

    # ---- running ------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Run the scenario to its end (or until ``options.stop``); returns the summary."""
        started = time.monotonic()
        try:
            self._open_ports()
            if self._mqtt_ids:
                assert self.opt.mqtt_host is not None
                self.mqtt = MqttPool(self.opt.mqtt_host, self.opt.mqtt_port,
                                     self._mqtt_conn_count,
                                     client_id_prefix=f"sim-{self.gateway_id}")
                own = self._mqtt_conn_count == len(self._mqtt_ids)
                await self.mqtt.connect(self._mqtt_ids if own else None)
                self.opt.log(f"[fleet] {self._mqtt_conn_count} MQTT connections to "
                             f"{self.opt.mqtt_host}:{self.opt.mqtt_port} "
                             f"in {time.monotonic() - started:.1f} s")
            self._notify({"type": "ready",
                          "ports": {d: p.path for d, p in self.ports.items()}})
            if self.opt.fast or self.opt.wait_readers:
                for port in self.ports.values():
                    await port.wait_reader(self.opt.stop.is_set)
            if not self.opt.fast:  # t = 0 is now: stamps follow the wall clock from here
                self.t0_ms = time.time_ns() // 1_000_000
                for seal in self.seals.values():
                    seal.rebase(self.t0_ms)
            self._schedule_all()
            await self._loop(time.monotonic(), started)
            await self._finish()
        finally:
            for port in self.ports.values():
                port.close()
            if self.mqtt is not None:
                await self.mqtt.close()
        if self.opt.counters_file is not None:
            write_counters(self.opt.counters_file, {s: d.seal.ctr for s, d in self.seals.items()})
        summary = self.summary(time.monotonic() - started)
        self._notify({"type": "done"})
        return summary

    async def _loop(self, t_zero: float, started: float) -> None:
        """Run actions in time order; ``t_zero`` is the monotonic time of simulated t = 0."""
        stop = self.opt.stop
        self._next_progress = time.monotonic() + self.opt.progress_s
        steps = 0
        while self._heap and not stop.is_set():
            t_ms, _prio, _order, _seq, action = heapq.heappop(self._heap)
            if not self.opt.fast:
                await self._pace(t_zero + t_ms / 1000, started)
                if stop.is_set():
                    break
            self.sim_ms = t_ms
            await action(t_ms)
            steps += 1
            if steps % 256 == 0:
                await asyncio.sleep(0)  # let sockets and acks move in fast mode
            self._maybe_progress(started)
        if not stop.is_set():
            self.sim_ms = self.end_ms

    async def _pace(self, due: float, started: float) -> None:
        while not self.opt.stop.is_set():
            delay = due - time.monotonic()
            if delay <= 0:
                return
            await asyncio.sleep(min(delay, 0.2))
            self._maybe_progress(started)

    def _maybe_progress(self, started: float) -> None:
        if time.monotonic() >= self._next_progress:
            self._progress(started)
            self._next_progress = time.monotonic() + self.opt.progress_s

    async def _finish(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.drain()
        if self.opt.fast:
            await asyncio.gather(*(p.drain(self.opt.drain_timeout_s)
                                   for p in self.ports.values() if p.plugged))

    def _progress(self, started: float) -> None:
        sent = sum(s.sent for s in self.seals.values())
        epochs = sum(g.epochs for g in self.gps.values())
        out = self.mqtt.outstanding if self.mqtt else 0
        self.opt.log(f"[fleet] sim {self.sim_ms / 1000:7.1f}/{self.duration_s:g} s  "
                     f"wall {time.monotonic() - started:6.1f} s  seal msgs {sent}  "
                     f"unacked {out}  gps epochs {epochs}")

    def summary(self, wall_s: float) -> dict[str, Any]:
        """The machine-readable run log (format described in firmware_sim/README.md)."""
        ports: dict[str, Any] = {}
        for dev_id, port in self.ports.items():
            kind = "gps" if dev_id in self.gps else "seal_reader"
            entry: dict[str, Any] = {"kind": kind, "path": port.path, "pts": port.paths,
                                     "bytes": port.bytes_sent, "sha256": port.sha256,
                                     "writes_lost": port.writes_lost,
                                     "faults": self._port_log[dev_id]}
            if kind == "gps":
                entry.update(self.gps[dev_id].summary())
            ports[dev_id] = entry
        seals = {sid: s.summary() for sid, s in self.seals.items()}
        totals = {
            "seal_messages_sent": sum(s["sent"] for s in seals.values()),
            "genuine": sum(len(s["genuine"]) for s in seals.values()),
            "replays": sum(len(s["replays"]) for s in seals.values()),
            "forged": sum(len(s["forged"]) for s in seals.values()),
            "lost": sum(len(s["lost"]) for s in seals.values()),
            "gps_epochs": sum(p.get("epochs", 0) for p in ports.values()),
            "port_bytes": sum(p["bytes"] for p in ports.values()),
        }
        return {
            "format": SUMMARY_FORMAT,
            "scenario": self.sc.name,
            "scenario_file": str(self.sc.path) if self.sc.path else None,
            "seed": self.seed,
            "mode": "fast" if self.opt.fast else "realtime",
            "t0_ms": self.t0_ms,
            "duration_s": self.duration_s,
            "sim_end_ms": self.sim_ms,
            "stopped_early": self.opt.stop.is_set(),
            "gateway_id": self.gateway_id,
            "mqtt": None if self.mqtt is None else {
                "host": self.opt.mqtt_host, "port": self.opt.mqtt_port,
                "connections": self.mqtt.count, "acked": self.mqtt.acked,
                "reconnects": self.mqtt.reconnects,
                "failed": self.mqtt.failed, "errors": self.mqtt.errors,
                "topic_prefix": f"sealtrail/v1/{self.gateway_id}/sensors/"},
            "wall_s": round(wall_s, 3),
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "totals": totals,
            "ports": ports,
            "seals": seals,
        }
