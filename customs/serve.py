"""`sealtrail customs serve -c customs.toml`: the receiver and the console in one service.

One asyncio loop runs the MQTT receiver (``customs.watch.Watcher``), the web console
(Starlette under uvicorn), the change feed that pushes commits to the consoles, and, when a
ledger and an EVM key are configured, the audit chain's anchoring. The receiver wakes the feed
after each commit, so an alert reaches an officer's screen without waiting for the feed's poll;
a console on another machine (PostgreSQL store) sees it through the same ``changes`` table.
Blocking work (store, ledger) runs on worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from customs.audit import AuditChain
from customs.audit_anchor import AnchorPolicy, AuditAnchorer
from customs.config import Config
from customs.console.app import create_app
from customs.console.context import ConsoleContext
from customs.console.live import describe
from customs.console.plans import PlanCache
from customs.console.sse import ChangeFeed
from customs.console.verification import AnchorChecker
from customs.store import Quota, SqlStore, open_store
from sealtrail.errors import Unreachable, UsageError

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service stops everything together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Service:
    config: Config
    store: SqlStore
    ctx: ConsoleContext
    watcher: Any | None = None
    anchorer: AuditAnchorer | None = None
    server: _Server | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        host, port = self.config.listen
        self.server = _Server(uvicorn.Config(
            create_app(self.ctx), host=host, port=port, log_level="warning", access_log=False,
            lifespan="off", timeout_graceful_shutdown=2, server_header=False))
        tasks = [asyncio.create_task(self.server.serve(), name="console"),
                 asyncio.create_task(self.ctx.feed.run(), name="change-feed")]
        if self.watcher is not None:
            tasks.append(asyncio.create_task(self.watcher.run(stop), name="receiver"))
        if self.anchorer is not None:
            tasks.append(asyncio.create_task(self.anchorer.run(), name="audit-anchor"))
        waiter = asyncio.create_task(stop.wait())
        started = asyncio.create_task(self._until_started())
        try:
            await asyncio.wait([waiter, started, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if started.done() and not waiter.done():
                self.started.set()
                await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if tasks[0].done() and not self.server.started:
                raise UsageError(f"console: cannot listen on {self.config.console.listen}")
        finally:
            waiter.cancel()
            started.cancel()
            self.server.should_exit = True
            self.ctx.feed.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tasks[0], 5)
            for task in tasks[1:]:
                task.cancel()
            for task in tasks[1:]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.ctx.anchors.close()

    async def _until_started(self) -> None:
        assert self.server is not None
        while not self.server.started:
            await asyncio.sleep(0.02)  # uvicorn has no "listening" event to wait on
        self.port = self.server.servers[0].sockets[0].getsockname()[1]


def build(config: Config) -> Service:
    """Everything the service runs, from a checked config; errors are SealTrailErrors."""
    from customs.credentials.keys import public_bytes
    from customs.credentials.multikey import did_key
    from ledger_client.keys import load_key

    c = config
    key = load_key(c.office.service_key)
    trusted = [public_bytes(key)]
    if c.office.customs_keys_file is not None:
        import geofences

        trusted += [k for k in geofences.load_trusted_keys(c.office.customs_keys_file)
                    if k not in trusted]
    store = open_store(c.store.target, quota=Quota(c.store.quarantine_rows,
                                                   int(c.store.quarantine_mb * 2**20)),
                       pool_size=c.store.pool_size)
    registry = _registry(c) if c.ledger is not None else None
    audit = AuditChain(store, c.office.audit_id, key)
    ctx_box: list[ConsoleContext] = []
    feed = ChangeFeed(store, lambda changes: describe(ctx_box[0], changes))
    checker = AnchorChecker(store, registry, timeout_s=c.console.verify_timeout_s,
                            min_confirmations=c.ledger.confirmations if c.ledger else 0)
    ctx = ConsoleContext(store, PlanCache(trusted), audit, feed, checker, key,
                         c.office.issuer or did_key(public_bytes(key)), c.office.audit_id,
                         session_s=c.console.session_hours * 3600,
                         secure_cookie=c.console.secure_cookie)
    ctx_box.append(ctx)
    service = Service(c, store, ctx)
    if c.mqtt is not None:
        service.watcher = _watcher(c, store, registry, key, feed)
    if registry is not None and c.audit.evm_key is not None:
        from ledger_client.evmkey import load_account

        service.anchorer = AuditAnchorer(
            store, registry, load_account(c.audit.evm_key), c.office.audit_id,
            public_bytes(key), AnchorPolicy(c.audit.max_leaves, c.audit.max_age_s,
                                            c.audit.poll_s, c.ledger.confirmations
                                            if c.ledger else 0))
    return service


def _registry(c: Config) -> Any:
    from ledger_client import chain
    from ledger_client.errors import ChainError

    assert c.ledger is not None
    try:
        w3 = chain.connect(c.ledger.rpc, chain_id=c.ledger.chain_id, timeout=c.audit.timeout_s)
        registry = chain.AnchorRegistry(w3, c.ledger.contract)
        registry.check_deployed()
    except ChainError as exc:
        raise UsageError(f"ledger: {exc}") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the ledger at {c.ledger.rpc}: {exc}") from None
    return registry


def _watcher(c: Config, store: SqlStore, registry: Any, key: Any, feed: ChangeFeed) -> Any:
    from customs.commands import read_secret
    from customs.receive import Receiver
    from customs.trust import LedgerTrust, TrustFile
    from customs.watch import Watcher
    from customs.webhook import WebhookForwarder
    from sealtrail.mqtt import MqttSettings

    m = c.mqtt
    assert m is not None
    trust: Any = TrustFile(c.trust.file) if c.trust.file is not None else \
        LedgerTrust(registry, ttl_s=c.trust.ttl_s)
    tls = None
    if m.tls:
        try:
            tls = ssl.create_default_context(cafile=str(m.ca) if m.ca else None)
            if m.cert is not None:
                tls.load_cert_chain(str(m.cert), str(m.key) if m.key else None)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"mqtt TLS files: {exc}") from None
    password = read_secret(m.password_file, "mqtt.password_file") if m.password_file else None
    settings = MqttSettings(m.broker, m.port, client_id=m.client_id, username=m.username,
                            password=password, tls=tls, keepalive_s=m.keepalive_s,
                            backoff_s=(m.backoff_min_s, m.backoff_max_s))
    webhook = None
    if c.webhook is not None:
        token = read_secret(c.webhook.token_file, "webhook.token_file") \
            if c.webhook.token_file else None
        webhook = WebhookForwarder(store, c.webhook.url, token=token)
    receiver = Receiver(store, trust, forward=webhook is not None)
    return Watcher(settings, receiver, on_outcome=lambda outcome: feed.wake(), webhook=webhook,
                   recheck_s=m.recheck_s, group=m.group, service_key=key)


def serve(config_path: Path, *, verbose: bool = False) -> int:
    from customs.config import load_config

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    service = build(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(service.run(stop))
        started = asyncio.create_task(service.started.wait())
        await asyncio.wait([runner, started], return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            host, _ = config.listen
            log.info("console on http://%s:%d/ (store %s%s)", host, service.port,
                     service.store.where, "" if service.watcher is None else
                     f"; receiving from {service.watcher.name}")
        await runner

    try:
        asyncio.run(main())
    finally:
        service.store.close()
    return 0
