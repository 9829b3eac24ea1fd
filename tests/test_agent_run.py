"""`sealtrail agent run -c gateway.toml` as a real process, as systemd runs it.

A simulated GPS on a pseudo-terminal, e-seals over a real Mosquitto, a real anvil ledger, the
customs sink on the same broker, a 1 MB journal bound: the test waits on the agent's own
signals (sd_notify READY, MQTT alerts, /metrics figures), then SIGTERM, then audits the pruned
journal and has customs verify an alert from it against the chain. Customs acknowledges what
it stores (the real receiver, run by tests/helpers/customs_receiver.py), so the agent's
"nothing pending" is customs' word, not the broker's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from anvil_node import deploy_and_register, running, wait_for, write_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.customs_receiver import CustomsReceiver
from helpers.mosquitto import free_port, running_mosquitto

from firmware_sim.seal import Seal, forge
from geofences import sign_envelope
from ledger_client.keys import create_key, public_hex

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
GW = "gw-run-01"
SEAL = "MSCU1234567"  # a seal of the demo plan


def sealtrail(*args: str, env: dict[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sealtrail.cli", *args], env=env, **kw)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealtrail.cli", *args], capture_output=True,
                          text=True, timeout=120)


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(port: int) -> dict[str, float]:
    """`name{labels}` -> value, labels as printed (sorted by the exposition)."""
    out = {}
    for line in scrape(port)[1].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def one(found: dict[str, float], pattern: str) -> float:
    values = [v for k, v in found.items() if re.fullmatch(pattern, k)]
    assert len(values) == 1, (pattern, [k for k in found if k.startswith(pattern[:20])])
    return values[0]


class Alerts:
    """A customs subscriber on sealtrail/v1/<gw>/alerts (QoS 1)."""

    def __init__(self, host: str, port: int):
        self.types: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="customs-test")
        self.client.on_message = self._message
        self.client.connect(host, port)
        self.client.subscribe(f"sealtrail/v1/{GW}/alerts", qos=1)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        body = json.loads(message.payload)["body"]
        with self.changed:
            self.types.append(body["type"])
            self.bodies.append(body)
            self.changed.notify_all()

    def wait(self, *types: str, timeout: float = 60.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: set(types) <= set(self.types), timeout), \
                f"alerts received: {self.types}"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _plan(tmp: Path, customs: Ed25519PrivateKey) -> Path:
    plan = json.loads((ROOT / "sealtrail" / "demo_data" / "plan.json").read_text())
    plan["limits"] = {**plan.get("limits", {}), "deviation_min_s": 5, "return_min_s": 2}
    path = tmp / "plan.json"
    path.write_bytes(sign_envelope("plan", json.dumps(plan).encode(), customs))
    return path


def _config(tmp: Path, *, anvil: Any, contract: str, broker: Any, metrics_port: int,
            gps: Path) -> Path:
    path = tmp / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "{GW}"
key = "gateway.key"
journal = "journal.db"
journal_max_mb = 1
prune_interval_s = 1
heartbeat_s = 2

[[sources.serial_gps]]
port = "{gps}"
sensor_id = "gps0"
[sources.serial_gps.filters]
max_age_ms = false        # the simulator runs ahead of the wall clock (--fast)
max_future_ms = false

[sources.mqtt_seal]
host = "{broker.host}"
port = {broker.port}
tls = false

[seals]
keystore = "seals.json"

[rules]
customs_keys_file = "customs-keys.txt"
plan = "plan.json"

[ledger]
rpc = "{anvil.url}"
contract = "{contract}"
chain_id = {anvil.chain_id}
evm_key = "evm.key"
max_leaves = 256
max_age_s = 1
poll_s = 0.2

[customs]
host = "{broker.host}"
port = {broker.port}
tls = false
plans = false

[console]
alerts = true

[metrics]
listen = "127.0.0.1:{metrics_port}"
""")
    return path


def test_the_agent_runs_from_gateway_toml_bounds_its_journal_and_stops_on_sigterm(
        tmp_path, capsys) -> None:
    key = create_key(tmp_path / "gateway.key")
    customs_key = Ed25519PrivateKey.generate()
    (tmp_path / "customs-keys.txt").write_text(public_hex(customs_key) + "\n")
    _plan(tmp_path, customs_key)
    seal = Seal(SEAL, os.urandom(32))
    (tmp_path / "seals.json").write_text(json.dumps({"version": 1,
                                                     "seals": {SEAL: seal.key.hex()}}))
    (tmp_path / "seals.json").chmod(0o600)
    notify_dir = Path(tempfile.mkdtemp(prefix="st-notify-"))  # AF_UNIX paths are short
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_dir / "n"))
    notify.settimeout(90)
    port = free_port()
    with running(tmp_path) as anvil, running_mosquitto(tmp_path) as broker:
        registry, _, submitter = deploy_and_register(anvil, GW, bytes.fromhex(public_hex(key)))
        write_key(tmp_path / "evm.key", submitter)
        sim = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim.cli", "sim", "gps", "--pty-link",
             str(tmp_path / "gps0"), "--fast", "--loop", "4", "--linger", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert sim.stdout is not None and sim.stdout.readline().strip()
        config = _config(tmp_path, anvil=anvil, contract=registry.address, broker=broker,
                         metrics_port=port, gps=tmp_path / "gps0")
        alerts = Alerts(broker.host, broker.port)
        customs = CustomsReceiver(broker.host, broker.port, store=tmp_path / "customs.db",
                                  service_key=customs_key, gateways={GW: public_hex(key)}).start()
        log = (tmp_path / "agent.log").open("wb")
        agent = sealtrail("agent", "run", "-c", str(config), stdout=subprocess.PIPE, stderr=log,
                          env={**os.environ, "NOTIFY_SOCKET": str(notify_dir / "n")})
        try:
            assert notify.recv(4096).startswith(b"READY=1"), "no READY from the agent"
            status, body = scrape(port, "/healthz")
            assert status == 200 and json.loads(body)["status"] in ("ok", "degraded")
            seals_up = ('sealtrail_source_connected{source="mqtt-seals:'
                        f'{broker.host}:{broker.port}"}}')
            wait_for(lambda: metrics(port).get(seals_up), 30, "the MQTT seal source to connect")
            pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="seal-test")
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            genuine = seal.message(1_790_000_000_000)
            topic = f"sealtrail/v1/{GW}/sensors/{SEAL}"
            pub.publish(topic, genuine.json_payload(), qos=1).wait_for_publish(10)
            pub.publish(topic, forge(seal.message(1_790_000_060_000), os.urandom(32))
                        .json_payload(), qos=1).wait_for_publish(10)
            pub.loop_stop()
            pub.disconnect()
            alerts.wait("sensorAuthFailure", "routeDeviation")
            assert sim.wait(60) == 0
            wait_for(lambda: (m := metrics(port))["sealtrail_journal_pruned_through_seq"] > 0
                     and m["sealtrail_anchor_lag_records"] < 256
                     and m["sealtrail_journal_size_bytes"] <= m["sealtrail_journal_max_bytes"]
                     and m["sealtrail_journal_over_limit"] == 0  # counting what the WAL may take
                     and m['sealtrail_alerts_pending{sink="customs"}'] == 0
                     and m["sealtrail_alerts_unacked"] == 0,
                     60, "the journal to be anchored and pruned under its bound")
            found = metrics(port)
            status, body = scrape(port, "/healthz")
        finally:
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(60)
            log.close()
            alerts.close()
            customs.stop()
            if sim.poll() is None:
                sim.kill()
        output = (tmp_path / "agent.log").read_text()
        assert code == 0, output[-3000:]
        assert notify.recv(4096).startswith(b"STOPPING=1")
        notify.close()
        shutil.rmtree(notify_dir)
        assert agent.stdout is not None and "ALERT CRITICAL sensorAuthFailure" in \
            agent.stdout.read().decode()
        assert "SIGTERM: stopping" in output and "stopped at journal seq" in output

        health = json.loads(body)
        assert status == 200 and health["gateway"] == GW
        assert set(health["alerts_pending"]) == {"customs", "console"}
        gps = one(found, r'sealtrail_readings_total\{kind="gps",source="serial-gps:gps0"\}')
        assert gps > 1000
        assert one(found, r'sealtrail_readings_total\{kind="seal",source="mqtt-seals:.*"\}') == 1
        assert one(found, r'sealtrail_dropped_total\{component="mqtt-.*",reason="auth_bad_mac"\}') \
            == 1
        assert one(found, r'sealtrail_dropped_total\{component="serial-gps:gps0",'
                          r'reason="dropped_speed_jump"\}') >= 1  # each loop restarts the route
        assert found["sealtrail_ingest_queue_capacity"] == 1024
        assert "sealtrail_ingest_queue_depth" in found
        for consumer in ("rules", "customs", "console", "anchor"):
            assert f'sealtrail_consumer_lag_records{{consumer="{consumer}"}}' in found
        assert found['sealtrail_alerts_pending{sink="customs"}'] == 0
        assert found["sealtrail_alerts_unacked"] == 0  # customs said it stored them all
        assert set(customs.stored(GW)) >= {b["prev_alert"] for b in alerts.bodies} - {0}
        assert found["sealtrail_journal_writable"] == 1
        assert found["sealtrail_ledger_connected"] == 1
        assert found["sealtrail_journal_over_limit"] == 0
        assert found["sealtrail_journal_pruned_records_total"] > 1000
        rss = found["process_resident_memory_bytes"]
        assert 10e6 < rss < 250e6
        print(json.dumps({"agent_rss_mb": round(rss / 2**20, 1), "readings": gps,
                          "pruned": found["sealtrail_journal_pruned_records_total"],
                          "journal_bytes": found["sealtrail_journal_size_bytes"]}))

        # the auditor's and customs' checks, in-process (a CLI process costs seconds of imports)
        from sealtrail.cli import main
        journal = str(tmp_path / "journal.db")
        assert main(["journal", "verify", journal, "--public-key", public_hex(key)]) == 0
        assert "pruned" in capsys.readouterr().out
        deviation = next(b for b in alerts.bodies if b["type"] == "routeDeviation")
        evidence = str(tmp_path / "evidence.json")
        assert main(["evidence", "export", "--journal", journal, "--alert",
                     deviation["alert_id"], "-o", evidence]) == 0
        code = main(["verify", evidence, "--rpc", anvil.url, "--contract", registry.address,
                     "--chain-id", str(anvil.chain_id)])
        assert code == 0, capsys.readouterr()


def test_a_bad_config_stops_the_agent_before_anything_runs_with_exit_78(tmp_path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nid = "gw-1"\nkey = "missing.key"\njournal = "journal.db"\n'
                      '\n[[sources.serial_gps]]\nport = "/dev/ttyUSB0"\nbaud = "fast"\n')
    proc = run("agent", "run", "-c", str(config))
    assert proc.returncode == 78
    assert "sources.serial_gps[0].baud: expected an integer" in proc.stderr
    assert not (tmp_path / "journal.db").exists()


def test_the_metrics_server_answers_only_what_it_serves(tmp_path) -> None:
    import asyncio

    from edge_agent.agent import Agent
    from edge_agent.journal import Journal
    from edge_agent.metrics import MetricsServer, Watched

    journal = Journal(tmp_path / "j.db", gateway_id=GW, key=Ed25519PrivateKey.generate())
    watched = Watched(Agent(journal, [], []), gateway_id=GW)

    async def ask(port: int, request: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        reply = await reader.read()
        writer.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    async def main() -> dict[str, tuple[int, bytes]]:
        server = MetricsServer(watched, "127.0.0.1", 0)
        await server.start()
        try:
            return {
                "metrics": await ask(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                "health": await ask(server.port, b"GET /healthz HTTP/1.0\r\n\r\n"),
                "other": await ask(server.port, b"GET /admin HTTP/1.1\r\n\r\n"),
                "post": await ask(server.port, b"POST /metrics HTTP/1.1\r\n\r\n"),
                "huge": await ask(server.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n"),
            }
        finally:
            await server.close()

    replies = asyncio.run(main())
    journal.close()
    status, text = replies["metrics"]
    assert status == 200 and b"sealtrail_up 0\n" in text  # built, not running
    names = {line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")}
    samples = {re.split(r"[{ ]", line)[0] for line in text.decode().splitlines()
               if line and not line.startswith("#")}
    assert samples <= names and "process_resident_memory_bytes" in samples
    assert replies["health"][0] == 503 and json.loads(replies["health"][1])["status"] == "stopped"
    assert [replies[k][0] for k in ("other", "post", "huge")] == [404, 405, 400]


def test_a_restart_does_not_undo_a_newer_plan_with_the_configured_file(tmp_path) -> None:
    from edge_agent.assemble import build_rules
    from edge_agent.config import load_config
    from edge_agent.journal import Journal

    key = create_key(tmp_path / "gateway.key")
    customs = Ed25519PrivateKey.generate()
    (tmp_path / "customs-keys.txt").write_text(public_hex(customs) + "\n")
    _plan(tmp_path, customs)
    (tmp_path / "gateway.toml").write_text(f"""
[gateway]
id = "{GW}"
key = "gateway.key"
journal = "journal.db"
[[sources.gpsd]]
[rules]
customs_keys_file = "customs-keys.txt"
plan = "plan.json"
""")
    newer = json.loads(json.loads((tmp_path / "plan.json").read_text())["payload"])
    newer["plan_id"] = "plan-from-mqtt"

    def loaded() -> list[str]:
        return [r.record()["body"].get("plan_id") for r in journal.read_after(0)
                if r.kind == "status" and r.record()["body"]["event"] == "planLoaded"]

    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=key)
    config = load_config(tmp_path / "gateway.toml")
    engine = build_rules(config, journal)
    engine.set_plan(sign_envelope("plan", json.dumps(newer).encode(), customs))
    build_rules(config, journal)  # a restart with the same file
    assert loaded() == ["plan-demo-0001", "plan-from-mqtt"]
    newer["plan_id"] = "plan-edited-file"
    (tmp_path / "plan.json").write_bytes(sign_envelope("plan", json.dumps(newer).encode(),
                                                       customs))
    build_rules(load_config(tmp_path / "gateway.toml"), journal)
    assert loaded()[-1] == "plan-edited-file"
    journal.close()
