"""E-seals over a real Mosquitto: a 200-seal fleet, a crash of the agent mid-stream, and the
journal holding every genuine message exactly once, with each attack raised once.

The fleet is firmware_sim's runner (independent encoder and MACs); its summary says which
counters of which seal were genuine, replayed or forged, which is what the journal must match.
The "crash" cancels the agent with acknowledgements still queued behind uncommitted readings and
reopens the journal file, so the broker redelivers what we never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.mosquitto import running_mosquitto

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.sources.mqtt_seal import MqttSealSource
from edge_agent.sources.seal_auth import SealAuthenticator
from firmware_sim.fleet import Fleet, FleetOptions
from firmware_sim.keystore import derive_key
from firmware_sim.scenario import load_scenario
from sealtrail.mqtt import MqttSettings

pytestmark = pytest.mark.integration

GW = "gw-yard"
SEED = 23
SCENARIO = f"""
[run]
name = "yard"
duration_s = 120
seed = {SEED}
gateway_id = "{GW}"

[[seals]]
count = 200
prefix = "YARD"
width = 4
via = "mqtt"
heartbeat_s = 5

[[events]]
t_s = 40
type = "replay"
target = "YARD000*"          # YARD0001 .. YARD0009

[[events]]
t_s = 45
type = "forge"
target = ["YARD0150", "YARD0151", "YARD0152"]

[[events]]
t_s = 50
type = "seal_open"
target = "YARD0100"
"""


class Gateway:
    """One life of the agent process: journal, authenticator, MQTT source."""

    def __init__(self, path: Path, key: Ed25519PrivateKey, keys: dict[str, bytes],
                 host: str, port: int):
        self.journal = Journal(path, gateway_id=GW, key=key)
        self.auth = SealAuthenticator(self.journal, keys, alert_interval_s=0)
        self.source = MqttSealSource(MqttSettings(host, port, client_id=f"agent-{GW}",
                                                  backoff_s=(0.05, 0.5)), GW, self.auth)
        self.agent = Agent(self.journal, [self.source], [])
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop))

    def seal_count(self) -> int:
        return sum(s.kind == "seal" for s in self.journal.read_after(0, 1 << 30))

    async def wait_for(self, done: Any, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await self.agent.tail.wait_beyond(self.agent.tail.head)

    async def crash(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.journal.close()


def test_200_seals_every_genuine_message_exactly_once_across_an_agent_crash(tmp_path) -> None:
    scenario_path = tmp_path / "yard.toml"
    scenario_path.write_text(SCENARIO)
    scenario = load_scenario(scenario_path)
    keys = {s.id: derive_key(SEED, s.id) for s in scenario.seals}
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "journal.db"

    with running_mosquitto(tmp_path, extra_conf="max_queued_messages 100000") as broker:
        async def run() -> tuple[dict[str, Any], list[Counter[str]]]:
            first = Gateway(db, key, keys, broker.host, broker.port)
            async with asyncio.timeout(20):
                await first.source.connected.wait()
            fleet = Fleet(scenario, FleetOptions(mqtt_host=broker.host, mqtt_port=broker.port,
                                                 progress_s=3600, log=lambda _m: None))
            fleet_task = asyncio.create_task(fleet.run())
            await first.wait_for(lambda: first.seal_count() >= 1500)
            await first.crash()
            second = Gateway(db, key, keys, broker.host, broker.port)
            summary = await fleet_task
            genuine = sum(len(s["genuine"]) for s in summary["seals"].values())
            await second.wait_for(lambda: second.seal_count() >= genuine)
            # let anything still in flight land (a duplicate would show up now)
            async with asyncio.timeout(30):
                while second.source.counts["messages"] < \
                        summary["totals"]["seal_messages_sent"] - first.source.counts["acked"]:
                    await asyncio.sleep(0.05)
            second.stop.set()
            await second.task
            counts = [first.auth.counts, second.auth.counts]
            second.journal.close()
            return summary, counts

        summary, counts = asyncio.run(run())

    journal = Journal(db, gateway_id=GW, key=key)
    records = [s.record() for s in journal.read_after(0, 1_000_000)]
    readings = [(r["body"]["seal_id"], r["body"]["ctr"]) for r in records if r["kind"] == "seal"]
    expected = {(sid, c) for sid, s in summary["seals"].items() for c in s["genuine"]}
    assert summary["totals"]["genuine"] == len(expected) > 2000
    assert len(readings) == len(set(readings)), "a message was journaled twice"
    assert set(readings) == expected

    attacks = {(r["body"]["asset"]["seal"], r["body"]["details"]["reason"],
                int(r["body"]["details"]["message"].split(",")[1]))
               for r in records if r["kind"] == "alert"}
    wanted = {(sid, "replay", c) for sid, s in summary["seals"].items() for c in s["replays"]}
    wanted |= {(sid, "bad_mac", c) for sid, s in summary["seals"].items() for c in s["forged"]}
    assert len(wanted) == 9 + 3  # nine seals replayed, three forged (see SCENARIO)
    assert attacks == wanted
    opened = [r["body"] for r in records if r["kind"] == "seal" and r["body"]["state"] == "O"]
    assert {b["seal_id"] for b in opened} == {"YARD0100"}
    # the crash really happened mid-stream: both lives accepted readings
    assert counts[0]["accepted"] > 0 and counts[1]["accepted"] > 0
