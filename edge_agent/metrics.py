"""Prometheus metrics and a health check, on a tiny HTTP server inside the agent's event loop.

An installer looks at a gateway through these when something seems off: are readings coming
in (by source and kind), what is being dropped and why, is anything queueing up (ingest queue,
each consumer's distance from the journal head, alerts not yet delivered), is the ledger
keeping up (records not anchored and how old the oldest is), and is the journal within its
size bound. Everything is computed when scraped, from counters the parts keep anyway and from
indexed journal queries, so an idle agent does no work for it. Sources and sinks report
themselves through one typed shape (``edge_agent/stats.py``: added, written, dropped by
reason, queue depth, events, connected), rendered here labelled by component; whether a
counter is a drop is said by the module that counts it, not guessed here by name.

No client library: the text exposition format (version 0.0.4) is a few lines of code, and the
server answers only GET /metrics and GET /healthz, one request per connection, with bounded
request size and time, so a scanner on the network cannot hold the agent up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.agent import Agent
from edge_agent.journal import JournalFigures
from edge_agent.journal.retention import Retention, file_bytes
from edge_agent.stats import Component, ComponentStats

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Watched:
    """What the metrics read: the running agent and the parts assembled around it."""

    agent: Agent
    retention: Retention | None = None
    max_bytes: int = 0
    alert_sinks: tuple[str, ...] = ()  # consumers that deliver alerts (pending = alerts after)
    readings: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (source, kind) -> n
    gateway_id: str = ""
    started: float = field(default_factory=time.time)
    ledger_connected: Callable[[], bool | None] = lambda: None
    running: bool = False


class Exposition:
    """Builds the text format: HELP/TYPE once per metric, samples after."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str,
            samples: Iterable[tuple[Mapping[str, str], float]] | float) -> None:
        if isinstance(samples, int | float):
            samples = [({}, samples)]
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if labels:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                self._lines.append(f"{name}{{{text}}} {_number(value)}")
            else:
                self._lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- collecting --------------------------------------------------------------------------------

JournalReads = tuple[JournalFigures, dict[str, int]]


def journal_reads(w: Watched) -> JournalReads:
    """The scrape's journal queries: the journal's figures and the backlog of alert sinks that
    do not count their own. Blocking (a read may wait for the disk), so MetricsServer runs it
    in a worker thread; the rest of a scrape reads memory on the event loop."""
    journal = w.agent.journal
    backlog = {c.name: journal.count_alerts_after(c.position) for c in w.agent.consumers
               if c.name in w.alert_sinks and not hasattr(c, "alerts_pending")}
    return journal.figures(), backlog


def journal_figures(w: Watched, reads: JournalReads | Exception | None = None
                    ) -> dict[str, Any]:
    """Head, anchoring and alert figures from `reads` (journal_reads; read here if None)."""
    if isinstance(reads, Exception):
        raise reads
    agent = w.agent
    head = agent.tail.head
    figures, backlog = reads if reads is not None else journal_reads(w)
    anchored_through = figures.anchored_through
    pending = dict(backlog)
    oldest_age = 0.0
    if figures.first_unanchored_t_ms is not None and anchored_through < head:
        oldest_age = max(0.0, time.time() - figures.first_unanchored_t_ms / 1000)
    unacked = None
    for consumer in agent.consumers:  # their own counts, from memory and the reader
        if consumer.name in w.alert_sinks and hasattr(consumer, "alerts_pending"):
            pending[consumer.name] = consumer.alerts_pending()
        tracker = getattr(consumer, "acks", None)
        if tracker is not None and unacked is None:
            count, oldest_ms = tracker.unacked()
            age = max(0.0, time.time() - oldest_ms / 1000) if oldest_ms is not None else 0.0
            unacked = (count, age)
    return {"head": head, "anchored_through": anchored_through, "oldest_age": oldest_age,
            "unacked": unacked,
            "alerts": figures.alerts, "pending": pending, "pruned_through": figures.pruned_through,
            "pruned_records": figures.pruned_records}


def component_stats(agent: Agent) -> list[tuple[str, str, ComponentStats]]:
    """(role, name, stats) of every source and consumer that reports itself (see stats.py)."""
    return [(role, part.name, part.stats())
            for role, parts in (("source", agent.sources), ("consumer", agent.consumers))
            for part in parts if isinstance(part, Component)]


def render_components(out: Exposition, agent: Agent) -> None:
    """The components' own figures, labelled by component (and reason, event)."""
    parts = component_stats(agent)
    out.add("sealtrail_component_added_total", "counter", "items a component took on: "
            "readings decoded, records taken from the journal, records evaluated",
            [({"component": n, "role": r}, s.added) for r, n, s in parts])
    out.add("sealtrail_component_written_total", "counter", "items a component passed on: "
            "readings emitted, records delivered or anchored, alerts raised",
            [({"component": n, "role": r}, s.written) for r, n, s in parts])
    out.add("sealtrail_component_queue_depth", "gauge", "items a component holds, waiting "
            "(messages awaiting the broker, records not anchored yet)",
            [({"component": n, "role": r}, s.queue_depth) for r, n, s in parts])
    dropped = [({"component": n, "reason": k}, v) for _, n, s in parts
               for k, v in sorted(s.dropped.items())]
    dropped.append(({"component": "ingest", "reason": "unsignable"}, agent.rejected))
    dropped.append(({"component": "ingest", "reason": "duplicate_alert"},
                    agent.journal.duplicate_alerts))
    out.add("sealtrail_dropped_total", "counter", "input dropped, by component and reason",
            dropped)
    for role in ("source", "consumer"):
        out.add(f"sealtrail_{role}_events_total", "counter", f"other {role} counters (bytes, "
                "connects, alerts raised by type, messages sent, ...): not drops",
                [({role: n, "event": k}, v) for r, n, s in parts if r == role
                 for k, v in sorted(s.events.items())])
    out.add("sealtrail_source_connected", "gauge", "1 while the source's device or connection "
            "is up", [({"source": n}, int(s.connected)) for r, n, s in parts
                      if r == "source" and s.connected is not None])
    out.add("sealtrail_sink_connected", "gauge", "1 while the sink's link is up",
            [({"sink": n}, int(s.connected)) for r, n, s in parts
             if r == "consumer" and s.connected is not None])


def render(w: Watched, reads: JournalReads | Exception | None = None) -> str:
    agent = w.agent
    out = Exposition()
    out.add("sealtrail_up", "gauge", "1 while the agent runs", 1 if w.running else 0)
    out.add("sealtrail_info", "gauge", "the gateway this agent signs for",
            [({"gateway": w.gateway_id}, 1)])
    readings = sorted(w.readings.items())
    out.add("sealtrail_readings_total", "counter", "drafts emitted by each source, by kind",
            [({"source": s, "kind": k}, n) for (s, k), n in readings])
    out.add("sealtrail_ingested_total", "counter", "records committed to the journal by ingest",
            agent.ingested)
    out.add("sealtrail_ingest_commits_total", "counter", "ingest transactions (one fsync each; "
            "readings per commit = ingested / commits)", agent.commits)
    out.add("sealtrail_journal_writable", "gauge", "0 while the journal refuses writes (disk "
            "full, I/O error): ingest paused, sensors not acknowledged",
            int(agent.unwritable is None))
    out.add("sealtrail_journal_unwritable_episodes_total", "counter", "times the journal "
            "stopped taking writes", agent.unwritable_episodes)
    render_components(out, agent)
    out.add("sealtrail_ingest_queue_depth", "gauge", "items waiting for ingest",
            agent.queue.qsize())
    out.add("sealtrail_ingest_queue_capacity", "gauge", "ingest queue bound", agent.queue.maxsize)
    j = journal_figures(w, reads)
    out.add("sealtrail_journal_head_seq", "gauge", "seq of the newest record", j["head"])
    out.add("sealtrail_consumer_lag_records", "gauge", "journal head minus the consumer's "
            "position", [({"consumer": c.name}, max(0, j["head"] - c.position))
                         for c in agent.consumers])
    out.add("sealtrail_anchor_lag_records", "gauge", "records not yet in an anchored batch",
            j["head"] - j["anchored_through"])
    out.add("sealtrail_anchor_oldest_unanchored_age_seconds", "gauge",
            "age of the oldest record not yet anchored (0 if none)", j["oldest_age"])
    out.add("sealtrail_anchored_through_seq", "gauge", "last seq of the anchored prefix",
            j["anchored_through"])
    connected_ledger = w.ledger_connected()
    if connected_ledger is not None:
        out.add("sealtrail_ledger_connected", "gauge", "1 once the ledger node answered",
                int(connected_ledger))
    out.add("sealtrail_alerts_total", "counter", "alerts this gateway raised (all stay in the "
            "journal: retention never prunes an alert)", j["alerts"])
    out.add("sealtrail_alerts_pending", "gauge", "alerts a sink has not delivered yet (customs: "
            "not acknowledged by customs)",
            [({"sink": k}, v) for k, v in sorted(j["pending"].items())])
    if j["unacked"] is not None:
        out.add("sealtrail_alerts_unacked", "gauge", "alerts customs has not acknowledged as "
                "stored (they are sent again until it does)", j["unacked"][0])
        out.add("sealtrail_alerts_unacked_age_seconds", "gauge", "age of the oldest alert "
                "customs has not acknowledged (0 if none)", round(j["unacked"][1], 3))
    size = file_bytes(agent.journal)
    out.add("sealtrail_journal_size_bytes", "gauge", "journal database + WAL on disk", size)
    if w.max_bytes:
        out.add("sealtrail_journal_max_bytes", "gauge", "configured bound (journal_max_mb)",
                w.max_bytes)
    out.add("sealtrail_journal_pruned_through_seq", "gauge", "records up to here were pruned "
            "(except alerts and their evidence)", j["pruned_through"])
    out.add("sealtrail_journal_pruned_records_total", "counter", "records deleted by retention",
            j["pruned_records"])
    if w.retention is not None:
        out.add("sealtrail_journal_over_limit", "gauge", "1 when over the bound with nothing "
                "more allowed to go", int(w.retention.over_limit))
    _process(out, w.started)
    return out.text()


def _process(out: Exposition, started: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.add("process_cpu_seconds_total", "counter", "user + system CPU time",
            round(usage.ru_utime + usage.ru_stime, 3))
    out.add("process_resident_memory_bytes", "gauge", "resident set size", rss_bytes())
    out.add("process_start_time_seconds", "gauge", "start time, Unix seconds", round(started, 3))
    with contextlib.suppress(OSError):
        out.add("process_open_fds", "gauge", "open file descriptors",
                len(os.listdir("/proc/self/fd")))


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def health(w: Watched, reads: JournalReads | Exception | None = None
           ) -> tuple[int, dict[str, Any]]:
    """200 while the agent runs and its journal answers; 503 otherwise. Warnings (a sensor
    unplugged, the ledger unreachable, the journal over its bound) do not fail the check:
    restarting the agent would not fix them."""
    warnings = []
    body: dict[str, Any] = {"gateway": w.gateway_id}
    try:
        j = journal_figures(w, reads)
    except Exception as exc:  # the journal is the one thing the agent cannot run without
        return 503, {**body, "status": "failing", "error": f"journal: {exc}"}
    body.update({"head_seq": j["head"], "anchor_lag_records": j["head"] - j["anchored_through"],
                 "alerts_pending": j["pending"], "uptime_s": round(time.time() - w.started)})
    for role, name, stats in component_stats(w.agent):
        if role == "source" and stats.connected is False:
            warnings.append(f"source {name} is not connected")
    if w.ledger_connected() is False:
        warnings.append("the ledger node has not answered yet")
    if w.retention is not None and w.retention.over_limit:
        warnings.append("journal over journal_max_mb with nothing more allowed to be pruned")
    if w.agent.unwritable is not None:
        warnings.append(f"journal not writable ({w.agent.unwritable}): ingest paused, sensors "
                        "not acknowledged; retrying")
        body["problems"] = w.agent.problems()
    if not w.running:
        return 503, {**body, "status": "stopped", "warnings": warnings}
    return 200, {**body, "status": "degraded" if warnings else "ok", "warnings": warnings}


# --- serving -----------------------------------------------------------------------------------

class MetricsServer:
    def __init__(self, watched: Watched, host: str, port: int):
        self.watched = watched
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.requests: defaultdict[str, int] = defaultdict(int)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port,
                                                 limit=8192)
        self.port = self.server.sockets[0].getsockname()[1]  # when 0 was asked for

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: not needed
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, ctype, body = await self._respond(method, path)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError, ConnectionError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        try:
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 500: "Internal Server Error",
                      503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode("latin-1") + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        self.requests[path if path in ("/metrics", "/healthz") else "other"] += 1
        if path not in ("/metrics", "/healthz"):
            return 404, "text/plain", b"not found: try /metrics or /healthz\n"
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        reads: JournalReads | Exception
        try:  # the SQL off the event loop, which keeps reading sensors meanwhile
            reads = await asyncio.to_thread(journal_reads, self.watched)
        except Exception as exc:
            reads = exc
        try:
            if path == "/metrics":
                return 200, CONTENT_TYPE, render(self.watched, reads).encode("utf-8")
            status, doc = health(self.watched, reads)
            return status, "application/json", (json.dumps(doc) + "\n").encode("utf-8")
        except Exception:
            log.exception("metrics: answering %s failed", path)
            return 500, "text/plain", b"internal error\n"
