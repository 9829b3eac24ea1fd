"""Webhook sink: each alert POSTed over HTTPS to a customs endpoint, from its own cursor.

For customs offices that take alerts into their own system over HTTP rather than MQTT. The
body is the alert record's signed bytes exactly (``application/json``), so the endpoint can
verify the gateway's signature with no trust in the transport; ``Idempotency-Key`` is the
alert_id, stable across retries, so a repeat after a lost response is recognisable.

At least once, in journal order: the cursor moves past an alert only after a 2xx. A failure
that may pass (no connection, TLS or timeout error, 5xx, 408, 425, 429) is retried forever with
capped, jittered backoff, holding later alerts back. Any other status is the endpoint refusing
this request: it is retried `refusal_retries` times (a misconfigured endpoint being fixed), then
logged as an error, counted as ``refused`` and skipped, so one alert the endpoint will never
take cannot block every later one (MQTT still carries it, and the journal keeps it).

urllib in a worker thread: one request at a time, alerts are rare, and no HTTP client
dependency is needed. TLS verification is always on (see ``tls.client_context``); plain
``http://`` URLs are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_agent.journal import Journal, JournalUnwritable, Stored, off_loop
from edge_agent.sinks.alert_feed import alert_chunks
from edge_agent.sinks.tls import client_context
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail
from sealtrail.backoff import Backoff
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
CURSOR = "webhook"
RETRYABLE = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    tls: ssl.SSLContext | None = None  # None: the system's CA store, verification on
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. Authorization
    timeout_s: float = 10.0
    backoff_s: tuple[float, float] = (1.0, 300.0)
    refusal_retries: int = 3

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"webhook url {self.url!r}: must be https://host/... (alerts and "
                             "credentials never travel in clear)")
        if self.timeout_s <= 0 or self.refusal_retries < 0:
            raise ValueError("webhook timeout_s must be > 0 and refusal_retries >= 0")


class WebhookSink:
    settles = True

    def __init__(self, journal: Journal, settings: WebhookSettings, *, name: str = CURSOR):
        self.journal = journal
        self.settings = settings
        self.name = name
        self._tls = settings.tls or client_context()
        self.position = journal.cursor(name)
        self.counts: Counter[str] = Counter()
        self.taken = 0  # alerts this process started delivering
        self.last_error: str | None = None
        self.attempted = asyncio.Event()  # set after every attempt (tests, metrics)
        self._ratelog = RateLimitedLog(log)

    def _post(self, alert: Stored) -> int:
        """One POST (blocking); the HTTP status, or an OSError for no answer at all."""
        record = alert.record()
        headers = {"Content-Type": "application/json", "User-Agent": "sealtrail-gateway",
                   "Idempotency-Key": record["body"]["alert_id"],
                   "X-SealTrail-Gateway": self.journal.gateway_id,
                   "X-SealTrail-Seq": str(alert.seq), **self.settings.headers}
        request = urllib.request.Request(self.settings.url, data=alert.signed, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s,
                                        context=self._tls) as response:
                response.read(65536)
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise reason if isinstance(reason, OSError) else OSError(str(reason)) from exc

    def stats(self) -> ComponentStats:
        """Alerts taken, delivered, and dropped because the endpoint refused them for good
        (they still go to customs over MQTT); failed attempts as events."""
        events = dict(self.counts)
        written, refused = events.pop("delivered", 0), events.pop("refused", 0)
        return ComponentStats(added=self.taken, written=written, dropped={"refused": refused},
                              queue_depth=self.taken - written - refused, events=events)

    async def _deliver(self, alert: Stored) -> None:
        """Until the endpoint takes it, or definitely refuses it `refusal_retries` + 1 times."""
        self.taken += 1
        backoff = Backoff(*self.settings.backoff_s)
        refusals = 0
        while True:
            try:
                status = await asyncio.to_thread(self._post, alert)
                problem = None if 200 <= status < 300 else f"HTTP {status}"
            except (OSError, ValueError) as exc:  # ssl.SSLError, timeouts are OSErrors
                status, problem = 0, f"{type(exc).__name__}: {exc}"
            self.attempted.set()
            if problem is None:
                self.counts["delivered"] += 1
                return
            self.counts["failed"] += 1
            self.last_error = problem
            definite = 400 <= status < 500 and status not in RETRYABLE
            refusals += definite
            if definite and refusals > self.settings.refusal_retries:
                self.counts["refused"] += 1
                log.error("%s: %s refused alert seq %d (%s) %d times; skipping it (it stays "
                          "in the journal and goes to customs over MQTT)", self.name,
                          self.settings.url, alert.seq, problem, refusals)
                return
            delay = backoff.next()
            self._ratelog.warning(f"{self.name} failing", "%s: alert seq %d: %s; retrying in "
                                  "%.1fs", self.name, alert.seq, problem, delay)
            await asyncio.sleep(delay)

    async def run(self, tail: JournalTail) -> None:
        async for alerts, reached in alert_chunks(self.journal, tail, self.position, chunk=100):
            for alert in alerts:
                await self._deliver(alert)
                with contextlib.suppress(JournalUnwritable):  # a full disk: posted again later
                    await off_loop(self.journal.commit, cursors={self.name: alert.seq})
            self.position = reached
