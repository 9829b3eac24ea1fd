"""A whole customs service for browser tests: the real receiver and console (customs.serve)
on a free loopback port in a thread of its own, the deployed Mosquitto (TLS, passwords, ACL),
officers with passwords made at run time, and a simulated gateway publishing signed records
over MQTT as its own broker account.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from helpers.customs_data import SimGateway
from helpers.mosquitto import SecureBroker, free_port, make_test_ca, running_secure_mosquitto

from customs.config import load_config
from customs.serve import Service, build
from customs.store import open_store
from customs.users import add_user
from geofences import sign_envelope
from ledger_client.keys import create_key

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OFFICERS = {"sam": "supervisor", "ana": "officer", "aud": "auditor"}
PLAN_DOC = Path(__file__).resolve().parents[2] / "sealtrail" / "demo_data" / "plan.json"


def password_of(name: str) -> str:
    return f"{name}-pass-{os.getpid()}-long"


class ServiceThread:
    """customs.serve's Service on its own asyncio loop, as `customs serve` runs it."""

    def __init__(self, service: Service):
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="customs-service", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            runner = asyncio.create_task(self.service.run(self.stop_event))
            await asyncio.wait([runner, asyncio.create_task(self.service.started.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            self.ready.set()
            await runner

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc
            self.ready.set()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


class Publisher:
    """One gateway's MQTT connection (TLS, its own account), publishing at QoS 1."""

    def __init__(self, broker: SecureBroker, user: str):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{user}-test",
                                  protocol=paho.MQTTv5)
        self.client.tls_set_context(broker.tls())
        self.client.username_pw_set(user, broker.passwords[user])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> queue.Queue[bytes]:
        """Messages on ``topic`` (as the broker's ACL lets this account read them)."""
        got: queue.Queue[bytes] = queue.Queue()
        self.client.on_message = lambda c, u, m: got.put(m.payload)
        self.client.subscribe(topic, qos=1)
        return got

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rig:
    tmp: Path
    broker: SecureBroker
    service: ServiceThread
    config_path: Path
    gateways: dict[str, SimGateway]
    publishers: dict[str, Publisher] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.service.port}"

    @property
    def store(self) -> Any:
        return self.service.service.store

    def publish(self, gw: str, leaf: str, payload: bytes, *, retain: bool = False) -> None:
        if gw not in self.publishers:
            self.publishers[gw] = Publisher(self.broker, gw)
        self.publishers[gw].publish(f"sealtrail/v1/{gw}/{leaf}", payload, retain=retain)


def plan_envelope(key: Any, plan_id: str) -> bytes:
    doc = json.loads(PLAN_DOC.read_text())
    doc["plan_id"] = plan_id
    return sign_envelope("plan", json.dumps(doc, indent=1).encode(), key)


def corridor_points(n: int) -> list[tuple[int, int]]:
    """n points along the demo corridor's centre line, as (lat_e7, lon_e7)."""
    line = json.loads(PLAN_DOC.read_text())["corridor"]["geometry"]["coordinates"]
    out = []
    for i in range(n):
        f = i / (n - 1) * (len(line) - 1)
        j = min(int(f), len(line) - 2)
        u = f - j
        lon = line[j][0] + (line[j + 1][0] - line[j][0]) * u
        lat = line[j][1] + (line[j + 1][1] - line[j][1]) * u
        out.append((round(lat * 1e7), round(lon * 1e7)))
    return out


@contextmanager
def running_console(tmp: Path, gateways: tuple[str, ...] = ("gw-a",)) -> Iterator[Rig]:
    pki = make_test_ca(tmp / "pki")
    sims = {gw: SimGateway(gw) for gw in gateways}
    with running_secure_mosquitto(tmp, pki, users=(*gateways, "customs")) as broker:
        key_path = tmp / "service.key"
        key = create_key(key_path)
        trust = tmp / "trust.json"
        trust.write_text(json.dumps({"gateways": {g: s.pub for g, s in sims.items()}}))
        secret = broker.conf_path.parent / "customs.secret"
        config_path = tmp / "customs.toml"
        config_path.write_text(f"""
[office]
audit_id = "customs-audit-test"
service_key = "{key_path}"

[store]
target = "{tmp / 'customs.db'}"

[mqtt]
broker = "127.0.0.1"
port = {broker.port}
ca = "{pki / 'ca.crt'}"
username = "customs"
password_file = "{secret}"
client_id = "customs-console-test"

[trust]
file = "{trust}"

[console]
listen = "127.0.0.1:{free_port()}"
secure_cookie = false
""")
        store = open_store(tmp / "customs.db")
        for name, role in OFFICERS.items():
            add_user(store, name, role, password_of(name))
        store.close()
        service = ServiceThread(build(load_config(config_path)))
        service.start()
        rig = Rig(tmp, broker, service, config_path, sims)
        watcher = service.service.watcher
        assert watcher is not None
        service.call(watcher.connected.wait())
        # customs publishes each gateway's plan (retained), as it would in production; the
        # receiver keeps the envelope it sees on sealtrail/v1/<gw>/plans
        customs = Publisher(broker, "customs")
        for gw in gateways:
            customs.publish(f"sealtrail/v1/{gw}/plans", plan_envelope(key, f"PLAN-{gw}"),
                            retain=True)
        customs.close()
        try:
            yield rig
        finally:
            for p in rig.publishers.values():
                p.close()
            service.stop()
