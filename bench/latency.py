"""Sensor byte to verified alert at customs, through the real agent and a real broker.

    python bench/latency.py [--duration 20] [--alert-rate 50] [--gps-rate 1000]

Four processes, as deployed: a sensor process writing to two pseudo-terminals (a GNSS receiver
sending 1,000 five-sentence NMEA epochs per second, and an e-seal reader), the agent (serial GPS
source + serial seal source -> signed journal, synchronous=FULL -> customs MQTT sink with the
readings uplink on), Mosquitto running deploy/mosquitto/mosquitto.conf (TLS, passwords, ACL),
and a customs subscriber that checks each alert's Ed25519 signature with the gateway key.

An alert on demand: a $PSTSL sentence with a forged MAC, which the seal source turns into a
critical sensorAuthFailure alert at once. Latency is from just before the sentence's bytes are
written to the pty to just after the subscriber verified the alert (CLOCK_MONOTONIC, shared by
the processes); the first `--warmup` seconds are left out. Prints one JSON line.
Budget (DESIGN.md): p99 under 50 ms at 1,000 readings/s.

`stages_p50_p99_ms` splits it, from a probe consumer in the agent beside the sink: write to
commit (pty read, decode, MAC check, queue, sign, group commit with fsync), commit to the
broker's PUBACK at the sink, and PUBACK to verified at customs (negative when the broker
forwards the alert before its PUBACK reaches the gateway, as it usually does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker helper the integration tests use

from edge_agent.sinks.customs_mqtt import CustomsMqttSink, DeliveryPolicy  # noqa: E402

GW = "gw-bench"
SEAL = "SEAL0001"
SEAL_KEY = bytes(range(32))
LAT, LON = -34.9, -56.2


def sensors(conn: Connection, duration_s: float, gps_rate: int, alert_rate: float) -> None:
    """Sensor process: make the ptys, wait for the agent, then write for `duration_s`."""
    from firmware_sim.nmea import SimFix, epoch_bytes
    from firmware_sim.pty import PtyPair
    from firmware_sim.seal import SealMessage, compute_mac

    with PtyPair() as gps, PtyPair() as seal:
        conn.send((gps.path, seal.path))
        conn.recv()  # the agent has both ports open
        os.set_blocking(gps.master_fd, True)
        t0_ms = time.time_ns() // 1_000_000
        start = time.monotonic()
        tick = 0.01  # GPS bytes go out every 10 ms, gps_rate / 100 epochs at a time
        per_tick = max(1, round(gps_rate * tick))
        next_gps, next_alert = start, start + 0.5
        fix = ctr = 0
        written: dict[int, int] = {}
        while (now := time.monotonic()) < start + duration_s:
            if now >= next_alert:
                ctr += 1
                fake = compute_mac(b"\xee" * 32, SEAL, ctr, "C", 90, t0_ms + ctr)
                sentence = SealMessage(SEAL, ctr, "C", 90, t0_ms + ctr, fake).sentence()
                written[ctr] = time.monotonic_ns()
                os.write(seal.master_fd, sentence)
                next_alert += 1.0 / alert_rate
            if now >= next_gps:
                chunk = b"".join(
                    epoch_bytes(SimFix(t_ms=t0_ms + (fix + i), lat=LAT + (fix + i) * 1e-7,
                                       lon=LON, speed_mps=10.0, course_deg=0.0),
                                time_decimals=3)
                    for i in range(per_tick))
                fix += per_tick
                os.write(gps.master_fd, chunk)
                next_gps += tick
            time.sleep(max(0.0, min(next_gps, next_alert) - time.monotonic()))
        conn.send({"written": written, "fixes": fix, "elapsed_s": time.monotonic() - start})
        conn.recv()  # keep the ptys open until the agent is done with them


def customs(conn: Connection, host: str, port: int, ca: str, password: str,
            pub_hex: str) -> None:
    """Customs subscriber process: verify every alert, note when, count readings."""
    import ssl

    import aiomqtt

    from ledger_client.keys import public_from_hex
    from ledger_client.records import check_schema, parse, verify_signature

    key = public_from_hex(pub_hex)
    received: dict[int, int] = {}
    counts = {"readings": 0, "bad": 0}

    async def read(client: aiomqtt.Client, expected: set[int], done: asyncio.Event) -> None:
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            if message.topic.value.endswith("/readings"):
                counts["readings"] += payload.count(b"\n") + 1
                continue
            try:
                record = parse(payload)
                check_schema(record, GW)
                verify_signature(record, key)
            except Exception:
                counts["bad"] += 1
                continue
            ctr = int(record["body"]["details"]["message"].split(",")[1])
            received.setdefault(ctr, time.monotonic_ns())
            if expected and expected <= received.keys():
                done.set()

    async def main() -> None:
        tls = ssl.create_default_context(cafile=ca)
        async with aiomqtt.Client(host, port, username="customs", password=password,
                                  tls_context=tls) as client:
            await client.subscribe(f"sealtrail/v1/{GW}/alerts", qos=1)
            await client.subscribe(f"sealtrail/v1/{GW}/readings", qos=1)
            conn.send("ready")
            expected: set[int] = set()
            done = asyncio.Event()
            reader = asyncio.create_task(read(client, expected, done))
            expected |= await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            if expected <= received.keys():
                done.set()
            try:
                async with asyncio.timeout(10):
                    await done.wait()
            except TimeoutError:
                pass  # reported as missing
            reader.cancel()
        conn.send({"received": received, **counts})

    asyncio.run(main())


class StageProbe:
    """A consumer beside the sink that notes, per alert, when the journal head passed it
    (committed) and when the sink had the broker's PUBACK: where the time goes."""

    name = "stage-probe"
    settles = False

    def __init__(self, journal: Any, sink: Any):
        self.journal = journal
        self.sink = sink
        self.position = journal.head()[0]
        self.marks: dict[int, tuple[int, int]] = {}  # ctr -> (committed, acked) monotonic ns
        self._waiting: set[asyncio.Task[None]] = set()

    async def run(self, tail: Any) -> None:
        while True:
            await tail.wait_beyond(self.position)
            seen = time.monotonic_ns()
            alerts = self.journal.alerts_after(self.position)
            self.position = max(tail.head, alerts[-1].seq if alerts else 0)
            for alert in alerts:
                ctr = int(alert.record()["body"]["details"]["message"].split(",")[1])
                task = asyncio.create_task(self._acked(alert.seq, ctr, seen))
                self._waiting.add(task)
                task.add_done_callback(self._waiting.discard)

    async def _acked(self, seq: int, ctr: int, committed: int) -> None:
        await self.sink.wait_delivered(seq)
        self.marks[ctr] = (committed, time.monotonic_ns())


def agent(conn: Connection, workdir: str, gps_path: str, seal_path: str, host: str, port: int,
          ca: str, password: str, linger_s: float) -> None:
    """The gateway process: the real agent with its serial sources and the customs sink."""
    from edge_agent.agent import Agent
    from edge_agent.journal import Journal
    from edge_agent.sinks.tls import client_context
    from edge_agent.sources.gps_filter import FixFilterParams
    from edge_agent.sources.seal_auth import SealAuthenticator
    from edge_agent.sources.serial_gps import SerialGpsSource
    from edge_agent.sources.serial_seal import SerialSealSource
    from ledger_client.keys import load_key
    from sealtrail.mqtt import MqttSettings

    async def main() -> None:
        journal = Journal(Path(workdir) / "journal.db", gateway_id=GW,
                          key=load_key(Path(workdir) / "gw.key"))
        gps = SerialGpsSource(gps_path, sensor_id="gps0", baudrate=115200,
                              filters=FixFilterParams(max_age_ms=None, max_future_ms=None))
        seal = SerialSealSource(seal_path, SealAuthenticator(journal, {SEAL: SEAL_KEY},
                                                             alert_interval_s=0),
                                reader_id="lane1")
        sink = CustomsMqttSink(journal, MqttSettings(host, port, username=GW, password=password,
                                                     tls=client_context(ca)),
                               policy=DeliveryPolicy(readings_linger_s=linger_s))
        probe = StageProbe(journal, sink)
        agent = Agent(journal, [gps, seal], [sink, probe])
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await gps.connected.wait()
        await seal.connected.wait()
        await sink.connected.wait()
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        stop.set()
        await task
        conn.send({"sink": dict(sink.counts), "gps": gps.stats().written,
                   "head": journal.head()[0], "marks": probe.marks})
        journal.close()

    asyncio.run(main())


def expect(conn: Connection, procs: list[Any], timeout: float = 120.0) -> Any:
    """The next message from a child; fail (not hang) if any child died first."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        dead = [p for p in procs if p.exitcode not in (None, 0)]
        if dead or time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            raise SystemExit(f"latency bench: {dead or 'timeout'}: see the traceback above")
    return conn.recv()


def percentile(sorted_ms: list[float], q: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--gps-rate", type=int, default=1000)
    parser.add_argument("--alert-rate", type=float, default=50.0)
    parser.add_argument("--linger", type=float, default=DeliveryPolicy().readings_linger_s,
                        help="readings_linger_s of the sink (0: a readings message per commit)")
    args = parser.parse_args()

    from helpers.mosquitto import make_test_ca, running_secure_mosquitto

    from ledger_client.keys import create_key, public_hex

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="sealtrail-latency-") as tmp:
        work = Path(tmp)
        pki = make_test_ca(work / "pki")
        key = create_key(work / "gw.key")
        with running_secure_mosquitto(work, pki, users=(GW, "customs")) as broker:
            ca = str(broker.ca_path)
            s_conn, s_child = ctx.Pipe()
            c_conn, c_child = ctx.Pipe()
            a_conn, a_child = ctx.Pipe()
            procs = [ctx.Process(target=sensors, args=(s_child, args.duration, args.gps_rate,
                                                       args.alert_rate)),
                     ctx.Process(target=customs, args=(c_child, broker.host, broker.port, ca,
                                                       broker.passwords["customs"],
                                                       public_hex(key)))]
            for proc in procs:
                proc.start()
            gps_path, seal_path = expect(s_conn, procs)
            assert expect(c_conn, procs) == "ready"
            procs.append(ctx.Process(target=agent, args=(a_child, tmp, gps_path, seal_path,
                                                         broker.host, broker.port, ca,
                                                         broker.passwords[GW], args.linger)))
            procs[-1].start()
            assert expect(a_conn, procs) == "ready"
            s_conn.send("go")
            sent = expect(s_conn, procs)
            c_conn.send(set(sent["written"]))  # the subscriber returns once it has them all
            got = expect(c_conn, procs)
            a_conn.send("stop")
            gateway = expect(a_conn, procs)
            s_conn.send("bye")
            for proc in procs:
                proc.join(30)

    written, received = sent["written"], got["received"]
    first = min(written.values()) + int(args.warmup * 1e9)
    latencies = sorted((received[c] - t) / 1e6 for c, t in written.items()
                       if c in received and t >= first)
    missing = [c for c in written if c not in received]
    stages: dict[str, list[float]] = {"write_to_commit": [], "commit_to_puback": [],
                                      "puback_to_verified": []}
    for c, t in written.items():
        if c in received and c in gateway["marks"] and t >= first:
            committed, acked = gateway["marks"][c]
            stages["write_to_commit"].append((committed - t) / 1e6)
            stages["commit_to_puback"].append((acked - committed) / 1e6)
            stages["puback_to_verified"].append((received[c] - acked) / 1e6)
    print(json.dumps({
        "bench": "latency", "path": "pty byte -> agent -> mosquitto (TLS, ACL) -> verified",
        "samples": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
        "alerts_missing": len(missing), "alerts_bad_signature": got["bad"],
        "background_readings_per_s": round(gateway["gps"] / sent["elapsed_s"]),
        "readings_at_customs_per_s": round(got["readings"] / sent["elapsed_s"]),
        "alert_rate_per_s": args.alert_rate, "duration_s": args.duration,
        "readings_linger_s": args.linger,
        "stages_p50_p99_ms": {name: [round(percentile(sorted(v), q), 2) for q in (0.5, 0.99)]
                              for name, v in stages.items() if v},
        "sink": gateway["sink"], "cpus": os.cpu_count(),
        "goal_p99_ms": 50, "goal_met": percentile(latencies, 0.99) < 50,
    }))


if __name__ == "__main__":
    main()
