"""The customs receiver against a real Mosquitto (and, for ledger trust, a real anvil node).

Alerts on the wire are real: each gateway is an edge_agent Journal with a key made at run time,
alerts are appended as Drafts and their stored signed bytes are published with paho, exactly as
the gateway's customs sink publishes them. Forgeries are made the way an attacker would: by
editing those bytes, by signing with another key, by publishing on another gateway's topic.

The first test runs the installed command (`python -m sealtrail.cli customs watch`) as a
subprocess and reads what it shows on stdout; the others drive the Watcher in-process so they
can stop and restart it, and the broker, at chosen points.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from anvil_node import running
from helpers.customs_rig import T0, Gateway, Lines, alerts_topic, publish, tamper, trust_file
from helpers.mosquitto import Broker, make_test_ca, running_mosquitto, running_secure_mosquitto

from customs.receive import Receiver
from customs.store import open_store
from customs.trust import LedgerTrust, StaticTrust, TrustFile
from customs.watch import Watcher
from customs.webhook import WebhookForwarder
from ledger_client import chain
from ledger_client.keys import public_from_hex
from ledger_client.records import verify_signature
from sealtrail.cli import main
from sealtrail.mqtt import MqttSettings

pytestmark = pytest.mark.integration


def test_watch_shows_verified_alerts_and_quarantines_everything_else(
        tmp_path: Path, store_target: str) -> None:
    a, b = Gateway(tmp_path, "gw-a"), Gateway(tmp_path, "gw-b")
    stranger = Gateway(tmp_path, "gw-x")                       # not in the trust file
    impostor = Gateway(tmp_path, "gw-a", key_name="impostor")  # gw-a's id, another key
    trust = trust_file(tmp_path / "trust.json", {"gw-a": a.pub, "gw-b": b.pub})
    db = store_target
    fixes = a.fixes(5)
    a1 = a.alert()
    a2 = a.alert("sealOpened", "warning")
    b1 = b.alert()

    messages = [
        (alerts_topic("gw-a"), a1),
        ("sealtrail/v1/gw-a/readings", b"\n".join(fixes)),
        (alerts_topic("gw-a"), a1),                                   # duplicate
        (alerts_topic("gw-a"), tamper(a1, severity="info")),          # altered copy of a1
        (alerts_topic("gw-a"), impostor.alert()),                     # signed by another key
        (alerts_topic("gw-x"), stranger.alert()),                     # unknown gateway
        (alerts_topic("gw-a"), b1),                                   # gw-b's alert, gw-a's topic
        (alerts_topic("gw-a"), b"\x00\xffnot a record"),              # garbage
        (alerts_topic("gw-a"), fixes[0]),                             # a reading on alerts
        (alerts_topic("gw-a"), a2),
    ]
    with running_mosquitto(tmp_path) as broker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealtrail.cli", "customs", "watch", "--broker", broker.host,
             "--port", str(broker.port), "--plain", "--trust", str(trust), "--db", db,
             "--client-id", "customs-test"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = Lines(proc.stdout), Lines(proc.stderr)
            err.wait(lambda ls: any("subscribed to" in line for line in ls))
            publish(broker, [("sealtrail/v1/gw-a/status", json.dumps(
                {"gw": "gw-a", "state": "online", "t_ms": T0, "head_seq": 8,
                 "alerts_pending": 0}).encode())], retain=True)
            publish(broker, messages)
            out.wait(lambda ls: any("id=gw-a-alert-2" in line for line in ls))
            err.wait(lambda ls: sum("quarantined a message" in line for line in ls) >= 6)
        finally:
            proc.terminate()  # SIGTERM: the receiver stops cleanly and prints its counts
            proc.wait(30)
        err.wait(lambda ls: any(line.startswith("stopped:") for line in ls))

    assert proc.returncode == 0
    shown = [line for line in out.lines if line.startswith("ALERT")]
    assert len(shown) == 2, out.lines
    assert "CRITICAL routeDeviation gw=gw-a seq=6 plan=PLAN-7" in shown[0]
    assert "at 45.500000, -73.500000 id=gw-a-alert-1 [verified]" in shown[0]
    assert "WARNING  sealOpened gw=gw-a seq=7" in shown[1]
    assert "GATEWAY gw-a online" in out.lines
    stopped = next(line for line in err.lines if line.startswith("stopped:"))
    assert "2 alerts, 1 duplicates dropped, 6 quarantined" in stopped

    store = open_store(db)
    assert [r.alert_id for r in store.alerts()] == ["gw-a-alert-1", "gw-a-alert-2"]
    assert store.alert("gw-a", "gw-a-alert-1").signed == a1  # type: ignore[union-attr]
    assert store.alert("gw-a", "gw-a-alert-1").duplicates == 1  # type: ignore[union-attr]
    assert "trust file" in store.alert("gw-a", "gw-a-alert-1").trust  # type: ignore[union-attr]
    assert len(store.records("gw-a", "gps")) == 5
    reasons = [(q.reason, q.gw) for q in store.quarantined()]
    assert reasons == [("tampered", "gw-a"), ("bad_signature", "gw-a"),
                       ("unknown_gateway", "gw-x"), ("wrong_topic", "gw-a"),
                       ("malformed", "gw-a"), ("wrong_kind", "gw-a")]
    quarantined = store.quarantined()
    assert quarantined[0].payload == tamper(a1, severity="info")  # kept as evidence, verbatim
    assert "altered copy" in quarantined[0].detail
    assert "signed with another key" in quarantined[1].detail
    assert store.gateways()["gw-a"].state == "online"
    store.close()

    # nothing that failed shows up as an alert anywhere, including the listing command
    listing = subprocess.run([sys.executable, "-m", "sealtrail.cli", "customs", "alerts",
                              "--db", db, "--json"], capture_output=True, text=True)
    assert [json.loads(x)["alert_id"] for x in listing.stdout.splitlines()] == [
        "gw-a-alert-1", "gw-a-alert-2"]
    assert all(json.loads(x)["verification"]["status"] == "verified"
               for x in listing.stdout.splitlines())


def test_watch_over_the_deployed_tls_broker_with_the_customs_account(
        tmp_path: Path, store_target: str) -> None:
    """The command's --ca/--username/--password-file against deploy/mosquitto (TLS only,
    passwords, ACL); a gateway cannot even get a record onto another gateway's topic there."""
    a, b = Gateway(tmp_path, "gw-a"), Gateway(tmp_path, "gw-b")
    trust = trust_file(tmp_path / "trust.json", {"gw-a": a.pub, "gw-b": b.pub})
    pki = make_test_ca(tmp_path / "pki")
    a1, b1 = a.alert(), b.alert()
    with running_secure_mosquitto(tmp_path, pki, users=("gw-a", "gw-b", "customs")) as broker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealtrail.cli", "customs", "watch", "--broker", "127.0.0.1",
             "--port", str(broker.port), "--ca", str(pki / "ca.crt"), "--username", "customs",
             "--password-file", str(broker.conf_path.parent / "customs.secret"),
             "--trust", str(trust), "--db", store_target],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = Lines(proc.stdout), Lines(proc.stderr)
            err.wait(lambda ls: any("subscribed to" in line for line in ls))
            publish(broker, [(alerts_topic("gw-b"), a1)], user="gw-a")  # refused by the ACL
            publish(broker, [(alerts_topic("gw-a"), a1)], user="gw-a")
            publish(broker, [(alerts_topic("gw-b"), b1)], user="gw-b")
            out.wait(lambda ls: any("id=gw-b-alert-1" in line for line in ls))
        finally:
            proc.terminate()
            proc.wait(30)
    shown = [line for line in out.lines if line.startswith("ALERT")]
    assert [line.split("id=")[1] for line in shown] == ["gw-a-alert-1 [verified]",
                                                        "gw-b-alert-1 [verified]"]
    store = open_store(store_target)
    assert store.counts()["quarantine"] == {}  # the forged one never reached customs
    store.close()


# --- in-process: restarts of the receiver and of the broker ---------------------------------

class Receiving:
    """One life of the receiver: a Watcher on its own task, over a shared database file."""

    def __init__(self, broker: Broker, db: str, trust: Any, *,
                 webhook_url: str | None = None) -> None:
        self.store = open_store(db)
        self.receiver = Receiver(self.store, trust, forward=webhook_url is not None)
        self.webhook = (WebhookForwarder(self.store, webhook_url, backoff_s=(0.05, 0.2))
                        if webhook_url else None)
        self.watcher = Watcher(MqttSettings(broker.host, broker.port, client_id="customs-1",
                                            backoff_s=(0.05, 0.3)),
                               self.receiver, webhook=self.webhook)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.watcher.run(self.stop))

    def alert_ids(self) -> list[str]:
        return [a.alert_id for a in self.store.alerts()]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await self.watcher.wait_until(predicate, timeout=30)

    async def close(self) -> None:
        self.stop.set()
        await self.task
        self.store.close()


def test_alerts_published_while_the_receiver_is_down_arrive_and_broker_restarts_are_survived(
        tmp_path: Path, store_target: str) -> None:
    gw = Gateway(tmp_path, "gw-a")
    trust = StaticTrust({"gw-a": gw.pub})
    db = store_target
    alerts = [gw.alert() for _ in range(6)]

    with running_mosquitto(tmp_path) as broker:
        async def scenario() -> None:
            first = Receiving(broker, db, trust)
            await first.until(lambda: first.watcher.connected.is_set())
            publish(broker, [(alerts_topic("gw-a"), alerts[0])])
            await first.until(lambda: first.alert_ids() == ["gw-a-alert-1"])
            await first.close()

            # receiver down: the broker queues these for the persistent session
            publish(broker, [(alerts_topic("gw-a"), a) for a in alerts[1:4]])

            second = Receiving(broker, db, trust)
            await second.until(lambda: len(second.alert_ids()) == 4)
            assert second.alert_ids() == [f"gw-a-alert-{i}" for i in range(1, 5)]
            assert second.watcher.connections == 1

            broker.stop()   # the broker goes away (and, without persistence, forgets us)
            broker.start()
            await second.until(lambda: second.watcher.connections == 2)
            publish(broker, [(alerts_topic("gw-a"), a) for a in alerts[4:]])
            await second.until(lambda: len(second.alert_ids()) == 6)
            assert second.watcher.disconnects >= 1
            await second.close()

        asyncio.run(scenario())

    store = open_store(db)
    assert [a.signed for a in store.alerts()] == alerts
    assert store.counts()["quarantine"] == {}
    store.close()


class Hook(BaseHTTPRequestHandler):
    """A customs back-office endpoint that is down (503) for its first two requests."""

    received: list[dict[str, Any]]
    failures_left: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        if server.failures_left > 0:
            server.failures_left -= 1
            self.send_response(503)
        else:
            server.received.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.received, server.failures_left = [], 2
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_verified_alerts_are_forwarded_to_the_webhook_once_each_in_order(
        tmp_path: Path, webhook_server: Any, store_target: str) -> None:
    gw, impostor = Gateway(tmp_path, "gw-a"), Gateway(tmp_path, "gw-a", key_name="other")
    alerts = [gw.alert(), gw.alert("sealTampered")]
    url = f"http://127.0.0.1:{webhook_server.server_port}/alerts"
    with running_mosquitto(tmp_path) as broker:
        async def scenario() -> None:
            rx = Receiving(broker, store_target, StaticTrust({"gw-a": gw.pub}),
                           webhook_url=url)
            await rx.until(lambda: rx.watcher.connected.is_set())
            publish(broker, [(alerts_topic("gw-a"), alerts[0]),
                             (alerts_topic("gw-a"), impostor.alert()),
                             (alerts_topic("gw-a"), alerts[0]),
                             (alerts_topic("gw-a"), alerts[1])])
            assert rx.webhook is not None
            await rx.webhook.wait_until(lambda: rx.webhook is not None and rx.webhook.sent == 2)
            assert rx.webhook.failures == 2  # the two 503s, retried
            assert rx.store.webhook_states() == {("gw-a", "gw-a-alert-1"): "sent",
                                                 ("gw-a", "gw-a-alert-2"): "sent"}
            await rx.close()

        asyncio.run(scenario())
    got = webhook_server.received
    assert [d["alert_id"] for d in got] == ["gw-a-alert-1", "gw-a-alert-2"]
    assert got[1]["type"] == "sealTampered" and got[1]["verification"]["status"] == "verified"
    record = json.loads(got[0]["signed"])  # the receiving system can verify it again itself
    verify_signature(record, public_from_hex(gw.pub))


def test_trust_from_the_ledger_registry_with_revocation_outage_and_recheck(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], store_target: str) -> None:
    gws = {name: Gateway(tmp_path, name) for name in ("gw-a", "gw-r", "gw-n", "gw-u")}
    with running(tmp_path) as node:
        customs = node.account()
        registry = chain.AnchorRegistry.deploy(node.w3, customs)
        for name in ("gw-a", "gw-r", "gw-n"):
            registry.register_gateway(name, bytes.fromhex(gws[name].pub),
                                      node.account().address, customs)
        registry.revoke_gateway("gw-r", customs)
        store = open_store(store_target)
        rx = Receiver(store, LedgerTrust(registry, ttl_s=0))

        def send(name: str) -> str:
            [outcome] = rx.handle(alerts_topic(name), gws[name].alert())
            return outcome.rejection.reason if outcome.rejection else outcome.kind

        assert send("gw-a") == "alert"
        assert f"ledger chain 31337 contract {registry.address}" in store.alerts()[0].trust
        assert send("gw-r") == "revoked_gateway"
        assert send("gw-u") == "unknown_gateway"

        node.stop()  # the node is down: a key seen before is still usable, a new one is not
        assert send("gw-a") == "alert"
        assert "cached answer" in store.alert("gw-a", "gw-a-alert-2").trust  # type: ignore[union-attr]
        assert send("gw-n") == "trust_unavailable"
        node.start()
        registry.register_gateway("gw-u", bytes.fromhex(gws["gw-u"].pub),
                                  node.account().address, customs)

        # customs fixed the trust problems: the CLI re-verifies with the ledger registry
        code = main(["customs", "recheck", "--db", store_target, "--rpc", node.url,
                     "--contract", registry.address])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "released 2 message(s)" in out.err
        assert "id=gw-n-alert-1" in out.out and "id=gw-u-alert-1" in out.out
        assert sorted(a.alert_id for a in store.alerts()) == [
            "gw-a-alert-1", "gw-a-alert-2", "gw-n-alert-1", "gw-u-alert-1"]
        assert [q.reason for q in store.quarantined()] == ["revoked_gateway"]
        released = store.alert("gw-u", "gw-u-alert-1")
        assert released is not None and "released from quarantine" in (released.note or "")
        store.close()


def test_bad_trust_files_and_options_are_refused_with_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "c.db")
    cases = [({"gateways": {"gw-a": "abcd"}}, "must be 32 bytes"),
             ({"gateways": {"gw-a": "zz" * 32}}, "not hex"),
             ({"gw-a": "00" * 32}, 'expected {"gateways"')]
    for doc, message in cases:
        path = tmp_path / "t.json"
        path.write_text(json.dumps(doc))
        code = main(["customs", "watch", "--broker", "127.0.0.1", "--plain", "--trust",
                     str(path), "--db", db])
        assert code == 2 and message in capsys.readouterr().err
    code = main(["customs", "watch", "--broker", "127.0.0.1", "--db", db])
    assert code == 2 and "--trust FILE, or --rpc URL" in capsys.readouterr().err
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    ok_trust = trust_file(tmp_path / "ok.json", {})
    code = main(["customs", "watch", "--broker", "127.0.0.1", "--trust", str(ok_trust),
                 "--password-file", str(secret), "--db", db])
    assert code == 2 and "too open" in capsys.readouterr().err


def test_trust_file_is_reloaded_when_it_changes_and_a_broken_edit_keeps_the_old_one(
        tmp_path: Path, store_target: str) -> None:
    gw = Gateway(tmp_path, "gw-a")
    path = trust_file(tmp_path / "trust.json", {})
    trust = TrustFile(path)
    store = open_store(store_target)
    rx = Receiver(store, trust)
    [first] = rx.handle(alerts_topic("gw-a"), gw.alert())
    assert first.rejection is not None and first.rejection.reason == "unknown_gateway"
    trust_file(path, {"gw-a": gw.pub})
    [second] = rx.handle(alerts_topic("gw-a"), gw.alert())
    assert second.kind == "alert"
    path.write_text('{"gateways": {"gw-a": ')  # an editor's half-written file
    [third] = rx.handle(alerts_topic("gw-a"), gw.alert())
    assert third.kind == "alert"
    assert [o.kind for o in rx.recheck()] == ["alert"]  # the first one, now that gw-a is known
    assert len(store.alerts()) == 3
    store.close()


class CrashingReceiver(Receiver):
    """Dies (like a power cut) after receiving its first alert, before storing it."""

    def write_batch(self, messages: Any, parts: Any) -> Any:
        if any("/alerts" in topic for topic, _ in messages):
            raise RuntimeError("power cut")
        return super().write_batch(messages, parts)


def test_an_alert_received_but_not_stored_before_a_crash_is_delivered_again(
        tmp_path: Path, store_target: str) -> None:
    """The acknowledgement goes to the broker only after the alert is committed, so a receiver
    that dies in between gets it again from the broker when it comes back."""
    gw = Gateway(tmp_path, "gw-a")
    trust = StaticTrust({"gw-a": gw.pub})
    alert = gw.alert()
    with running_mosquitto(tmp_path) as broker:
        async def scenario() -> None:
            store = open_store(store_target)
            watcher = Watcher(MqttSettings(broker.host, broker.port, client_id="customs-1"),
                              CrashingReceiver(store, trust))
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop))
            await watcher.wait_until(watcher.connected.is_set)
            publish(broker, [(alerts_topic("gw-a"), alert)])
            with pytest.raises(RuntimeError, match="power cut"):
                await task
            assert store.alerts() == []
            store.close()

            again = Receiving(broker, store_target, trust)
            await again.until(lambda: again.alert_ids() == ["gw-a-alert-1"])
            await again.close()

        asyncio.run(scenario())


class BrokenTrust:
    """A trust source with a bug (raises something no check expects)."""

    def key_for(self, gateway_id: str) -> Any:
        raise KeyError("bug")

    def describe(self) -> str:
        return "broken"


def test_a_bug_met_on_a_message_quarantines_it_instead_of_stopping_the_receiver(
        tmp_path: Path, store_target: str) -> None:
    gw = Gateway(tmp_path, "gw-a")
    store = open_store(store_target)
    rx = Receiver(store, BrokenTrust())
    [outcome] = rx.handle(alerts_topic("gw-a"), gw.alert())
    assert outcome.rejection is not None and outcome.rejection.reason == "internal_error"
    assert "KeyError" in outcome.rejection.detail
    [status] = rx.handle("sealtrail/v1/gw-a/status", b'{"gw": "gw-a", "state": "online"}')
    assert status.kind == "status"  # still working
    store.close()
