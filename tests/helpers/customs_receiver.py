"""The real customs receiver, run in a thread of its own, for gateway tests and benchmarks.

Gateway-side tests need customs as it is deployed: `customs.watch.Watcher` verifying each
gateway's signatures against a trust map, storing in a real store file, then publishing the
signed, retained acknowledgement (ledger_client/acks.py) and acknowledging the broker. This wraps
exactly that, with the small synchronous surface a test or a benchmark needs:

    customs = CustomsReceiver(host, port, store=tmp / "customs.db", service_key=key,
                              gateways={"gw-1": pub_hex}, username="customs", password=...,
                              tls=ctx).start()
    customs.wait(lambda c: c.acked("gw-1") >= 10, timeout=30)
    customs.stop()                      # the broker keeps its session: customs is "away"

``stop`` leaves the MQTT 5 session at the broker (same client id), so what gateways publish
while customs is stopped waits there, as it does for a receiver being upgraded.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from customs.receive import Outcome, Receiver
from customs.store import SqlStore, open_store
from customs.trust import StaticTrust
from customs.watch import Watcher
from sealtrail.mqtt import MqttSettings


class CustomsReceiver:
    """`customs watch --service-key` in a background thread; see the module docstring."""

    def __init__(self, host: str, port: int, *, store: Path, service_key: Ed25519PrivateKey,
                 gateways: Mapping[str, str], username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None,
                 client_id: str = "customs-receiver"):
        self.settings = MqttSettings(host, port, client_id=client_id, username=username,
                                     password=password, tls=tls, backoff_s=(0.05, 0.5))
        self.store_path = str(store)
        self.service_key = service_key
        self.trust = StaticTrust(dict(gateways))
        self.arrivals: list[tuple[str, int, float]] = []  # gw, alert seq, monotonic at commit
        self.outcomes: dict[str, int] = {}  # kind -> count
        self.changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._connected = threading.Event()
        self._failure: BaseException | None = None
        self._reader: SqlStore | None = None

    # -- running --------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> CustomsReceiver:
        self._connected.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._main, name="customs-receiver", daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            self.stop()
            raise RuntimeError(f"the customs receiver did not connect in {timeout}s"
                               + (f": {self._failure!r}" if self._failure else ""))
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._thread = None
        if self._failure is not None:
            raise RuntimeError("the customs receiver failed") from self._failure

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by start/stop in the test's thread
            self._failure = exc
            self._connected.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        watcher = Watcher(self.settings, Receiver(open_store(self.store_path), self.trust),
                          on_outcome=self._outcome, service_key=self.service_key)

        async def connected() -> None:
            await watcher.connected.wait()
            self._connected.set()

        signal = asyncio.create_task(connected())
        try:
            await watcher.run(self._stop)
        finally:
            signal.cancel()

    def _outcome(self, outcome: Outcome) -> None:
        with self.changed:
            self.outcomes[outcome.kind] = self.outcomes.get(outcome.kind, 0) + 1
            if outcome.kind == "alert" and outcome.alert is not None:
                self.arrivals.append((outcome.alert.gw, outcome.alert.seq, time.monotonic()))
            self.changed.notify_all()

    # -- looking ----------------------------------------------------------------------------

    def _store(self) -> SqlStore:
        if self._reader is None:
            self._reader = open_store(self.store_path)
        return self._reader

    def acked(self, gw: str) -> int:
        """How far customs holds ``gw``'s alerts without a gap (what it acknowledges)."""
        return self._store().frontier(gw)

    def stored(self, gw: str) -> dict[int, bytes]:
        """``gw``'s alert records as stored, by seq."""
        return {r.seq: r.signed for r in self._store().records(gw, "alert")}

    def signed_at(self, gw: str, seq: int) -> bytes | None:
        return self._store().signed_at(gw, seq)

    def wait(self, done: Callable[[CustomsReceiver], bool], timeout: float = 30.0) -> None:
        """Return once ``done(self)`` holds, re-tested after each stored group."""
        with self.changed:
            if not self.changed.wait_for(lambda: done(self), timeout):
                raise TimeoutError(f"customs receiver: condition not met in {timeout}s; "
                                   f"outcomes {self.outcomes}")
