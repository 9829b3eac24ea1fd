"""``sim seal`` and ``sim fleet`` as processes: ptys, real time, SIGTERM and error exits."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.mosquitto import free_port

from firmware_sim.keystore import derive_key

pytestmark = pytest.mark.integration

SIM = [sys.executable, "-m", "firmware_sim.cli", "sim"]
T0 = 1_750_000_000_000
LINE = re.compile(r"\$PSTSL,([^,]+),(\d+),([COT]),(\d+),(\d+),([0-9a-f]{32})\*[0-9A-F]{2}")


def _start(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a simulator and read its port lines up to "ready"."""
    proc = subprocess.Popen([*SIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    ports = {}
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc, ports
        _, dev, path = line.split()
        ports[dev] = path
    proc.wait()
    raise AssertionError(f"simulator exited before ready: {proc.stderr.read()}")  # type: ignore[union-attr]


def _read_until_hangup(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    data = bytearray()
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return bytes(data)


def test_sim_seal_on_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "reader0"
    proc, ports = _start(["seal", "--id", "S-1", "--id", "S-2", "--pty-link", str(link),
                          "--fast", "--duration-s", "30", "--heartbeat-s", "10",
                          "--open-at", "15", "--seed", "4", "--t0-ms", str(T0)])
    assert ports == {"reader": str(link)}
    data = _read_until_hangup(str(link))
    assert proc.wait(20) == 0
    msgs = [LINE.fullmatch(x) for x in data.decode().split("\r\n") if x]
    assert all(msgs)
    got = [(m[1], int(m[2]), m[3], int(m[5])) for m in msgs if m]
    expected = []
    for ctr, t_s, state in ((1, 0, "C"), (2, 10, "C"), (3, 15, "O"), (4, 20, "O")):
        expected += [(sid, ctr, state, T0 + t_s * 1000) for sid in ("S-1", "S-2")]
    assert got == expected
    for m in msgs:
        assert m is not None
        text = ",".join(m.groups()[:5]).encode()
        key = derive_key(4, m[1])
        assert hmac.new(key, text, hashlib.sha256).hexdigest()[:32] == m[6]


def test_realtime_fleet_stamps_wall_clock_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "rt.toml"
    scenario.write_text('[run]\nduration_s = 600\n[[trucks]]\nid = "gps0"\nrate_hz = 5\n')
    summary = tmp_path / "s.json"
    proc, ports = _start(["fleet", "--scenario", str(scenario), "--realtime", "--wait-readers",
                          "--pty-dir", str(tmp_path), "--summary", str(summary)])
    fd = os.open(ports["gps0"], os.O_RDONLY | os.O_NOCTTY)
    buf = b""
    try:
        while buf.count(b"$GNRMC") < 6:
            buf += os.read(fd, 4096)
        now_ms = time.time() * 1000
    finally:
        os.close(fd)
    rmc = [x.split(b",") for x in buf.split(b"\r\n") if x.startswith(b"$GNRMC")]
    last = rmc[-1][1].decode()  # hhmmss.ss UTC
    tod_ms = (int(last[:2]) * 3600 + int(last[2:4]) * 60 + float(last[4:])) * 1000
    assert abs((now_ms % 86_400_000) - tod_ms) < 1500
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    doc = json.loads(summary.read_text())
    assert doc["stopped_early"] and doc["mode"] == "realtime"
    assert not os.path.lexists(ports["gps0"])


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    scenario = tmp_path / "m.toml"
    scenario.write_text("[run]\nduration_s = 5\n[[seals]]\ncount = 2\n")
    proc = subprocess.run([*SIM, "fleet", "--scenario", str(scenario), "--fast", "--mqtt-host",
                           "127.0.0.1", "--mqtt-port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "MQTT" in proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run([*SIM, "fleet", "--scenario", str(scenario)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "give an MQTT host" in missing.stderr
