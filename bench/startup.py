"""How fast the gateway starts and how small it stays: help times, start-up, RSS by component.

    python bench/startup.py [--runs 3] [--steady-s 60] [--gps-hz 1]

Figures, not assertions (issue 16: after a power cut the gateway must be reading again within
2 s; steady RSS with anchoring on under 80 MB; `sealtrail --help` and every `sealtrail X
--help` under 0.5 s). Prints one JSON line:

- ``help_s``: wall time of `python -m sealtrail --help` and of each `sealtrail X --help`
  (median of ``--help-repeat`` runs each), and their max.
- ``startup``: the real `sealtrail agent run` process, started ``--runs`` times on the same
  journal (as after a power cut), fed by a simulated GNSS receiver on a pseudo-terminal that is
  already talking (firmware_sim, ``--gps-hz``). ``ready_s`` is when the agent told systemd
  READY (its sd_notify datagram: an event), ``first_reading_s`` when /metrics first counts a
  reading (emitted by the source), ``first_committed_s`` when the journal file holds the first
  reading of this run (durable; ingest groups commits on a ``commit_interval_s`` grid, 2 s by
  default, so this adds up to that). Another process's state has no event: those two are
  polled every 10 ms. Two configurations: ``gps_only`` and ``truck`` (GPS, MQTT e-seals and
  the customs uplink on Mosquitto, rules with a signed plan, anchoring on anvil).
- ``rss``: the ``truck`` agent run for ``--steady-s`` seconds with batches closing every 5 s
  (so the ledger client is loaded and anchoring is steady): peak (VmHWM) and steady (median
  VmRSS of the second half, sampled every second), batches anchored.
- ``components``: what each part costs to import in a fresh interpreter, on top of the part
  before it (RSS and wall seconds); ``import_self_ms``: `-X importtime` self time of the truck
  agent's start-up, summed by top-level package; ``heap_mb``: a tracemalloc snapshot of the
  truck agent after its first anchored batch, Python heap by the top-level package whose code
  is nearest the allocation on its stack (an import's code objects count for the package
  imported; the heap only: shared libraries and allocator slack are in the RSS figures).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker and anvil helpers of the tests
sys.path.insert(0, str(ROOT))

from agent_soak import metrics as soak_metrics  # noqa: E402
from benchreport import finish  # noqa: E402

from sealtrail.cli import COMMANDS  # noqa: E402

GW = "gw-startup-01"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
COMPONENTS = [  # (name, import statement); each is measured on top of the ones before it
    ("interpreter", "pass"),
    ("core: config, journal, ingest, metrics (asyncio, sqlite3, cryptography; numpy and "
     "shapely through the config's rule thresholds)",
     "import edge_agent.agent_cli, edge_agent.assemble, edge_agent.metrics"),
    ("serial GPS source", "import edge_agent.sources.serial_gps"),
    ("rules + geofences (numpy, shapely)", "import edge_agent.rules.engine"),
    ("MQTT seals + customs uplink (aiomqtt, paho)",
     "import edge_agent.sources.mqtt_seal, edge_agent.sinks.customs_mqtt"),
    ("anchor sink (journal side)", "import edge_agent.sinks.ledger"),
    ("ledger client, deferred to the first batch (raw JSON-RPC, cryptography signer)",
     "import ledger_client.rpc_registry, ledger_client.signer"),
]
TRACE_RUNNER = """
import tracemalloc; tracemalloc.start(64)
import json, os, signal, sqlite3, sys, threading, time
from sealtrail.cli import main
config, journal, out = sys.argv[1:4]

def snapshot_once_anchored():
    while True:  # the agent's own journal says when: polled, as from another process
        try:
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
            done = db.execute("SELECT count(*) FROM batches WHERE status = 'anchored'"
                              ).fetchone()[0]
            db.close()
        except sqlite3.Error:
            done = 0
        if done:
            break
        time.sleep(0.1)
    by_top = {}
    ours = ("edge_agent", "ledger_client", "geofences", "sealtrail")
    for stat in tracemalloc.take_snapshot().statistics("traceback"):
        top = "stdlib"  # unless a package's code is on the allocating stack
        for frame in reversed(stat.traceback):  # most recent first
            parts = frame.filename.split(os.sep)
            if "site-packages" in parts:
                top = parts[parts.index("site-packages") + 1].split(".")[0]
                break
            if any(p in parts for p in ours):
                top = next(p for p in parts if p in ours)
                break
        by_top[top] = by_top.get(top, 0) + stat.size
    json.dump(by_top, open(out, "w"))
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=snapshot_once_anchored, daemon=True).start()
sys.exit(main(["agent", "run", "-c", config]))
"""


def sealtrail_help(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sealtrail", *args, "--help"], env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def help_times(repeat: int) -> dict[str, Any]:
    each = {"sealtrail": sealtrail_help([], repeat)}
    for name in COMMANDS:
        each[name] = sealtrail_help([name], repeat)
    return {"each": each, "max": max(each.values())}


def metrics(port: int) -> dict[str, float]:
    """The agent's /metrics samples; {} while its port does not answer yet."""
    try:
        return soak_metrics(port)
    except OSError:
        return {}


def readings_total(found: dict[str, float]) -> float:
    return sum(v for k, v in found.items() if k.startswith("sealtrail_readings_total{")
               and 'kind="gps"' in k)


def journal_query(path: Path, sql: str) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute(sql).fetchone()[0] or 0)
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet, or mid-creation


def last_gps_seq(path: Path) -> int:
    return journal_query(path, "SELECT max(seq) FROM records WHERE kind = 'gps'")


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Notify:
    """The $NOTIFY_SOCKET the agent reports READY on (AF_UNIX paths are short: /tmp)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="st-n-"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.dir / "n"))
        self.sock.settimeout(120)

    def wait_ready(self) -> None:
        while not self.sock.recv(4096).startswith(b"READY=1"):
            pass


def start_agent(work: Path, config: Path, notify: Notify, python_args: tuple[str, ...] = (),
                stderr: str = "agent.log") -> subprocess.Popen[bytes]:
    with (work / "agent.log").open("ab") as out, (work / stderr).open("ab") as err:
        return subprocess.Popen(
            [sys.executable, *python_args, "-m", "sealtrail", "agent", "run", "-c", str(config)],
            cwd=work, stdout=out, stderr=err,
            env={**ENV, "NOTIFY_SOCKET": str(notify.sock.getsockname())})


def stop_agent(agent: subprocess.Popen[bytes]) -> int:
    agent.send_signal(signal.SIGTERM)
    try:
        return agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        return agent.wait()


def one_start(work: Path, config: Path, journal: Path, port: int) -> dict[str, float]:
    """Start, wait for READY, the first reading, the first committed reading; stop."""
    notify = Notify()
    before = last_gps_seq(journal)
    t0 = time.perf_counter()
    agent = start_agent(work, config, notify)
    try:
        notify.wait_ready()
        ready = time.perf_counter() - t0
        read = committed = None
        deadline = time.monotonic() + 60
        while committed is None:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"startup: no committed reading; see {work / 'agent.log'}")
            now = time.perf_counter() - t0
            if read is None and readings_total(metrics(port)) > 0:
                read = now
            if last_gps_seq(journal) > before:
                committed = now
                read = read if read is not None else now
            time.sleep(0.01)  # another process's state: polled
        rss = proc_kb(agent.pid, "VmRSS") / 1024
    finally:
        stop_agent(agent)
    return {"ready_s": round(ready, 3), "first_reading_s": round(read, 3),
            "first_committed_s": round(committed, 3), "rss_at_first_reading_mb": round(rss, 1)}


def steady_rss(work: Path, config: Path, journal: Path, seconds: float) -> dict[str, Any]:
    notify = Notify()
    agent = start_agent(work, config, notify)
    samples = []
    try:
        notify.wait_ready()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)  # one sample a second, by the clock
            if agent.poll() is not None:
                raise SystemExit(f"startup: the agent exited; see {work / 'agent.log'}")
            samples.append(proc_kb(agent.pid, "VmRSS"))
        peak = proc_kb(agent.pid, "VmHWM")
    finally:
        code = stop_agent(agent)
    anchored = journal_query(journal, "SELECT count(*) FROM batches WHERE status = 'anchored'")
    return {"seconds": seconds, "peak_mb": round(peak / 1024, 1),
            "steady_mb": round(statistics.median(samples[len(samples) // 2:]) / 1024, 1),
            "batches_anchored": anchored, "agent_exit": code}


def components() -> list[dict[str, Any]]:
    out, before, statements = [], None, []
    for name, statement in COMPONENTS:
        statements.append(statement)
        code = "; ".join(statements) + "; print(open('/proc/self/status').read())"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                              text=True, check=True)
        wall = time.perf_counter() - t0
        rss = next(int(line.split()[1]) for line in proc.stdout.splitlines()
                   if line.startswith("VmHWM:")) / 1024
        out.append({"component": name, "rss_mb": round(rss, 1),
                    "adds_mb": round(rss - before[0], 1) if before else None,
                    "adds_s": round(wall - before[1], 3) if before else None})
        before = (rss, wall)
    return out


def import_self_ms(work: Path, config: Path) -> dict[str, float]:
    notify = Notify()
    (work / "importtime.log").unlink(missing_ok=True)
    agent = start_agent(work, config, notify, ("-X", "importtime"), "importtime.log")
    try:
        notify.wait_ready()
    finally:
        stop_agent(agent)
    tops: collections.Counter[str] = collections.Counter()
    for line in (work / "importtime.log").read_text().splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            tops[name.strip().split(".")[0]] += int(self_us)
    return {k: round(v / 1000, 1) for k, v in tops.most_common(15)}


def heap_by_package(work: Path, config: Path, journal: Path) -> dict[str, float]:
    out = work / "heap.json"
    with (work / "traced.log").open("wb") as log:
        subprocess.run([sys.executable, "-c", TRACE_RUNNER, str(config), str(journal), str(out)],
                       cwd=work, env=ENV, stdout=log, stderr=log, timeout=300)
    if not out.exists():
        raise SystemExit(f"startup: no heap snapshot; see {work / 'traced.log'}")
    sizes = json.loads(out.read_text())
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:15]
    return {"total": round(sum(sizes.values()) / 2**20, 1),
            **{k: round(v / 2**20, 2) for k, v in top}}


def gateway_toml(work: Path, name: str, *, port: int, gps: Path, truck: Any = None) -> Path:
    """`gps_only`: one serial GPS. `truck`: what a truck gateway runs (see the docstring)."""
    text = f"""
[gateway]
id = "{GW}"
key = "gateway.key"
journal = "{name}.db"

[[sources.serial_gps]]
port = "{gps}"
sensor_id = "gps0"

[metrics]
listen = "127.0.0.1:{port}"
"""
    if truck is not None:
        broker, anvil, contract, max_age_s = truck
        text += f"""
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
max_age_s = {max_age_s}
poll_s = 0.5

[customs]
host = "{broker.host}"
port = {broker.port}
tls = false
acks = false

[console]
alerts = true
"""
    path = work / f"{name}.toml"
    path.write_text(text)
    return path


def prepare(work: Path) -> str:
    """Keys, seal keystore and a customs-signed plan; returns the gateway's public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from geofences import sign_envelope
    from ledger_client.keys import create_key, public_hex

    key = create_key(work / "gateway.key")
    customs = Ed25519PrivateKey.generate()
    (work / "customs-keys.txt").write_text(public_hex(customs) + "\n")
    plan = (ROOT / "sealtrail" / "demo_data" / "plan.json").read_bytes()
    (work / "plan.json").write_bytes(sign_envelope("plan", plan, customs))
    (work / "seals.json").write_text(json.dumps(
        {"version": 1, "seals": {"MSCU1234567": os.urandom(32).hex()}}))
    (work / "seals.json").chmod(0o600)
    return public_hex(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per configuration")
    parser.add_argument("--help-repeat", type=int, default=3)
    parser.add_argument("--steady-s", type=float, default=60.0)
    parser.add_argument("--gps-hz", type=float, default=1.0, help="the simulated receiver's rate")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from anvil_node import deploy_and_register, running, write_key
    from helpers.mosquitto import free_port, running_mosquitto

    result: dict[str, Any] = {"bench": "startup", "cpus": os.cpu_count()}
    result["help_s"] = help_times(args.help_repeat)
    result["components"] = components()
    work = Path(tempfile.mkdtemp(prefix="sealtrail-startup-"))
    public = prepare(work)
    gps_link = work / "gps0"
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.cli", "sim", "gps", "--pty-link", str(gps_link),
         "--rate-hz", str(args.gps_hz), "--loop", "0"], cwd=work, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert sim.stdout is not None
        if not sim.stdout.readline().strip():  # it prints the pty once it is there
            raise SystemExit("startup: the GPS simulator did not start")
        with running(work) as anvil, running_mosquitto(work) as broker:
            registry, _, submitter = deploy_and_register(anvil, GW, bytes.fromhex(public))
            write_key(work / "evm.key", submitter)
            port = free_port()
            configs = {
                "gps_only": gateway_toml(work, "gps_only", port=port, gps=gps_link),
                "truck": gateway_toml(work, "truck", port=port, gps=gps_link,
                                      truck=(broker, anvil, registry.address, 60)),
            }
            result["startup"] = {}
            for name, config in configs.items():
                runs = [one_start(work, config, work / f"{name}.db", port)
                        for _ in range(args.runs)]
                result["startup"][name] = {
                    "runs": runs,
                    **{f"median_{k}": round(statistics.median(r[k] for r in runs), 3)
                       for k in ("ready_s", "first_reading_s", "first_committed_s")}}
            # a journal of its own, so a registry of its own: batch 1 is another root there
            registry, _, submitter = deploy_and_register(anvil, GW, bytes.fromhex(public))
            write_key(work / "evm.key", submitter)
            steady = gateway_toml(work, "steady", port=port, gps=gps_link,
                                  truck=(broker, anvil, registry.address, 5))
            result["rss"] = steady_rss(work, steady, work / "steady.db", args.steady_s)
            result["import_self_ms"] = import_self_ms(work, configs["truck"])
            registry, _, submitter = deploy_and_register(anvil, GW, bytes.fromhex(public))
            write_key(work / "evm.key", submitter)
            traced = gateway_toml(work, "traced", port=port, gps=gps_link,
                                  truck=(broker, anvil, registry.address, 2))
            result["heap_mb"] = heap_by_package(work, traced, work / "traced.db")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    result["goals"] = {"reading_within_s": 2.0, "steady_rss_mb_max": 80, "help_s_max": 0.5}
    finish(result, work, args.keep)


if __name__ == "__main__":
    main()
