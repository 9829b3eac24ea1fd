"""How many gateway messages per second customs verifies and stores, per receiver and per engine.

    .venv/bin/python bench/customs_ingest.py [--messages 20000] [--gateways 200]

The real path: signed records (an alert or a one-record readings message each, like a
gateway's sink sends) wait in a real Mosquitto for the receivers' persistent sessions; then 1,
2 or 4 real `sealtrail customs watch` processes (one MQTT 5 shared-subscription group) drain
them into SQLite or PostgreSQL. The rate is counted from the first stored message to the last
(the store is polled), so process start-up does not count. Beside it, in the same run: the raw
Ed25519 verification rate of one core, and the receiver's pipeline alone (checks and store, no
MQTT) on one core. Goal (DESIGN.md budgets): one receiver at >= 0.5 of the raw verify rate.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker and PostgreSQL helpers the tests use

import paho.mqtt.client as paho  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from helpers.mosquitto import running_mosquitto  # noqa: E402
from helpers.postgres import running_postgres  # noqa: E402

from customs.receive import Receiver  # noqa: E402
from customs.store import open_store  # noqa: E402
from customs.trust import StaticTrust  # noqa: E402
from firmware_sim.gateways import SimGateway, gateway_ids, gateway_key  # noqa: E402
from ledger_client.keys import public_hex  # noqa: E402

CONFIGS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 4))


def messages(seed: bytes, gateways: int, count: int) -> list[tuple[str, bytes]]:
    sims = [SimGateway(gw, gateway_key(seed, gw)) for gw in gateway_ids(gateways)]
    out: list[tuple[str, bytes]] = []
    tick = 0
    while len(out) < count:
        for g in sims:
            out.append((f"sealtrail/v1/{g.gw}/readings", g.reading(tick)))
            out.append((f"sealtrail/v1/{g.gw}/alerts", g.alert(tick)))
        tick += 1
    return out[:count]


def raw_verify_rate(sample: bytes, seconds: float = 2.0) -> float:
    key = Ed25519PrivateKey.generate()
    public, sig = key.public_key(), key.sign(sample)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            public.verify(sig, sample)
        done += 200
    return done / (time.perf_counter() - started)


def pipeline_rate(target: str, msgs: list[tuple[str, bytes]], trust: StaticTrust) -> float:
    """The receiver's checks and store writes alone, groups of 200, one thread."""
    store = open_store(target)
    try:
        receiver = Receiver(store, trust)
        started = time.perf_counter()
        for i in range(0, len(msgs), 200):
            receiver.handle_batch(msgs[i:i + 200])
        return len(msgs) / (time.perf_counter() - started)
    finally:
        store.close()


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in msgs]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


class Receivers:
    def __init__(self, port: int, target: str, trust: Path, count: int):
        self.argv = [[sys.executable, "-m", "sealtrail.cli", "customs", "watch", "--broker",
                      "127.0.0.1", "--port", str(port), "--plain", "--trust", str(trust),
                      "--db", target, "--group", "bench", "--client-id", f"bench-rx-{n}"]
                     for n in range(count)]
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        self.procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True) for argv in self.argv]
        for proc in self.procs:
            assert proc.stderr is not None
            for line in proc.stderr:  # the receiver says when its subscriptions are in place
                if "subscribed to" in line:
                    break
            else:
                raise RuntimeError("a receiver exited before subscribing")

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)


def drain_rate(target: str, expected: int, timeout_s: float = 600) -> tuple[float, float]:
    """(messages/s from the first stored record to the last, seconds that took)."""
    store = open_store(target)
    try:
        first_at: float | None = None
        first_count = 0
        deadline = time.monotonic() + timeout_s
        while True:
            held = store.counts()["records"]
            now = time.monotonic()
            if held and first_at is None:
                first_at, first_count = now, held
            if held >= expected:
                span = max(now - (first_at or now), 1e-6)
                return (expected - first_count) / span, span
            if now > deadline:
                raise RuntimeError(f"only {held} of {expected} stored")
            time.sleep(0.02)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--gateways", type=int, default=200)
    args = ap.parse_args()
    seed = secrets.token_bytes(32)
    msgs = messages(seed, args.gateways, args.messages)
    keys = {gw: public_hex(gateway_key(seed, gw)) for gw in gateway_ids(args.gateways)}
    raw = raw_verify_rate(msgs[0][1])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sealtrail-bench-") as tmp_dir, \
            running_postgres() as pg, \
            running_mosquitto(Path(tmp_dir), extra_conf="max_inflight_messages 1000\n"
                              "max_queued_messages 1000000\n") as broker:
        tmp = Path(tmp_dir)
        trust = tmp / "trust.json"
        trust.write_text(json.dumps({"gateways": keys}))
        results["pipeline_sqlite_per_s"] = round(pipeline_rate(
            str(tmp / "pipeline.db"), msgs, StaticTrust(keys)))
        results["pipeline_postgres_per_s"] = round(pipeline_rate(
            pg.create_database("pipeline"), msgs, StaticTrust(keys)))
        for engine, count in CONFIGS:
            target = (str(tmp / f"{engine}-{count}.db") if engine == "sqlite"
                      else pg.create_database(f"{engine}_{count}"))
            rx = Receivers(broker.port, target, trust, count)
            rx.start()  # sessions and shared subscriptions exist; then the receivers go away
            rx.stop()
            publish_all(broker.port, msgs)
            rx.start()
            rate, span = drain_rate(target, len(msgs))
            rx.stop()
            results[f"{engine}_{count}_receivers_per_s"] = round(rate)
            results[f"{engine}_{count}_receivers_s"] = round(span, 2)
    one = results["postgres_1_receivers_per_s"]
    print(json.dumps({
        "bench": "customs_ingest", "messages": len(msgs), "gateways": args.gateways,
        "raw_verify_per_s": round(raw), **results,
        "ratio_1_receiver_postgres_to_raw_verify": round(one / raw, 2),
        "ratio_1_receiver_sqlite_to_raw_verify": round(results["sqlite_1_receivers_per_s"]
                                                       / raw, 2),
        "goal_ratio": 0.5,
        "scaling_2_over_1": round(results["postgres_2_receivers_per_s"] / one, 2),
        "scaling_4_over_1": round(results["postgres_4_receivers_per_s"] / one, 2),
        "cores": __import__("os").cpu_count()}))


if __name__ == "__main__":
    main()
