"""The webhook sink against a real HTTPS server (http.server + TLS from the test CA)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.mosquitto import make_test_ca

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.tls import client_context
from edge_agent.sinks.webhook import WebhookSettings, WebhookSink
from edge_agent.tail import JournalTail

pytestmark = pytest.mark.integration
T0 = 1_790_000_000_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("pki"))


class Endpoint:
    """Records every request; `answer(body) -> status` decides each response."""

    def __init__(self, pki: Path, answer: Callable[[bytes], int]):
        self.requests: list[tuple[int, bytes, dict[str, str]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = answer(body)
                endpoint.requests.append((status, body, dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(pki / "server.crt", pki / "server.key")
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/sealtrail/alerts"

    def delivered(self) -> list[bytes]:
        return [body for status, body, _ in self.requests if status == 200]


@contextlib.contextmanager
def serving(pki: Path, answer: Callable[[bytes], int]) -> Iterator[Endpoint]:
    endpoint = Endpoint(pki, answer)
    thread = threading.Thread(target=endpoint.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()
        thread.join()


def journal_with_alerts(tmp_path: Path, count: int) -> Journal:
    journal = Journal(tmp_path / "j.db", gateway_id="gw-a", key=Ed25519PrivateKey.generate())
    drafts = []
    for n in range(count):
        drafts.append(Draft(T0 + n, "gps", "gps0", {"lat_e7": n, "lon_e7": 0}))
        drafts.append(Draft(T0 + n, "alert", "rules", {
            "alert_id": str(uuid.uuid4()), "type": "sealOpened", "severity": "critical",
            "details": {"n": n}}))
    journal.append(drafts)
    return journal


async def run_until(sink: WebhookSink, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(sink.run(JournalTail(sink.journal.head()[0])))
    try:
        async with asyncio.timeout(30):
            while True:
                sink.attempted.clear()
                if done():
                    return
                await sink.attempted.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_each_alert_is_posted_once_as_its_signed_bytes_after_retrying_an_outage(
        tmp_path: Path, pki: Path) -> None:
    journal = journal_with_alerts(tmp_path, 3)
    answers = iter([503, 503])
    with serving(pki, lambda _body: next(answers, 200)) as endpoint:
        sink = WebhookSink(journal, WebhookSettings(
            endpoint.url, tls=client_context(pki / "ca.crt"), backoff_s=(0.01, 0.05),
            headers={"Authorization": "Bearer t0ken"}))
        asyncio.run(run_until(sink, lambda: sink.counts["delivered"] == 3))

    alerts = journal.alerts_after(0)
    assert endpoint.delivered() == [a.signed for a in alerts]
    assert [status for status, _, _ in endpoint.requests] == [503, 503, 200, 200, 200]
    headers = endpoint.requests[-1][2]
    assert headers["Idempotency-Key"] == json.loads(alerts[-1].signed)["body"]["alert_id"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t0ken"
    assert journal.cursor("webhook") == alerts[-1].seq and sink.counts["failed"] == 2
    stats = sink.stats()
    assert (stats.added, stats.written, dict(stats.dropped), stats.queue_depth) \
        == (3, 3, {"refused": 0}, 0)


def test_an_endpoint_whose_certificate_is_not_trusted_gets_nothing(tmp_path: Path,
                                                                   pki: Path) -> None:
    journal = journal_with_alerts(tmp_path, 1)
    with serving(pki, lambda _body: 200) as endpoint:
        sink = WebhookSink(journal, WebhookSettings(endpoint.url, backoff_s=(0.01, 0.05)))
        asyncio.run(run_until(sink, lambda: sink.counts["failed"] >= 2))

    assert endpoint.requests == [] and journal.cursor("webhook") == 0
    assert sink.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in sink.last_error


def test_an_alert_the_endpoint_keeps_refusing_is_skipped_after_its_retries(
        tmp_path: Path, pki: Path) -> None:
    journal = journal_with_alerts(tmp_path, 2)
    poison = journal.alerts_after(0)[0].signed
    with serving(pki, lambda body: 422 if body == poison else 200) as endpoint:
        sink = WebhookSink(journal, WebhookSettings(
            endpoint.url, tls=client_context(pki / "ca.crt"), backoff_s=(0.01, 0.05),
            refusal_retries=2))
        asyncio.run(run_until(sink, lambda: sink.counts["delivered"] == 1))

    assert [status for status, _, _ in endpoint.requests] == [422, 422, 422, 200]
    assert sink.counts["refused"] == 1
    assert journal.cursor("webhook") == journal.alerts_after(0)[1].seq
    stats = sink.stats()  # what /metrics shows: the refused alert is a drop, not in the queue
    assert (stats.added, stats.written, dict(stats.dropped), stats.queue_depth) \
        == (2, 1, {"refused": 1}, 0)
    assert stats.events == {"failed": 3}


def test_a_plain_http_url_is_refused() -> None:
    with pytest.raises(ValueError, match="must be https"):
        WebhookSettings("http://customs.example/alerts")
