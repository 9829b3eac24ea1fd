"""From a checked Config to a ready agent: journal, sources, rules, sinks, retention, metrics.

Nothing here decides policy; it wires what gateway.toml names into the parts' constructors,
in the order the data flows (sources -> journal -> rules -> alert sinks -> anchor). Two
wrappers add what deployment needs without touching the parts:
- `Counted` counts what each source emits by record kind (the "readings in" metric);
- `sinks.ledger.LedgerAnchor` lets the agent start with the ledger unreachable (a truck leaving
  the depot with no signal) and makes the ledger client only when the first batch is due.

Each source and sink module is imported only when the configuration names it: after a power
cut the gateway must be reading within 2 s, and a module it does not use (MQTT, web3, the
geofence stack) costs start-up time and RSS for nothing (deploy/raspberry-pi.md, "Start-up
and memory"; tests/test_agent_imports.py checks it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent, Consumer, Emit, Item, Source
from edge_agent.config import Config, read_secret
from edge_agent.config_checks import ack_keys_file
from edge_agent.journal import Draft, Journal
from edge_agent.journal.retention import Retention, wal_limit_for
from edge_agent.metrics import Watched
from edge_agent.stats import ComponentStats
from ledger_client.keys import load_key, public_hex

if TYPE_CHECKING:
    from edge_agent.sources.gnss_health import HealthParams
    from edge_agent.sources.gps_filter import FixFilterParams

log = logging.getLogger(__name__)


class Counted:
    """A source whose emitted drafts are counted by (source, kind); otherwise the source."""

    def __init__(self, inner: Source, counts: Counter[tuple[str, str]]):
        self.inner = inner
        self.name = inner.name
        self._counts = counts

    async def run(self, emit: Emit) -> None:
        counts, name = self._counts, self.name

        async def counted(item: Item) -> None:
            if isinstance(item, Draft):
                counts[(name, item.kind)] += 1
            await emit(item)

        await self.inner.run(counted)

    def stats(self) -> ComponentStats:
        return self.inner.stats()

    def __getattr__(self, attr: str) -> Any:  # connected, counts, ... (tests, the demo)
        return getattr(self.inner, attr)


@dataclass
class Assembly:
    config: Config
    journal: Journal
    agent: Agent
    retention: Retention
    watched: Watched
    rules: Any = None
    on_close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for fn in self.on_close:
            fn()
        self.journal.close()


def _gps_params(entry: Any) -> tuple[FixFilterParams, HealthParams]:
    from edge_agent.sources.gnss_health import HealthParams
    from edge_agent.sources.gps_filter import FixFilterParams
    f, h = entry.filters, entry.health
    return (FixFilterParams(min_sats=f.min_sats, max_hdop_x10=f.max_hdop_x10,
                            max_age_ms=f.max_age_ms, max_future_ms=f.max_future_ms,
                            max_speed_cmps=f.max_speed_cmps, jump_slack_m=f.jump_slack_m,
                            reanchor_after=f.reanchor_after),
            HealthParams(lost_after_ms=h.lost_after_ms, jam_err_cm=h.jam_err_cm,
                         jam_sats_before=h.jam_sats_before, jam_sats_after=h.jam_sats_after,
                         jam_window_ms=h.jam_window_ms, clear_after_ms=h.clear_after_ms))


def _mqtt_settings(cfg: Any, gateway_id: str, client_id: str) -> Any:
    from edge_agent.sinks.tls import client_context
    from sealtrail.mqtt import MqttSettings
    tls = client_context(cfg.ca, cfg.cert, cfg.key) if cfg.tls else None
    password = read_secret(cfg.password_file) if cfg.password_file else None
    return MqttSettings(cfg.host, cfg.port, client_id=cfg.client_id or client_id,
                        username=cfg.username or gateway_id, password=password, tls=tls,
                        keepalive_s=cfg.keepalive_s)


def build_sources(config: Config, journal: Journal) -> list[Source]:
    src, gw = config.sources, config.gateway.id
    sources: list[Source] = []
    for entry in src.serial_gps:
        from edge_agent.sources.serial_gps import SerialGpsSource
        filters, health = _gps_params(entry)
        gps = SerialGpsSource(str(entry.port), sensor_id=entry.sensor_id, baudrate=entry.baud,
                              filters=filters, health=health, silence_s=entry.silence_s)
        gps.read_interval_s = entry.read_interval_ms / 1000  # fewer wake-ups: serial_port.py
        sources.append(gps)
    for entry in src.gpsd:
        from edge_agent.sources.gps_stream import GpsStream
        from edge_agent.sources.gpsd import GpsdSource
        filters, health = _gps_params(entry)
        sources.append(GpsdSource(entry.host, entry.port, sensor_id=entry.sensor_id,
                                  device=entry.device, stall_s=entry.stall_s,
                                  stream=GpsStream(entry.sensor_id, filters, health)))
    if src.serial_seal or src.mqtt_seal:
        from edge_agent.sources.seal_auth import SealAuthenticator, load_keystore
        assert config.seals is not None  # checked by the config
        auth = SealAuthenticator(journal, load_keystore(config.seals.keystore),
                                 alert_interval_s=config.seals.alert_interval_s,
                                 unknown_report_s=config.seals.unknown_report_s)
        for seal in src.serial_seal:
            from edge_agent.sources.serial_seal import SerialSealSource
            sources.append(SerialSealSource(str(seal.port), auth, reader_id=seal.reader_id,
                                            baudrate=seal.baud, silence_s=seal.silence_s))
        if src.mqtt_seal is not None:
            from edge_agent.sources.mqtt_seal import MqttSealSource
            sources.append(MqttSealSource(_mqtt_settings(src.mqtt_seal, gw, f"{gw}-seals"),
                                          gw, auth,
                                          receive_maximum=src.mqtt_seal.receive_maximum,
                                          batch_s=src.mqtt_seal.batch_ms / 1000))
    if config.gateway.heartbeat_s is not None:
        try:
            from edge_agent.sources.heartbeat import HeartbeatSource
        except ImportError:
            log.debug("no heartbeat source in this build")
        else:
            sources.append(HeartbeatSource(config.gateway.heartbeat_s))
    return sources


def build_rules(config: Config, journal: Journal) -> Any:
    rc = config.rules
    if rc is None:
        return None
    from edge_agent.rules.engine import RulesEngine
    from geofences import load_trusted_keys
    keys = load_trusted_keys(rc.customs_keys_file) if rc.customs_keys_file else []
    site = None
    if rc.site_lat is not None and rc.site_lon is not None:
        site = (round(rc.site_lat * 1e7), round(rc.site_lon * 1e7))
    engine = RulesEngine(journal, trusted_keys=keys, vehicle=rc.vehicle,
                         gps_sensors=rc.gps_sensors, site=site, params=rc.thresholds,
                         checkpoint_s=rc.checkpoint_s)
    for path in (rc.fences, rc.plan):
        if path is not None:
            _load_once(engine, journal, path.read_bytes(), str(path))
    return engine


def _load_once(engine: Any, journal: Journal, envelope: bytes, source: str) -> None:
    """Apply a plan/fences file unless the journal has seen that exact document before: a
    plan customs sent later (MQTT) must not be replaced by the file's older one at a restart.
    A changed file (another digest) is applied."""
    from edge_agent.rules import plans
    doc = plans.verify(envelope, engine.trusted_keys, source)
    if journal.state(plans.envelope_key(doc.digest)) is not None:
        log.info("rules: %s already loaded once (digest %s…); the journal decides what is "
                 "current", source, doc.digest[:16])
        return
    engine.set_plan(envelope, source=source)


def assemble(config: Config) -> Assembly:
    """Open the journal and build every part; nothing runs yet."""
    gw = config.gateway
    key = load_key(gw.key)
    journal = Journal(gw.journal, gateway_id=gw.id, key=key, synchronous=gw.synchronous,
                      wal_limit_bytes=wal_limit_for(config.journal_max_bytes))
    try:
        return _assemble(config, journal, public_hex(key))
    except BaseException:
        journal.close()
        raise


def _assemble(config: Config, journal: Journal, public_key: str) -> Assembly:
    readings: Counter[tuple[str, str]] = Counter()
    sources: list[Source] = [Counted(s, readings) for s in build_sources(config, journal)]
    consumers: list[Consumer] = []
    guards: list[Callable[[], list[str]]] = []
    alert_sinks: list[str] = []
    rules = build_rules(config, journal)
    if rules is not None:
        consumers.append(rules)
        guards.append(lambda: [rules.name])
    agents: list[Agent] = []  # the agent is built last; the customs status asks it later
    if config.customs is not None:
        from edge_agent.sinks.customs_acks import AckPolicy
        from edge_agent.sinks.customs_mqtt import CustomsMqttSink, DeliveryPolicy
        from geofences import load_trusted_keys
        cc = config.customs
        keys_file = ack_keys_file(config)
        sink = CustomsMqttSink(
            journal, _mqtt_settings(cc, config.gateway.id, f"{config.gateway.id}-customs"),
            policy=DeliveryPolicy(window=cc.window, max_rate=cc.max_rate, burst=cc.burst,
                                  uplink_readings=cc.uplink_readings,
                                  uplink_anchors=cc.uplink_anchors,
                                  readings_per_message=cc.readings_per_message,
                                  readings_linger_s=cc.readings_linger_s,
                                  status_s=cc.status_s),
            on_plan=rules.set_plan if (rules is not None and cc.plans) else None,
            client_id=cc.client_id or f"{config.gateway.id}-customs", name="customs",
            ack_keys=load_trusted_keys(keys_file) if keys_file is not None else None,
            ack_policy=AckPolicy(timeout_s=cc.ack_timeout_s, resend_max_s=cc.resend_max_s),
            problems=lambda: agents[0].problems() if agents else [])
        consumers.append(sink)
        guards.append(lambda: list(sink.guard_cursors))
        alert_sinks.append(sink.name)
    if config.webhook is not None:
        from edge_agent.sinks.tls import client_context
        from edge_agent.sinks.webhook import WebhookSettings, WebhookSink
        wh = config.webhook
        headers = ({"Authorization": read_secret(wh.authorization_file)}
                   if wh.authorization_file else {})
        webhook = WebhookSink(journal, WebhookSettings(
            wh.url, tls=client_context(wh.ca, wh.cert, wh.key), headers=headers,
            timeout_s=wh.timeout_s, refusal_retries=wh.refusal_retries))
        consumers.append(webhook)  # alerts only: never holds retention back
        alert_sinks.append(webhook.name)
    if config.console is not None and config.console.alerts:
        from edge_agent.sinks.console import ConsoleSink
        console = ConsoleSink(journal, lambda line: print(line, flush=True))
        consumers.append(console)  # reads alerts only: never holds retention back
        alert_sinks.append(console.name)
    anchor = None
    if config.ledger is not None:
        from edge_agent.sinks.ledger import LedgerAnchor
        anchor = LedgerAnchor(journal, config.ledger, public_key)
        consumers.append(anchor)  # retention needs "anchored", which implies its cursor passed
    agent = Agent(journal, sources, consumers, queue_size=config.gateway.queue_size,
                  commit_interval_s=config.gateway.commit_interval_s)
    agents.append(agent)
    retention = Retention(journal, config.journal_max_bytes,
                          guards=lambda: [name for guard in guards for name in guard()],
                          wal_reserve=journal.wal_limit_bytes)
    watched = Watched(agent, retention, config.journal_max_bytes, tuple(alert_sinks), readings,
                      config.gateway.id,
                      ledger_connected=(lambda: anchor.connected) if anchor is not None
                      else (lambda: None))
    return Assembly(config, journal, agent, retention, watched, rules)
