"""Forward verified alerts to customs' own system over HTTP: at least once, in arrival order.

The outbox is a table in the receiver's database, filled in the same transaction as the alert,
so neither a receiver restart nor a webhook that is down for a day loses an alert: the forwarder
starts from the outbox each time. A failure that may pass (connection refused, timeout, HTTP 5xx,
408, 429) is retried with exponential backoff, forever, holding back later alerts so the
receiving system sees them in order. A definite refusal (any other 4xx) marks that alert
"rejected" with the reason, logged, and moves on: retrying a request the endpoint calls wrong
would block every later alert.

The receiving end gets the signed record itself as well as its fields, so it can verify it
again with no trust in this receiver; ``alert_id`` is stable, so a repeat after a lost HTTP
response is recognisable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from customs.store import AlertRow, Store
from sealtrail.backoff import Backoff
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})
FORMAT = "sealtrail-alert/1"


def alert_payload(row: AlertRow) -> dict[str, Any]:
    """The JSON document POSTed for one alert."""
    body = row.body
    return {"format": FORMAT, "alert_id": row.alert_id, "gw": row.gw, "seq": row.seq,
            "t_ms": row.t_ms, "type": row.type, "severity": row.severity,
            "plan_id": row.plan_id, "asset": body.get("asset"),
            "position": body.get("position"), "details": body.get("details"),
            "verification": {"status": "verified", "trust": row.trust}, "state": row.state,
            "received_ms": row.received_ms, "signed": row.signed.decode("utf-8")}


class WebhookForwarder:
    def __init__(self, store: Store, url: str, *, token: str | None = None,
                 timeout_s: float = 10.0, backoff_s: tuple[float, float] = (0.5, 60.0)):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r}: use http:// or https://")
        self.store = store
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.sent = 0
        self.rejected = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._ratelog = RateLimitedLog(log)

    def wake(self) -> None:
        """New alerts are in the outbox."""
        self._wake.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Return once ``predicate()`` holds, re-tested after each alert is settled."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(predicate)

    async def run(self) -> None:
        """Forward the outbox forever (cancel to stop)."""
        backoff = Backoff(*self.backoff_s)
        while True:
            self._wake.clear()
            pending = await asyncio.to_thread(self.store.webhook_pending)
            if not pending:
                await self._wake.wait()
                continue
            for row in pending:
                while True:
                    outcome, error = await asyncio.to_thread(self._post, row)
                    await asyncio.to_thread(self.store.webhook_result, row.gw, row.alert_id,
                                            outcome, error)
                    if outcome != "pending":
                        break
                    self.failures += 1
                    delay = backoff.next()
                    self._ratelog.warning("webhook down", "webhook %s: %s; alert %s retried in "
                                          "%.1fs", self.url, error, row.alert_id, delay)
                    await asyncio.sleep(delay)
                backoff.reset()
                if outcome == "sent":
                    self.sent += 1
                else:
                    self.rejected += 1
                    log.error("webhook %s rejected alert %s: %s (not retried)", self.url,
                              row.alert_id, error)
                async with self._progress:
                    self._progress.notify_all()

    def _post(self, row: AlertRow) -> tuple[str, str | None]:
        """One attempt: ('sent' | 'pending' (retry) | 'rejected', error text)."""
        data = json.dumps(alert_payload(row)).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "sealtrail-customs",
                   "Idempotency-Key": f"{row.gw}/{row.alert_id}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                reply.read()
                return "sent", None
        except urllib.error.HTTPError as exc:
            text = f"HTTP {exc.code} {exc.reason}"
            if exc.code >= 500 or exc.code in RETRYABLE_STATUS:
                return "pending", text
            return "rejected", text
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timeout, DNS
            return "pending", str(getattr(exc, "reason", exc))
