"""The customs side at national scale: 3 receivers sharing the stream into PostgreSQL.

Everything is real: the deployed broker configuration (TLS, one account per gateway, the ACL),
`sealtrail sim gateways` publishing signed records from thousands of connections, three
`sealtrail customs watch` processes in one MQTT 5 shared-subscription group, and a PostgreSQL
cluster. What is checked is what customs promises: every record a gateway sent is stored exactly
once, byte for byte, verified, whatever happens to one receiver or to the database.

Sizes: LOAD_GATEWAYS (default 2000) at 1 alert and 1 readings message per second each for
LOAD_SECONDS (default 10). The figures (messages/s through customs) are printed for the
closing note; they are not asserted (performance lives in bench/).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from helpers.customs_rig import Lines
from helpers.mosquitto import SecureBroker, make_test_ca, running_secure_mosquitto
from helpers.postgres import Postgres

from customs.store import open_store
from firmware_sim.gateways import gateway_ids, gateway_key
from ledger_client.keys import public_hex

pytestmark = pytest.mark.integration
LOAD_GATEWAYS = int(os.environ.get("LOAD_GATEWAYS", "2000"))
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "10"))


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> None:
    """Thousands of connections need thousands of descriptors, in the broker (a child of this
    process) and in the simulator."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Rig:
    """Broker, gateways' accounts and keys, receivers, simulator: one test's world."""

    def __init__(self, tmp: Path, stack: ExitStack, pg: Postgres, gateways: int, name: str):
        self.tmp = tmp
        self.seed = secrets.token_bytes(32)
        self.ids = gateway_ids(gateways, prefix=name)
        self.pki = make_test_ca(tmp / "pki")
        self.broker: SecureBroker = stack.enter_context(running_secure_mosquitto(
            tmp, self.pki, users=("customs",), start=False))
        self.broker.add_users_bulk(self.ids)
        self.broker.start()
        (tmp / "gw-passwords.json").write_text(json.dumps(
            {gw: self.broker.passwords[gw] for gw in self.ids}))
        (tmp / "gw-passwords.json").chmod(0o600)
        self.trust = tmp / "trust.json"
        self.trust.write_text(json.dumps({"gateways": {
            gw: public_hex(gateway_key(self.seed, gw)) for gw in self.ids}}))
        self.url = pg.create_database(f"scale_{name.replace('-', '_')}_{secrets.token_hex(3)}")
        self.sent_log = tmp / "sent.db"
        self.receivers: dict[int, subprocess.Popen[str]] = {}
        self.logs: dict[int, Lines] = {}
        self.stack = stack
        stack.callback(self.stop_all)

    def start_receiver(self, n: int) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealtrail.cli", "customs", "watch", "--broker", "127.0.0.1",
             "--port", str(self.broker.port), "--ca", str(self.pki / "ca.crt"),
             "--username", "customs", "--password-file",
             str(self.broker.conf_path.parent / "customs.secret"), "--trust", str(self.trust),
             "--db", self.url, "--group", "customs", "--client-id", f"customs-{n}",
             "--backoff-max", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.receivers[n] = proc
        self.logs[n] = Lines(proc.stderr)
        self.logs[n].wait(lambda ls: any("subscribed to" in line for line in ls), timeout=60)

    def stop_all(self) -> None:
        for proc in self.receivers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.receivers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def simulate(self, seconds: float, rate: float = 1.0) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sealtrail.cli", "sim", "gateways", "--broker", "127.0.0.1",
             "--port", str(self.broker.port), "--ca", str(self.pki / "ca.crt"),
             "--passwords", str(self.tmp / "gw-passwords.json"), "--count", str(len(self.ids)),
             "--prefix", self.ids[0].rsplit("-", 1)[0], "--rate", str(rate), "--duration",
             str(seconds), "--seed", self.seed.hex(), "--sent-log", str(self.sent_log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sent(self) -> dict[tuple[str, int], bytes]:
        with sqlite3.connect(self.sent_log) as db:
            return {(gw, seq): bytes(s) for gw, seq, s in db.execute(
                "SELECT gw, seq, signed FROM sent")}


def wait_stored(url: str, expected: int, timeout: float) -> float:
    """Seconds until the store holds ``expected`` records. Polled (with a deadline): the
    receivers are other processes and the database offers no event a test can wait on."""
    store = open_store(url)
    started = time.monotonic()
    try:
        delay = 0.05
        while True:
            held = store.counts()["records"]
            if held >= expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"only {held} of {expected} records stored in {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        store.close()


def check_exactly_once(url: str, sent: dict[tuple[str, int], bytes]) -> dict[str, Any]:
    """Every record sent is stored once, with the bytes the gateway signed; nothing else."""
    store = open_store(url)
    try:
        counts = store.counts()
        assert counts["records"] == len(sent), counts
        assert counts["quarantine"] == {} and counts["overflow"] == {}, counts
        alerts = sum(1 for (_, _), s in sent.items() if b'"kind":"alert"' in s)
        assert counts["alerts"] == alerts
        gws = sorted({gw for gw, _ in sent})
        for gw in gws[:: max(1, len(gws) // 50)] + gws[-1:]:  # byte-for-byte on a sample
            held = {r.seq: r.signed for r in store.records(gw)}
            assert held == {seq: s for (g, seq), s in sent.items() if g == gw}, gw
        frontier = {gw: row.acked_seq for gw, row in store.gateways().items()}
        return {"records": counts["records"], "alerts": counts["alerts"],
                "duplicates": counts["duplicates"], "gateways": len(frontier)}
    finally:
        store.close()


@pytest.fixture
def world(tmp_path: Path, pg_cluster: Postgres, request: pytest.FixtureRequest) -> Iterator[
        tuple[Path, ExitStack, Postgres]]:
    with ExitStack() as stack:
        yield tmp_path, stack, pg_cluster


def test_thousands_of_gateways_into_three_receivers_and_postgresql(
        world: tuple[Path, ExitStack, Postgres]) -> None:
    tmp, stack, pg = world
    rig = Rig(tmp, stack, pg, LOAD_GATEWAYS, "gw-load")
    for n in (1, 2, 3):
        rig.start_receiver(n)
    sim = rig.simulate(LOAD_SECONDS)
    out, err = sim.communicate(timeout=LOAD_SECONDS * 20 + 300)
    assert sim.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    sent = rig.sent()
    assert summary["acked"] == summary["published"] == len(sent) == LOAD_GATEWAYS * 2 * round(
        LOAD_SECONDS)
    drain_s = wait_stored(rig.url, len(sent), timeout=600)
    result = check_exactly_once(rig.url, sent)
    assert all(p.poll() is None for p in rig.receivers.values())
    figures = {**summary, **result, "drain_after_publish_s": round(drain_s, 1),
               "through_customs_per_s": round(len(sent) / (summary["publish_s"] + drain_s), 1)}
    print(f"\nLOAD {json.dumps(figures)}")


def test_a_receiver_killed_and_postgresql_restarted_lose_and_duplicate_nothing(
        world: tuple[Path, ExitStack, Postgres]) -> None:
    tmp, stack, pg = world
    rig = Rig(tmp, stack, pg, 100, "gw-fail")
    for n in (1, 2, 3):
        rig.start_receiver(n)
    sim = rig.simulate(12, rate=5.0)
    half = 100 * 2 * 30  # a fifth of the stream, then the faults
    wait_stored(rig.url, half, timeout=120)
    victim = rig.receivers[2]
    victim.send_signal(signal.SIGKILL)  # mid-stream, holding unacknowledged messages
    victim.wait(10)
    pg.restart()                        # every receiver loses its connections at once
    rig.start_receiver(2)               # systemd restarts the killed one (same client id)
    _, err = sim.communicate(timeout=300)
    assert sim.returncode == 0, err[-2000:]
    sent = rig.sent()
    wait_stored(rig.url, len(sent), timeout=300)
    result = check_exactly_once(rig.url, sent)
    assert all(rig.receivers[n].poll() is None for n in (1, 2, 3))  # nobody gave up
    print(f"\nFAILOVER {json.dumps(result)}")
