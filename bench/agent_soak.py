"""The gateway as deployed, under a port's load: what a reading costs the whole agent process.

    python bench/agent_soak.py [--duration 120] [--warmup 20] [--seals 200] [--backlog 30000]

The real ``sealtrail agent run -c gateway.toml`` process, with everything a port gateway runs:
200 e-seals on MQTT at one message a second each and a GNSS receiver at 10 Hz on a pty (both
from firmware_sim's fleet runner, in its own process), the rules, the customs uplink (alerts,
readings, anchor receipts, status) over TLS to Mosquitto running deploy/mosquitto/mosquitto.conf,
and Merkle anchoring on anvil. The real customs receiver (tests/helpers/customs_receiver.py:
verifies, stores in SQLite, publishes signed acks) receives the uplink; every second the bench
publishes a forged e-seal message, which the agent raises as a critical sensorAuthFailure, and
times it from publish to customs' commit (alert latency, p50/p99). The probes run after the
measured window, under the same load: a critical alert closes an anchor batch at once, so an
alert every second would make the window measure an attack, not a port's day.

Over the measuring window (after ``--warmup``), from /proc/<agent pid>: CPU (user + system),
bytes handed to the block layer (``write_bytes``) and write calls (``syscw``), divided by the
readings committed (the agent's own ``sealtrail_readings_total``); readings per CPU-second over
the raw Ed25519 signing rate measured by this process in the same run (median of samples
before, every 10 s during, and after the window), per CPU-second (``ratio_to_signing``) and,
as bench/ingest.py measures it, per wall second (``ratio_to_signing_wall``); RSS sampled every
second (peak = VmHWM, steady = median of the second half).

``--backlog N`` then stops the agent, has N messages from 200 other seals queue at the sensor
broker (the agent's persistent session), starts the agent again and reports the drain: time,
rate, and the peak RSS of that process while it drains. Prints one JSON line.
Goals (issue 13): <= 1.5 kB written per reading, readings per CPU-second >= 0.25 of the signing
rate, RSS < 120 MB while draining 30,000 messages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker, anvil and customs helpers of the tests

from benchreport import finish  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

GW = "gw-soak-01"
SEED = 31
PROBE = "PROBE0001"
T_TICK = os.sysconf("SC_CLK_TCK")


def raw_sign_rate(n: int = 20_000) -> tuple[float, float]:
    """Signatures per second (bench/ingest.py's payload), per second of CPU time and per
    second of wall time. The CPU figure is the fair one: the agent's side of the ratio is CPU
    time too, and on a shared machine wall time also measures the neighbours (it varied by a
    factor of two within one run). The wall figure is how bench/ingest.py measures."""
    key = Ed25519PrivateKey.generate()
    payloads = [b'{"body":{"lat_e7":-349000000,"lon_e7":-562000000},"seq":%d}' % i
                for i in range(n)]
    cpu, wall = time.thread_time(), time.perf_counter()
    for payload in payloads:
        key.sign(payload)
    return n / (time.thread_time() - cpu), n / (time.perf_counter() - wall)


def proc_figures(pid: int) -> dict[str, float]:
    """CPU seconds, write_bytes, syscw, VmRSS and VmHWM of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out: dict[str, float] = {"cpu_s": (int(fields[11]) + int(fields[12])) / T_TICK,
                             "sys_s": int(fields[12]) / T_TICK}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("write_bytes", "syscw"):
            out[name] = int(value)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def readings(found: dict[str, float]) -> float:
    return sum(v for k, v in found.items() if k.startswith("sealtrail_readings_total{")
               and ('kind="gps"' in k or 'kind="seal"' in k))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def scenario(seals: int, duration_s: float) -> str:
    return f"""
[run]
name = "soak"
duration_s = {duration_s:.0f}
seed = {SEED}
gateway_id = "{GW}"

[[trucks]]
id = "truck0"
route = "demo_truck_route.geojson"
speed_mps = 8.0
rate_hz = 10
noise_m = 1.0

[[seals]]
count = {seals}
prefix = "SOAK"
width = 4
via = "mqtt"
heartbeat_s = 1
"""


def gateway_toml(work: Path, *, gps: Path, sensors: Any, customs: Any, anvil: Any,
                 contract: str, metrics_port: int, batch_ms: int,
                 commit_interval_s: float | None) -> Path:
    path = work / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "{GW}"
key = "gateway.key"
journal = "journal.db"
journal_max_mb = 1024
{"" if commit_interval_s is None else f"commit_interval_s = {commit_interval_s}"}

[[sources.serial_gps]]
port = "{gps}"
sensor_id = "gps0"

[sources.mqtt_seal]
host = "{sensors.host}"
port = {sensors.port}
tls = false
batch_ms = {batch_ms}

[seals]
keystore = "seals.json"
alert_interval_s = 0

[rules]
customs_keys_file = "customs-keys.txt"

[ledger]
rpc = "{anvil.url}"
contract = "{contract}"
chain_id = {anvil.chain_id}
evm_key = "evm.key"

[customs]
host = "{customs.host}"
port = {customs.port}
ca = "{customs.ca_path}"
password_file = "customs.password"

[metrics]
listen = "127.0.0.1:{metrics_port}"
""")
    drop = os.environ.get("SOAK_DROP", "")  # development: leave sections out to attribute cost
    if drop:
        import re
        text = path.read_text()
        for section in drop.split(","):
            text = re.sub(rf"\n\[{re.escape(section)}\]\n(?:[^\[\n][^\n]*\n)*", "\n", text)
        path.write_text(text)
    return path


class Prober:
    """Publishes a forged message of the probe seal every `every_s` seconds (sensor broker)."""

    def __init__(self, host: str, port: int, key: bytes, every_s: float):
        import paho.mqtt.client as paho

        from firmware_sim.seal import Seal, forge
        self.seal, self.forge = Seal(PROBE, key), forge
        self.every_s = every_s
        self.sent: dict[int, float] = {}  # ctr -> monotonic
        self.sent_ms: dict[int, int] = {}  # ctr -> wall clock ms (to split the latency)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-prober")
        self.client.connect(host, port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        topic = f"sealtrail/v1/{GW}/sensors/{PROBE}"
        while not self.stop.wait(self.every_s):
            msg = self.forge(self.seal.message(time.time_ns() // 1_000_000), b"\xee" * 32)
            self.sent[msg.ctr] = time.monotonic()
            self.sent_ms[msg.ctr] = time.time_ns() // 1_000_000
            self.client.publish(topic, msg.json_payload(), qos=1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(what: str, check: Any, timeout: float, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if agent.poll() is not None:
            raise SystemExit(f"agent_soak: the agent exited ({agent.returncode}) waiting for "
                             f"{what}")
        try:
            if check():
                return
        except OSError:
            pass  # the metrics port is not up yet
        if time.monotonic() > deadline:
            raise SystemExit(f"agent_soak: timed out waiting for {what}")
        time.sleep(0.5)  # polling another process's figures: there is no event to wait on


def start_agent(work: Path, config: Path, log_name: str,
                profile: Path | None = None) -> subprocess.Popen[bytes]:
    log = (work / log_name).open("wb")
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    if os.environ.get("SOAK_WRAPPER"):  # a sampling profiler of one's own, for development
        prefix = [os.environ["SOAK_WRAPPER"]]
    return subprocess.Popen([sys.executable, *prefix, "-m", "sealtrail.cli", "agent", "run",
                             "-c", str(config)], cwd=work, stdout=log, stderr=subprocess.STDOUT)


def stop_agent(agent: subprocess.Popen[bytes]) -> int:
    agent.send_signal(signal.SIGTERM)
    try:
        return agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        return agent.wait()


def backlog(work: Path, config: Path, sensors: Any, mport: int, n: int) -> dict[str, Any]:
    """N messages queued at the broker for the stopped agent, then drained by a new one."""
    import paho.mqtt.client as paho

    from firmware_sim.keystore import derive_key
    from firmware_sim.seal import Seal

    ids = [f"BKLG{i:04d}" for i in range(200)]
    seals = [Seal(sid, derive_key(SEED, sid)) for sid in ids]
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-backlog")
    pub.max_inflight_messages_set(200)
    pub.connect(sensors.host, sensors.port)
    pub.loop_start()
    t0 = time.time_ns() // 1_000_000
    infos = []
    for i in range(n):
        seal = seals[i % len(seals)]
        infos.append(pub.publish(f"sealtrail/v1/{GW}/sensors/{seal.seal_id}",
                                 seal.message(t0 + i).json_payload(), qos=1))
    for info in infos:
        info.wait_for_publish(60)
    pub.loop_stop()
    pub.disconnect()
    agent = start_agent(work, config, "agent-backlog.log")
    started = time.monotonic()
    rss: list[float] = []
    try:
        wait_until("the drain", lambda: (rss.append(proc_figures(agent.pid)["VmRSS"]) or True)
                   and metrics(mport).get(
                       f'sealtrail_readings_total{{kind="seal",source="mqtt-seals:'
                       f'{sensors.host}:{sensors.port}"}}', 0) >= n, 600, agent)
        drained = time.monotonic() - started
        peak = proc_figures(agent.pid)["VmHWM"]
    finally:
        stop_agent(agent)
    return {"messages": n, "drain_s": round(drained, 1),
            "drain_per_s": round(n / drained), "peak_rss_mb": round(peak / 2**20, 1),
            "max_sampled_rss_mb": round(max(rss) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seals", type=int, default=200)
    parser.add_argument("--probe-every", type=float, default=1.0)
    parser.add_argument("--latency-s", type=float, default=40.0,
                        help="alert latency phase after the measured window")
    parser.add_argument("--batch-ms", type=int, default=100,
                        help="sources.mqtt_seal.batch_ms of the agent (default: the default)")
    parser.add_argument("--commit-interval-s", type=float,
                        help="gateway.commit_interval_s of the agent (default: the default)")
    parser.add_argument("--backlog", type=int, default=30_000, help="0: skip the drain phase")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", type=Path, help="run the soak agent under cProfile, "
                        "writing its stats here (the figures are then not comparable)")
    args = parser.parse_args()

    from anvil_node import deploy_and_register, running, write_key
    from helpers.customs_receiver import CustomsReceiver
    from helpers.mosquitto import (
        free_port,
        make_test_ca,
        running_mosquitto,
        running_secure_mosquitto,
    )

    from firmware_sim.keystore import derive_key
    from ledger_client.keys import create_key, public_hex

    work = Path(tempfile.mkdtemp(prefix="sealtrail-soak-"))
    key = create_key(work / "gateway.key")
    customs_key = Ed25519PrivateKey.generate()
    (work / "customs-keys.txt").write_text(public_hex(customs_key) + "\n")
    ids = [f"SOAK{i:04d}" for i in range(1, args.seals + 1)]
    ids += [PROBE] + [f"BKLG{i:04d}" for i in range(200)]
    (work / "seals.json").write_text(json.dumps(
        {"version": 1, "seals": {sid: derive_key(SEED, sid).hex() for sid in ids}}))
    (work / "seals.json").chmod(0o600)
    (work / "soak.toml").write_text(scenario(args.seals, args.warmup + args.duration
                                             + args.latency_s + 90))
    mport = free_port()
    pki = make_test_ca(work / "pki")
    sensor_conf = "max_queued_messages 1000000\nset_tcp_nodelay true\n"  # as deployed
    with running(work) as anvil, \
            running_mosquitto(work, extra_conf=sensor_conf, name="sensors") as sensors, \
            running_secure_mosquitto(work, pki, users=(GW, "customs")) as customs:
        registry, _, submitter = deploy_and_register(anvil, GW, bytes.fromhex(public_hex(key)))
        write_key(work / "evm.key", submitter)
        (work / "customs.password").write_text(customs.passwords[GW])
        (work / "customs.password").chmod(0o600)
        receiver = CustomsReceiver(customs.host, customs.port, store=work / "customs.db",
                                   service_key=customs_key, gateways={GW: public_hex(key)},
                                   username="customs", password=customs.passwords["customs"],
                                   tls=customs.tls())
        receiver.start()
        fleet = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim.cli", "sim", "fleet", "--scenario",
             str(work / "soak.toml"), "--realtime", "--wait-readers", "--mqtt-host",
             sensors.host, "--mqtt-port", str(sensors.port), "--pty-dir", str(work / "pty"),
             "--progress-s", "3600"], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=(work / "fleet.log").open("wb"), text=True)
        assert fleet.stdout is not None
        (work / "pty").mkdir(exist_ok=True)
        ports = {}
        while (line := fleet.stdout.readline().strip()) != "ready":
            if not line:
                raise SystemExit("agent_soak: the fleet ended early; see fleet.log")
            if line.startswith("port "):
                _, dev, path = line.split()
                ports[dev] = path
        config = gateway_toml(work, gps=work / "pty" / "truck0", sensors=sensors,
                              customs=customs, anvil=anvil, contract=registry.address,
                              metrics_port=mport, batch_ms=args.batch_ms,
                              commit_interval_s=args.commit_interval_s)
        agent = start_agent(work, config, "agent.log", args.profile)
        prober = None
        try:
            seal_up = (f'sealtrail_source_connected{{source="mqtt-seals:{sensors.host}:'
                       f'{sensors.port}"}}')
            wait_until("the agent to connect", lambda: metrics(mport).get(seal_up) == 1,
                       60, agent)
            time.sleep(args.warmup)  # a warm-up period by the clock, not a synchronisation
            signs = [raw_sign_rate()]
            m0, p0, t0 = metrics(mport), proc_figures(agent.pid), time.monotonic()
            rss = []
            while time.monotonic() - t0 < args.duration:
                time.sleep(1.0)  # one RSS sample a second
                if agent.poll() is not None:
                    raise SystemExit(f"agent_soak: the agent exited ({agent.returncode})")
                rss.append(proc_figures(agent.pid)["VmRSS"])
                if len(rss) % 10 == 0:  # the machine's speed drifts: sample it throughout
                    signs.append(raw_sign_rate(5000))
            m1, p1, t1 = metrics(mport), proc_figures(agent.pid), time.monotonic()
            signs.append(raw_sign_rate())
            # then alerts on top of the same load: a forged message every probe_every seconds
            prober = Prober(sensors.host, sensors.port, derive_key(SEED, PROBE),
                            args.probe_every)
            prober.thread.start()
            time.sleep(args.latency_s)  # the probes' own pace sets this phase's length
            prober.close()
            sent = dict(prober.sent)
            with contextlib.suppress(TimeoutError):  # what did not arrive is reported
                receiver.wait(lambda r: len(r.arrivals) >= len(sent), timeout=30)
            lag = metrics(mport)
        finally:
            if prober is not None and not prober.stop.is_set():
                prober.close()
            code = stop_agent(agent)
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(60)
        arrivals, raised_ms = {}, {}
        for gw, seq, at in receiver.arrivals:
            record = json.loads(receiver.signed_at(gw, seq) or b"{}")
            body = record["body"]
            if body["type"] == "sensorAuthFailure" and body["asset"].get("seal") == PROBE:
                ctr = int(body["details"]["message"].split(",")[1])
                arrivals.setdefault(ctr, at)
                raised_ms.setdefault(ctr, record["t_ms"])
        latencies = [(arrivals[c] - t) * 1000 for c, t in sent.items() if c in arrivals]
        to_raise = [raised_ms[c] - prober.sent_ms[c] for c in sent if c in raised_ms]
        drain = backlog(work, config, sensors, mport, args.backlog) if args.backlog else None
        receiver.stop()
        receiver.close()

    n = readings(m1) - readings(m0)
    cpu = p1["cpu_s"] - p0["cpu_s"]
    sign = statistics.median(cpu for cpu, _ in signs)
    sign_wall = statistics.median(wall for _, wall in signs)
    result = {
        "bench": "agent_soak", "seconds": round(t1 - t0, 1), "seals": args.seals,
        "gps_hz": 10, "readings": int(n), "readings_per_s": round(n / (t1 - t0), 1),
        "cpu_ms_per_reading": round(cpu / n * 1000, 3),
        "cpu_share_of_one_core": round(cpu / (t1 - t0), 3),
        "cpu_system_share": round((p1["sys_s"] - p0["sys_s"]) / cpu, 2),
        "readings_per_cpu_s": round(n / cpu),
        "raw_sign_per_cpu_s": round(sign), "ratio_to_signing": round(n / cpu / sign, 3),
        "raw_sign_per_cpu_s_range": [round(min(c for c, _ in signs)),
                                     round(max(c for c, _ in signs))],
        "raw_sign_per_wall_s": round(sign_wall),
        "ratio_to_signing_wall": round(n / cpu / sign_wall, 3),
        "bytes_written_per_reading": round((p1["write_bytes"] - p0["write_bytes"]) / n),
        "write_calls_per_reading": round((p1["syscw"] - p0["syscw"]) / n, 2),
        "rss_peak_mb": round(p1["VmHWM"] / 2**20, 1),
        "rss_steady_mb": round(statistics.median(rss[len(rss) // 2:]) / 2**20, 1),
        "alert_latency_ms": {"probes": len(sent), "received": len(latencies),
                             "p50": round(percentile(latencies, 0.5), 1) if latencies else None,
                             "p99": round(percentile(latencies, 0.99), 1) if latencies else None,
                             "publish_to_raised_p50": percentile(to_raise, 0.5)
                             if to_raise else None},
        "alerts_unacked_at_end": lag.get("sealtrail_alerts_unacked"),
        "readings_per_commit": round(n / max(1.0, m1.get("sealtrail_ingest_commits_total", 0)
                                             - m0.get("sealtrail_ingest_commits_total", 0)), 1),
        "agent_exit": code, "backlog": drain, "cpus": os.cpu_count(),
        "goals": {"bytes_per_reading_max": 1500, "ratio_min": 0.25, "drain_rss_mb_max": 120},
    }
    finish(result, work, args.keep)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
