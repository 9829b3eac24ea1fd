"""/metrics of a running agent, read the way Prometheus reads it.

The agent reads a GPS on a real pseudo-terminal (good epochs, lines with a bad checksum, and
GSV sentences a healthy receiver sends but nothing uses), writes a heartbeat, and shows two
alerts on the console; the exposition served over HTTP is parsed with prometheus_client's own
parser. What could be wrong is asserted: the types (a counter must end in ``_total``, and
``sealtrail_alerts_total`` is one), that a GSV is not counted as a drop while a bad checksum
is, and that each component's figures match what the journal holds.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.agent import Agent
from edge_agent.assemble import Counted
from edge_agent.journal import Draft, Journal
from edge_agent.metrics import MetricsServer, Watched
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.heartbeat import HeartbeatSource
from edge_agent.sources.serial_gps import SerialGpsSource
from firmware_sim.nmea import SimFix, epoch_bytes
from firmware_sim.pty import PtyPair

pytestmark = pytest.mark.integration
GW = "gw-metrics"
T0 = 1_790_000_000_000
GPS = "serial-gps:gps0"
FIXES, BAD, GSV = 5, 3, 2


def _nmea(body: str) -> bytes:
    checksum = functools.reduce(lambda a, b: a ^ b, body.encode("ascii"), 0)
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _stream() -> bytes:
    out = bytearray()
    for i in range(FIXES):
        epoch = epoch_bytes(SimFix(t_ms=T0 + i * 1000, lat=-34.9 + i * 1e-4, lon=-56.2,
                                   speed_mps=10.0, course_deg=90.0))
        if i < BAD:  # the epoch's first sentence again, one character changed: bad checksum
            first = epoch.split(b"\n", 1)[0]
            out += first.replace(b",", b";", 1) + b"\n"
        if i < GSV:
            out += _nmea("GPGSV,1,1,01,05,40,083,46")
        out += epoch
    return bytes(out)


def _alert(i: int) -> Draft:
    return Draft(T0 + i, "alert", "rules", {
        "alert_id": f"00000000-0000-4000-8000-{i:012d}", "type": "routeDeviation",
        "severity": "critical", "evidence": []})


async def _scrape(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    reply = await reader.read()
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", head
    return body.decode("utf-8")


def _run_agent(tmp: Path) -> tuple[str, Journal]:
    journal = Journal(tmp / "j.db", gateway_id=GW, key=Ed25519PrivateKey.generate())
    journal.append([_alert(1), _alert(2)])  # raised before this run: the console shows them

    async def scenario() -> str:
        shown: list[str] = []
        both_shown = asyncio.Event()

        def show(line: str) -> None:
            shown.append(line)
            if len(shown) == 2:
                both_shown.set()

        with PtyPair() as pty:
            readings: Counter[tuple[str, str]] = Counter()
            gps = SerialGpsSource(pty.path, sensor_id="gps0",
                                  filters=FixFilterParams(max_age_ms=None, max_future_ms=None))
            sources = [Counted(gps, readings), Counted(HeartbeatSource(3600.0), readings)]
            agent = Agent(journal, sources, [ConsoleSink(journal, show)])
            watched = Watched(agent, readings=readings, gateway_id=GW, running=True)
            server = MetricsServer(watched, "127.0.0.1", 0)
            await server.start()
            stop = asyncio.Event()
            runner = asyncio.create_task(agent.run(stop))
            try:
                await asyncio.wait_for(gps.connected.wait(), 30)
                await asyncio.to_thread(os.write, pty.master_fd, _stream())
                head = 2 + FIXES + 1  # the alerts, the fixes, one heartbeat
                while agent.tail.head < head:
                    await asyncio.wait_for(agent.tail.wait_beyond(agent.tail.head), 30)
                await asyncio.wait_for(both_shown.wait(), 30)
                return await _scrape(server.port)
            finally:
                stop.set()
                await runner
                await server.close()

    text = asyncio.run(scenario())
    return text, journal


def _value(family: Metric, **labels: str) -> float:
    found = [s.value for s in family.samples if s.labels == labels]
    assert len(found) == 1, (family.name, labels, family.samples)
    return found[0]


def test_a_running_agents_metrics_parse_with_the_right_types_and_figures(tmp_path) -> None:
    text, journal = _run_agent(tmp_path)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = Counter(s.kind for s in journal.read_after(0, 1000))
    journal.close()
    assert kinds == {"alert": 2, "gps": FIXES, "status": 1}

    for family in families.values():  # the parser drops "_total" from a counter's family
        if family.type == "counter":
            assert all(s.name == f"{family.name}_total" for s in family.samples), family.name
    types = {name: families[name].type for name in (
        "sealtrail_alerts", "sealtrail_dropped", "sealtrail_readings",
        "sealtrail_component_added", "sealtrail_component_written",
        "sealtrail_component_queue_depth", "sealtrail_source_events",
        "sealtrail_source_connected", "sealtrail_ingested")}
    assert types == {
        "sealtrail_alerts": "counter", "sealtrail_dropped": "counter",
        "sealtrail_readings": "counter", "sealtrail_component_added": "counter",
        "sealtrail_component_written": "counter", "sealtrail_component_queue_depth": "gauge",
        "sealtrail_source_events": "counter", "sealtrail_source_connected": "gauge",
        "sealtrail_ingested": "counter"}

    assert _value(families["sealtrail_alerts"]) == 2
    assert _value(families["sealtrail_ingested"]) == FIXES + 1  # the alerts came in before

    dropped = families["sealtrail_dropped"]
    assert _value(dropped, component=GPS, reason="nmea_bad_checksum") == BAD
    reasons = {s.labels["reason"] for s in dropped.samples if s.labels["component"] == GPS}
    assert "nmea_unsupported" not in reasons  # a GSV is what a healthy receiver sends
    assert _value(families["sealtrail_source_events"], source=GPS,
                  event="nmea_unsupported") == GSV
    assert _value(dropped, component="ingest", reason="unsignable") == 0

    added, written = families["sealtrail_component_added"], families[
        "sealtrail_component_written"]
    assert _value(added, component=GPS, role="source") == FIXES
    assert _value(written, component=GPS, role="source") == FIXES
    assert _value(written, component="heartbeat", role="source") == 1
    assert _value(written, component="console", role="consumer") == 2
    assert _value(families["sealtrail_component_queue_depth"], component="console",
                  role="consumer") == 0
    assert _value(families["sealtrail_readings"], source=GPS, kind="gps") == FIXES
    assert _value(families["sealtrail_source_connected"], source=GPS) == 1
    assert {s.labels["source"] for s in families["sealtrail_source_connected"].samples} \
        == {GPS}  # the heartbeat has no link to be up or down

