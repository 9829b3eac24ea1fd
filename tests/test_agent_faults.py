"""The real agent process under the faults an operator meets: killed in the middle of draining
a broker backlog, a full disk, a forged sentence repeated within one read.

Degrade, don't die: nothing a sensor sent and the agent acknowledged is lost, nothing is
journaled twice, and the agent keeps running (and saying why) while the disk is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.agent_process import AgentProcess, journal_records
from helpers.mosquitto import free_port, running_mosquitto

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.serial_seal import SerialSealSource
from firmware_sim.keystore import derive_key
from firmware_sim.pty import PtyPair
from firmware_sim.seal import Seal, SealMessage, compute_mac
from ledger_client.keys import create_key

pytestmark = pytest.mark.integration
GW = "gw-faults"
SEED = 41
BROKER_CONF = "max_queued_messages 1000000\nset_tcp_nodelay true"


def write_config(tmp: Path, journal: Path, broker_port: int, metrics_port: int,
                 seals: list[str], *, journal_max_mb: int = 64) -> Path:
    keystore = tmp / "seals.json"
    keystore.write_text(json.dumps({"version": 1, "seals": {
        sid: derive_key(SEED, sid).hex() for sid in seals}}))
    keystore.chmod(0o600)
    if not (tmp / "gateway.key").exists():
        create_key(tmp / "gateway.key")
    path = tmp / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "{GW}"
key = "gateway.key"
journal = "{journal}"
journal_max_mb = {journal_max_mb}
heartbeat_s = false

[sources.mqtt_seal]
host = "127.0.0.1"
port = {broker_port}
tls = false

[seals]
keystore = "seals.json"
alert_interval_s = 0

[metrics]
listen = "127.0.0.1:{metrics_port}"
""")
    return path


def publish(port: int, seals: list[Seal], count: int, t0_ms: int) -> set[tuple[str, int]]:
    """`count` genuine messages, round robin over `seals`, each PUBACKed by the broker."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-seals")
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent, infos = set(), []
    for i in range(count):
        seal = seals[i % len(seals)]
        msg = seal.message(t0_ms + i)
        infos.append(client.publish(f"sealtrail/v1/{GW}/sensors/{seal.seal_id}",
                                    msg.json_payload(), qos=1))
        sent.add((seal.seal_id, msg.ctr))
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    return sent


def seal_readings(journal: Path) -> tuple[Counter[tuple[str, int]], list[dict]]:
    records = journal_records(journal)
    readings = Counter((r["body"]["seal_id"], r["body"]["ctr"]) for r in records
                       if r["kind"] == "seal")
    return readings, records


def test_killed_while_draining_a_backlog_it_loses_nothing_and_repeats_nothing(
        tmp_path: Path) -> None:
    ids = [f"BK{i:03d}" for i in range(60)]
    seals = [Seal(sid, derive_key(SEED, sid)) for sid in ids]
    journal = tmp_path / "journal.db"
    mport = free_port()
    with running_mosquitto(tmp_path, extra_conf=BROKER_CONF) as broker:
        config = write_config(tmp_path, journal, broker.port, mport, ids)
        agent = AgentProcess(config, tmp_path / "agent.log", mport).start()
        up = 'sealtrail_source_connected{source="mqtt-seals:127.0.0.1:'
        agent.wait_for(lambda: agent.metric(up) == 1, 60, "the seal source to subscribe")
        assert agent.stop() == 0  # the session stays at the broker, queueing for us
        sent = publish(broker.port, seals, 15_000, 1_790_000_000_000)

        agent.start()
        seal_total = 'sealtrail_readings_total{kind="seal"'
        agent.wait_for(lambda: agent.metric(seal_total) >= 3000, 120, "the drain to be going")
        agent.kill()  # SIGKILL in the middle of it: acknowledgements may be lost
        first_life, _ = seal_readings(journal)
        assert 0 < sum(first_life.values()) < len(sent)

        agent.start()
        agent.wait_for(lambda: agent.metric(seal_total) + sum(first_life.values())
                       >= len(sent), 120, "the rest of the backlog")
        figures = agent.metrics()
        assert agent.stop() == 0
    readings, records = seal_readings(journal)
    assert set(readings) == sent, "a message the broker took is missing from the journal"
    assert max(readings.values()) == 1, "a message was journaled twice"
    assert not [r for r in records if r["kind"] == "alert"], "a redelivery taken for a replay"
    commits = figures["sealtrail_ingest_commits_total"]
    assert figures["sealtrail_ingested_total"] / commits >= 50  # drained in groups


def _fill(directory: Path) -> Path:
    """A file that takes every free byte of `directory`'s file system."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@contextlib.contextmanager
def small_disk(path: Path, size: str):  # type: ignore[no-untyped-def]
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-full case "
                    "needs a real full file system (a loop-mounted ext4 works too)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_pauses_ingest_keeps_the_agent_up_and_resumes_when_space_returns(
        tmp_path: Path) -> None:
    ids = [f"DF{i:02d}" for i in range(20)]
    seals = [Seal(sid, derive_key(SEED, sid)) for sid in ids]
    mport = free_port()
    with small_disk(tmp_path / "disk", "4m") as disk, \
            running_mosquitto(tmp_path, extra_conf=BROKER_CONF) as broker:
        journal = disk / "journal.db"
        config = write_config(tmp_path, journal, broker.port, mport, ids, journal_max_mb=1)
        agent = AgentProcess(config, tmp_path / "agent.log", mport).start()
        up = 'sealtrail_source_connected{source="mqtt-seals:127.0.0.1:'
        agent.wait_for(lambda: agent.metric(up) == 1, 60, "the seal source to subscribe")
        sent = publish(broker.port, seals, 200, 1_790_000_000_000)
        agent.wait_for(lambda: agent.metric('sealtrail_readings_total{kind="seal"') >= 200, 60,
                       "the first readings")
        filler = _fill(disk)

        sent |= publish(broker.port, seals, 2000, 1_790_000_100_000)  # the broker keeps them
        agent.wait_for(lambda: agent.metrics().get("sealtrail_journal_writable") == 0, 60,
                       "the agent to notice the full disk")
        status, health = agent.health()
        assert status == 200 and health["status"] == "degraded"
        assert health["problems"] == ["diskFull"]
        assert any("not writable" in w for w in health["warnings"])
        agent.wait_for(lambda: "database or disk is full" in agent.last_log_line(), 30,
                       "the log's last line to name the cause")
        assert "ingest paused" in agent.last_log_line()
        assert agent.alive

        filler.unlink()  # space is back
        agent.wait_for(lambda: agent.metrics().get("sealtrail_journal_writable") == 1
                       and agent.metric('sealtrail_readings_total{kind="seal"') >= len(sent),
                       90, "ingest to resume and catch up")
        figures = agent.metrics()
        assert agent.stop() == 0
        readings, records = seal_readings(journal)
    assert set(readings) == sent and max(readings.values()) == 1
    assert not [r for r in records if r["kind"] == "alert"]
    (episode,) = [r["body"] for r in records if r["kind"] == "status"
                  and r["body"].get("event") == "diskFull"]
    assert episode["until_ms"] > episode["since_ms"]
    assert "full" in episode["error"]
    assert figures["sealtrail_journal_unwritable_episodes_total"] == 1


def test_two_copies_of_one_forged_sentence_in_one_read_raise_one_alert_and_ingest_goes_on(
        tmp_path: Path) -> None:
    """With alert_interval_s = 0 (allowed), each forgery raises an alert; two copies of one
    forged sentence arriving in one read used to give two alerts with one id, and the journal's
    unique index then ended ingest."""
    key = bytes(range(32))
    journal = Journal(tmp_path / "journal.db", gateway_id=GW, key=Ed25519PrivateKey.generate())
    t_ms = 1_790_000_000_000
    forged = SealMessage("S1", 7, "C", 90, t_ms, compute_mac(b"\x99" * 32, "S1", 7, "C", 90,
                                                             t_ms)).sentence()
    genuine = [SealMessage("S1", c, "C", 90, t_ms + c, compute_mac(key, "S1", c, "C", 90,
                                                                   t_ms + c)).sentence()
               for c in (8, 9)]

    with PtyPair() as pty:
        async def scenario() -> Agent:
            source = SerialSealSource(pty.path, SealAuthenticator(journal, {"S1": key},
                                                                  alert_interval_s=0),
                                      reader_id="lane1")
            agent = Agent(journal, [source], [])
            halt = asyncio.Event()
            running = asyncio.create_task(agent.run(halt))
            await source.connected.wait()
            os.write(pty.master_fd, forged + forged + genuine[0])  # one read
            os.write(pty.master_fd, genuine[1])
            while agent.tail.head < 3:
                await agent.tail.wait_beyond(agent.tail.head)
            assert not running.done()
            halt.set()
            await running
            return agent

        asyncio.run(asyncio.wait_for(scenario(), 30))
    kinds = [(s.kind, s.record()["body"].get("ctr")) for s in journal.read_after(0)]
    assert kinds == [("alert", None), ("seal", 8), ("seal", 9)]
    journal.close()
