"""The fleet runner against real ptys and a real Mosquitto: scale, determinism, faults, accounting.

Everything is checked from the receiving end: bytes read from the ptys by this test and MQTT
messages received by a subscriber, classified here with an independent HMAC check. The run
summary must agree with what actually arrived, because tests of the agent rely on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.mosquitto import Broker, running_mosquitto

from firmware_sim.fleet import Fleet, FleetOptions
from firmware_sim.keystore import derive_key, read_keystore
from firmware_sim.scenario import load_scenario

pytestmark = pytest.mark.integration

T0 = 1_750_000_000_000
BROKER_CONF = "max_queued_messages 200000\nmax_inflight_messages 100"
PSTSL = re.compile(rb"\$(PSTSL,([^,*]+),(\d+),([COT]),(\d+),(\d+),([0-9a-f]{32}))\*([0-9A-F]{2})")


# --- receiving ends -------------------------------------------------------------------------


class PtyCaptures:
    """Reads every pty port of a run in its own thread, reopening the link after a replug.

    Hooked to the fleet's ``on_event``: "ready" starts the readers, "replug" wakes a reader
    whose port hung up, "done" ends them. Unplug/replug observations are recorded as they
    happen, from inside the simulator's callback, so the link state is seen at that moment.
    """

    def __init__(self) -> None:
        self.data: dict[str, bytearray] = defaultdict(bytearray)
        self.opens: dict[str, list[str]] = defaultdict(list)
        self.observed: list[dict[str, Any]] = []
        self._replugs: dict[str, int] = defaultdict(int)
        self._finished = False
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "ready":
            for dev, path in event["ports"].items():
                t = threading.Thread(target=self._read, args=(dev, path), daemon=True)
                t.start()
                self._threads.append(t)
        elif kind in ("unplug", "replug"):
            link = event.get("link") or event.get("path")
            self.observed.append({**event, "link_exists": os.path.lexists(link),
                                  "link_target": _readlink(link)})
            if kind == "replug":
                with self._cond:
                    self._replugs[event["device"]] += 1
                    self._cond.notify_all()
        elif kind == "done":
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _read(self, dev: str, path: str) -> None:
        opened = 0
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
            except FileNotFoundError:
                return  # the run ended and removed the link
            opened += 1
            self.opens[dev].append(os.ttyname(fd))
            try:
                while chunk := _read_or_eof(fd):
                    self.data[dev] += chunk
            finally:
                os.close(fd)
            with self._cond:
                self._cond.wait_for(
                    lambda n=opened: self._replugs[dev] >= n or self._finished)
                if self._replugs[dev] < opened:
                    return

    def join(self) -> None:
        for t in self._threads:
            t.join(10)
            assert not t.is_alive()


def _read_or_eof(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the master side hung up
        return b""


def _readlink(path: str | None) -> str | None:
    try:
        return os.readlink(path) if path else None
    except OSError:
        return None


class Subscriber:
    """A paho client subscribed (QoS 1) to every sensor topic of a gateway."""

    def __init__(self, broker: Broker, gateway: str) -> None:
        self.by_seal: dict[str, list[bytes]] = defaultdict(list)
        self.count = 0
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"sealtrail/v1/{gateway}/sensors/#", 1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.by_seal[msg.topic.rsplit("/", 1)[1]].append(msg.payload)
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- independent classification -------------------------------------------------------------


def classify(messages: list[tuple[str, int, str, int, int, str]], keys: dict[str, bytes]
             ) -> dict[str, dict[str, list[int]]]:
    """What a correct agent does, in arrival order: MAC ok and counter above the highest
    accepted -> genuine; MAC ok but not above -> replay; MAC wrong -> forged."""
    out: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {"genuine": [], "replays": [], "forged": []})
    highest: dict[str, int] = defaultdict(int)
    for seal_id, ctr, state, battery, t_ms, mac in messages:
        text = f"{seal_id},{ctr},{state},{battery},{t_ms}".encode()
        good = hmac.new(keys[seal_id], text, hashlib.sha256).hexdigest()[:32] == mac
        if not good:
            out[seal_id]["forged"].append(ctr)
        elif ctr > highest[seal_id]:
            out[seal_id]["genuine"].append(ctr)
            highest[seal_id] = ctr
        else:
            out[seal_id]["replays"].append(ctr)
    return out


def parse_reader_stream(data: bytes) -> list[tuple[str, int, str, int, int, str]]:
    found = []
    for line in data.split(b"\r\n"):
        m = PSTSL.fullmatch(line)
        if m is None:
            continue
        xor = 0
        for b in m[1]:
            xor ^= b
        assert f"{xor:02X}".encode() == m[8], line
        found.append((m[2].decode(), int(m[3]), m[4].decode(), int(m[5]), int(m[6]),
                      m[7].decode()))
    return found


def parse_json(seal_id: str, payload: bytes) -> tuple[str, int, str, int, int, str]:
    d = json.loads(payload)
    assert d["seal_id"] == seal_id and set(d) == {
        "seal_id", "ctr", "state", "battery_pct", "seal_t_ms", "mac"}
    return (d["seal_id"], d["ctr"], d["state"], d["battery_pct"], d["seal_t_ms"], d["mac"])


def assert_summary_matches(summary: dict[str, Any], seen: dict[str, dict[str, list[int]]],
                           seal_ids: list[str]) -> None:
    for sid in seal_ids:
        s = summary["seals"][sid]
        got = seen[sid]
        assert got["genuine"] == s["genuine"], sid  # arrival order == strictly increasing
        assert sorted(got["replays"]) == s["replays"], sid
        assert sorted(got["forged"]) == s["forged"], sid
        assert len(got["genuine"]) + len(got["replays"]) + len(got["forged"]) == s["sent"]


# --- runs -----------------------------------------------------------------------------------

MIXED = """
[run]
duration_s = 40
gateway_id = "gw-mixed"
[[trucks]]
id = "truck-1"
rate_hz = 5
noise_m = 2.0
stops = [{ at_m = 300, duration_s = 5 }]
[[readers]]
id = "reader-1"
[[seals]]
count = 3
prefix = "RD-"
width = 1
via = "reader-1"
heartbeat_s = 2
[[seals]]
count = 6
prefix = "MQ-"
width = 1
heartbeat_s = 3
[[events]]
{events}
"""

MIXED_EVENTS = """t_s = 4
type = "jamming"
target = "truck-1"
duration_s = 12
ramp_s = 4
[[events]]
t_s = 6
type = "seal_open"
target = ["RD-1", "MQ-2"]
[[events]]
t_s = 9
type = "replay"
target = ["RD-*", "MQ-*"]
[[events]]
t_s = 11
type = "forge"
target = ["RD-2", "MQ-3"]
state = "C"
[[events]]
t_s = 13
type = "garbage"
target = ["reader-1", "truck-1"]
bytes = 80
[[events]]
t_s = 14
type = "wrong_baud"
target = "reader-1"
[[events]]
t_s = 15
type = "clock_skew"
target = "RD-3"
skew_ms = 90000
duration_s = 6
[[events]]
t_s = 20
type = "unplug"
target = "reader-1"
duration_s = 5
[[events]]
t_s = 30
type = "replay"
target = "RD-1"
ctr = 2"""


def run_fleet(scenario_path: Path, broker: Broker | None, seed: int, pty_dir: Path,
              **extra: Any) -> tuple[dict[str, Any], PtyCaptures]:
    captures = PtyCaptures()
    opts = FleetOptions(seed=seed, fast=True, t0_ms=T0, pty_dir=pty_dir,
                        mqtt_host=broker.host if broker else None,
                        mqtt_port=broker.port if broker else 1883,
                        on_event=captures.on_event, log=lambda _m: None, **extra)
    summary = asyncio.run(Fleet(load_scenario(scenario_path), opts).run())
    captures.join()
    return summary, captures


def test_same_seed_same_bytes_and_summary_matches_what_arrived(tmp_path: Path) -> None:
    scenario = tmp_path / "mixed.toml"
    scenario.write_text(MIXED.replace("{events}", MIXED_EVENTS))
    runs = []
    with running_mosquitto(tmp_path, extra_conf=BROKER_CONF) as broker:
        for n, seed in enumerate((7, 7, 8)):
            sub = Subscriber(broker, "gw-mixed")
            pty_dir = tmp_path / f"run{n}"
            pty_dir.mkdir()
            summary, caps = run_fleet(scenario, broker, seed, pty_dir)
            assert sub.wait_for(summary["mqtt"]["acked"])
            sub.close()
            runs.append((summary, caps, sub))
    (s1, c1, m1), (_, c2, m2), (_, c3, m3) = runs
    for dev in ("truck-1", "reader-1"):
        assert c1.data[dev] and c1.data[dev] == c2.data[dev], dev
        assert c1.data[dev] != c3.data[dev], dev
        assert hashlib.sha256(c1.data[dev]).hexdigest() == s1["ports"][dev]["sha256"]
        assert len(c1.data[dev]) == s1["ports"][dev]["bytes"]
    assert m1.by_seal == m2.by_seal and m1.by_seal != m3.by_seal
    for sid, payloads in m1.by_seal.items():
        assert hashlib.sha256(b"".join(p + b"\n" for p in payloads)).hexdigest() == (
            s1["seals"][sid]["sha256"])

    # The summary's per-seal truth equals an independent classification of what arrived.
    keys = {sid: derive_key(7, sid) for sid in s1["seals"]}
    seen = classify(parse_reader_stream(bytes(c1.data["reader-1"])), keys)
    for sid, payloads in m1.by_seal.items():
        seen.update(classify([parse_json(sid, p) for p in payloads], keys))
    assert_summary_matches(s1, seen, list(s1["seals"]))
    totals = s1["totals"]
    assert totals["replays"] == 10 and totals["forged"] == 2  # 9 random + 1 by ctr; 2 targets
    assert s1["seals"]["RD-1"]["lost"], "the unplugged reader must have lost a heartbeat"
    assert s1["seals"]["RD-3"]["skewed"]
    gps = s1["ports"]["truck-1"]
    assert gps["nofix_epochs"] > 0 and gps["epochs"] == 200 and gps["lost_epochs"] == 0
    faults = [f["type"] for f in s1["ports"]["reader-1"]["faults"]]
    assert faults == ["garbage", "wrong_baud", "unplug"]


def test_unplug_removes_the_link_and_replugs_as_a_new_pty(tmp_path: Path) -> None:
    scenario = tmp_path / "unplug.toml"
    scenario.write_text("""
[run]
duration_s = 12
[[trucks]]
id = "gps0"
rate_hz = 2
link = "%s"
[[events]]
t_s = 3
type = "unplug"
target = "gps0"
duration_s = 4
""" % (tmp_path / "by-id" / "usb-sim-gps0"))
    (tmp_path / "by-id").mkdir()
    link = str(tmp_path / "by-id" / "usb-sim-gps0")
    summary, caps = run_fleet(scenario, None, 1, tmp_path)
    unplug, replug = caps.observed
    assert unplug["type"] == "unplug" and not unplug["link_exists"]
    assert replug["type"] == "replug" and replug["link_exists"]
    assert re.fullmatch(r"/dev/pts/\d+", replug["link_target"])
    assert replug["link_target"] != unplug["old"]
    assert caps.opens["gps0"] == [unplug["old"], replug["link_target"]]
    port = summary["ports"]["gps0"]
    assert port["pts"] == caps.opens["gps0"] and port["path"] == link
    assert not os.path.lexists(link)  # removed at the end
    # 24 epochs, 3.0 s..6.5 s (8 epochs) fell into the unplugged window
    assert port["epochs"] == 24 and port["lost_epochs"] == 8
    lines = bytes(caps.data["gps0"]).split(b"\r\n")
    times = [ln.split(b",")[1] for ln in lines if ln.startswith(b"$GNGGA")]
    assert len(times) == 16 and times[5] == b"150642.50" and times[6] == b"150647.00"


def test_counters_persist_across_runs(tmp_path: Path) -> None:
    scenario = tmp_path / "c.toml"
    scenario.write_text("""
[run]
duration_s = 10
[[readers]]
id = "r"
[[seals]]
id = "S"
via = "r"
heartbeat_s = 3
""")
    counters = tmp_path / "ctr.json"
    first, _ = run_fleet(scenario, None, 1, tmp_path, counters_file=counters)
    second, _ = run_fleet(scenario, None, 1, tmp_path, counters_file=counters)
    assert first["seals"]["S"]["genuine"][0] == 1
    assert second["seals"]["S"]["genuine"][0] == first["seals"]["S"]["last_ctr"] + 1


def test_one_thousand_mqtt_seals_every_message_arrives(tmp_path: Path) -> None:
    """1,000 seals, one connection each, through the CLI as a test engineer would run it."""
    keystore = tmp_path / "seals.json"
    cmd = [sys.executable, "-m", "firmware_sim.cli", "sim"]
    subprocess.run([*cmd, "keys", "--count", "1000", "--seed", "3", "--out", str(keystore)],
                   check=True, capture_output=True, timeout=60)
    scenario = tmp_path / "big.toml"
    scenario.write_text("""
[run]
duration_s = 60
gateway_id = "gw-big"
[[seals]]
count = 1000
heartbeat_s = 10
drain_pct_per_h = 30
[[events]]
t_s = 15
type = "seal_open"
target = "SEAL-0001*"
[[events]]
t_s = 25
type = "replay"
target = "SEAL-0002*"
[[events]]
t_s = 35
type = "forge"
target = ["SEAL-0003*", "SEAL-00999"]
""")
    summary_path = tmp_path / "summary.json"
    with running_mosquitto(tmp_path, extra_conf=BROKER_CONF) as broker:
        sub = Subscriber(broker, "gw-big")
        proc = subprocess.run(
            [*cmd, "fleet", "--scenario", str(scenario), "--fast", "--seed", "3",
             "--keys", str(keystore), "--mqtt-host", broker.host, "--mqtt-port",
             str(broker.port), "--summary", str(summary_path), "--t0-ms", str(T0)],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(summary_path.read_text())
        sent = summary["totals"]["seal_messages_sent"]
        assert sub.wait_for(sent), f"{sub.count} of {sent} arrived"
        sub.close()
    assert summary["mqtt"]["connections"] == 1000 and summary["mqtt"]["failed"] == 0
    assert sub.count == sent == summary["mqtt"]["acked"]
    assert len(sub.by_seal) == 1000
    assert summary["totals"]["genuine"] >= 6000 and summary["totals"]["lost"] == 0
    keys = read_keystore(keystore)
    seen: dict[str, dict[str, list[int]]] = {}
    for sid, payloads in sub.by_seal.items():
        seen.update(classify([parse_json(sid, p) for p in payloads], keys))
    assert_summary_matches(summary, seen, list(summary["seals"]))
    assert summary["totals"]["replays"] == 10 and summary["totals"]["forged"] == 11
    assert all(summary["seals"][f"SEAL-0001{i}"]["state"] == "O" for i in range(10))
    print(f"\n1,000-seal fleet: {sent} messages in {summary['wall_s']:.2f} s wall "
          f"({sent / summary['wall_s']:.0f} msg/s), {summary['mqtt']['connections']} "
          f"connections, simulator peak RSS {summary['peak_rss_kb'] / 1024:.0f} MB")


RECONNECT = """
[run]
name = "reconnect"
duration_s = 8
seed = 3
gateway_id = "gw-reconnect"

[[seals]]
count = 10
prefix = "RC"
width = 2
via = "mqtt"
heartbeat_s = 0.25
"""


def test_mqtt_seals_reconnect_after_a_broker_restart_and_lose_nothing(tmp_path: Path) -> None:
    """The broker restarts mid-run (state lost: no persistence): every seal connection opens
    again by itself, what failed meanwhile is sent again, and the seals' last messages, sent
    well after the restart, reach a subscriber."""
    scenario = tmp_path / "reconnect.toml"
    scenario.write_text(RECONNECT)
    with running_mosquitto(tmp_path, extra_conf=BROKER_CONF) as broker:
        sub = Subscriber(broker, "gw-reconnect")

        async def scenario_run() -> tuple[dict[str, Any], int]:
            fleet = Fleet(load_scenario(scenario), FleetOptions(
                fast=False, mqtt_host=broker.host, mqtt_port=broker.port,
                log=lambda _m: None))
            running = asyncio.create_task(fleet.run())
            assert await asyncio.to_thread(sub.wait_for, 40)  # a few rounds went through
            await asyncio.to_thread(broker.stop)
            before = sub.count
            await asyncio.to_thread(broker.start)
            return await running, before

        summary, before = asyncio.run(scenario_run())
        last = {sid: max(s["genuine"]) for sid, s in summary["seals"].items()}
        assert sub.wait_for(before + 10 * len(last))
        arrived = {sid: {json.loads(p)["ctr"] for p in ps} for sid, ps in sub.by_seal.items()}
        sub.close()
    mqtt_summary = summary["mqtt"]
    assert mqtt_summary["reconnects"] >= mqtt_summary["connections"] == 10
    assert mqtt_summary["failed"] == 0 and summary["totals"]["lost"] == 0
    assert all(last[sid] in arrived.get(sid, set()) for sid in last), (last, arrived)
