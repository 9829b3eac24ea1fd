"""gateway.toml: the one file an installer writes, checked completely before anything runs.

`load_config(path)` parses TOML (tomllib) into frozen dataclasses and checks, in one pass,
everything that can be known before starting: types and ranges of every key, unknown keys (with
a did-you-mean), cross-key rules (a seal source needs a keystore; sensor ids and ports are not
shared), and the files the agent will need: the gateway key and EVM key exist, hold keys and
are mode 0600, the seal keystore parses and is private, the journal's directory is writable and
an existing journal belongs to this gateway and key. Every problem is reported at once in a
`ConfigError`, each naming its dotted key. Serial devices that are absent are only warnings: a
USB receiver unplugged at boot is found again when it comes back.

The schema is documented key by key in deploy/gateway.toml.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_agent.config_checks import cross_checks, file_checks, parse_listen
from edge_agent.rules.params import RuleParams
from sealtrail.tomlschema import (
    INTERNAL,
    Builder,
    Check,
    Problem,
    at_least,
    between,
    check,
    did_you_mean,
    one_of,
)

GATEWAY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SENSOR_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
CONTRACT_RE = re.compile(r"0x[0-9a-fA-F]{40}")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
MIN_JOURNAL_MB = 1


class ConfigError(Exception):
    """The configuration cannot be used; `problems` names each key and what is wrong."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:"]
        super().__init__("\n".join(lines + [f"  {p}" for p in problems]))


def _pattern(regex: re.Pattern[str], what: str) -> Check:
    return lambda v: None if regex.fullmatch(v) else f"{v!r} is not a valid {what}"


def _listen(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


def _heartbeat(value: float | None) -> str | None:
    if value is None or 1 <= value <= 30:
        return None
    return (f"must be between 1 and 30 (or false), got {value!r}: the rules take a gap of "
            "60 s in record time for the agent's own downtime")


# --- schema ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    id: str = field(metadata=check(_pattern(GATEWAY_ID_RE, "gateway id (letters, digits, "
                                                          "'.', '_', '-'; at most 64)")))
    key: Path = Path("/var/lib/sealtrail/gateway.key")
    journal: Path = Path("/var/lib/sealtrail/journal.db")
    journal_max_mb: float = field(default=1024.0, metadata=check(at_least(MIN_JOURNAL_MB)))
    prune_interval_s: float = field(default=60.0, metadata=check(between(1, 3600)))
    heartbeat_s: float | None = field(default=10.0, metadata=check(_heartbeat))
    synchronous: str = field(default="FULL", metadata=check(one_of("FULL", "NORMAL", "EXTRA")))
    queue_size: int = field(default=1024, metadata=check(between(16, 1_000_000)))
    commit_interval_s: float = field(default=2.0, metadata=check(between(0, 10)))


@dataclass(frozen=True, kw_only=True)
class FiltersConfig:
    """edge_agent.sources.gps_filter.FixFilterParams; `false` switches a check off."""

    min_sats: int = field(default=4, metadata=check(between(0, 64)))
    max_hdop_x10: int = field(default=200, metadata=check(between(1, 9999)))
    max_age_ms: int | None = field(default=30_000, metadata=check(at_least(0)))
    max_future_ms: int | None = field(default=5_000, metadata=check(at_least(0)))
    max_speed_cmps: int | None = field(default=7_000, metadata=check(at_least(1)))
    jump_slack_m: float = field(default=50.0, metadata=check(at_least(0)))
    reanchor_after: int = field(default=5, metadata=check(at_least(1)))


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """edge_agent.sources.gnss_health.HealthParams."""

    lost_after_ms: int = field(default=3_000, metadata=check(at_least(1)))
    jam_err_cm: int = field(default=5_000, metadata=check(at_least(1)))
    jam_sats_before: int = field(default=8, metadata=check(at_least(1)))
    jam_sats_after: int = field(default=4, metadata=check(at_least(0)))
    jam_window_ms: int = field(default=10_000, metadata=check(at_least(1)))
    clear_after_ms: int = field(default=30_000, metadata=check(at_least(1)))


_SENSOR = check(_pattern(SENSOR_ID_RE, "sensor id"))


@dataclass(frozen=True, kw_only=True)
class SerialGpsConfig:
    port: Path
    sensor_id: str = field(default="gps0", metadata=_SENSOR)
    baud: int = field(default=9600, metadata=check(one_of(*BAUDS)))
    silence_s: float | None = field(default=10.0, metadata=check(at_least(0.1)))
    read_interval_ms: int = field(default=200, metadata=check(between(0, 1000)))
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass(frozen=True, kw_only=True)
class GpsdConfig:
    host: str = "127.0.0.1"
    port: int = field(default=2947, metadata=check(between(1, 65535)))
    device: str | None = None
    sensor_id: str = field(default="gps0", metadata=_SENSOR)
    stall_s: float = field(default=10.0, metadata=check(at_least(0.5)))
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass(frozen=True, kw_only=True)
class SerialSealConfig:
    port: Path
    reader_id: str = field(default="sealreader0", metadata=_SENSOR)
    baud: int = field(default=9600, metadata=check(one_of(*BAUDS)))
    silence_s: float | None = field(default=60.0, metadata=check(at_least(0.1)))


@dataclass(frozen=True, kw_only=True)
class MqttSealConfig:
    host: str
    port: int = field(default=8883, metadata=check(between(1, 65535)))
    tls: bool = True
    ca: Path | None = None  # default: the system's CA store
    cert: Path | None = None  # client certificate (with key), if the broker wants one
    key: Path | None = None
    username: str | None = None  # default: the gateway id
    password_file: Path | None = None
    client_id: str | None = None  # default: "<gateway id>-seals"
    keepalive_s: int = field(default=30, metadata=check(between(5, 3600)))
    receive_maximum: int = field(default=512, metadata=check(between(1, 1024)))
    batch_ms: int = field(default=100, metadata=check(between(0, 1000)))


@dataclass(frozen=True, kw_only=True)
class SourcesConfig:
    serial_gps: tuple[SerialGpsConfig, ...] = ()
    gpsd: tuple[GpsdConfig, ...] = ()
    serial_seal: tuple[SerialSealConfig, ...] = ()
    mqtt_seal: MqttSealConfig | None = None


@dataclass(frozen=True, kw_only=True)
class SealsConfig:
    keystore: Path
    alert_interval_s: float = field(default=60.0, metadata=check(at_least(0)))
    unknown_report_s: float = field(default=3600.0, metadata=check(at_least(0)))


@dataclass(frozen=True, kw_only=True)
class LedgerConfig:
    rpc: str = field(metadata=check(lambda v: None if v.startswith(("http://", "https://"))
                                    else f"{v!r}: expected an http:// or https:// URL"))
    contract: str = field(metadata=check(_pattern(CONTRACT_RE, "contract address (0x + 40 "
                                                               "hex digits)")))
    chain_id: int = field(metadata=check(at_least(1)))
    evm_key: Path = Path("/var/lib/sealtrail/evm.key")
    confirmations: int = field(default=0, metadata=check(between(0, 1000)))
    max_leaves: int = field(default=4096, metadata=check(between(1, 1_000_000)))
    max_age_s: float = field(default=60.0, metadata=check(between(1, 86_400)))
    close_on_critical: bool = True
    gas_price_wei: int | None = field(default=None, metadata=check(at_least(0)))
    max_fee_wei: int | None = field(default=None, metadata=check(at_least(0)))
    poll_s: float = field(default=1.0, metadata=check(between(0.05, 3600)))
    stuck_after_s: float = field(default=60.0, metadata=check(at_least(1)))
    poa: bool | None = None  # omitted: detected from the chain's blocks
    timeout_s: float = field(default=10.0, metadata=check(between(1, 300)))
    from_block: int = field(default=0, metadata=check(at_least(0)))


@dataclass(frozen=True, kw_only=True)
class RulesConfig:
    customs_keys_file: Path | None = None  # customs public keys (hex, one a line)
    plan: Path | None = None  # a signed transit plan envelope, loaded at start
    fences: Path | None = None  # a signed fence bundle envelope, loaded at start
    vehicle: str | None = None  # vehicle id in alerts when no plan names one
    gps_sensors: tuple[str, ...] | None = None  # GPS ids on the plan's vehicle (default: all)
    site_lat: float | None = field(default=None, metadata=check(between(-90, 90)))
    site_lon: float | None = field(default=None, metadata=check(between(-180, 180)))
    checkpoint_s: float = field(default=30.0, metadata=check(between(0.1, 3600)))
    thresholds: RuleParams = field(default_factory=RuleParams)  # every rule's threshold


@dataclass(frozen=True, kw_only=True)
class CustomsConfig:
    host: str
    port: int = field(default=8883, metadata=check(between(1, 65535)))
    tls: bool = True
    ca: Path | None = None  # default: the system's CA store
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None  # default: the gateway id (what the broker ACL expects)
    password_file: Path | None = None
    client_id: str | None = None  # default: "<gateway id>-customs"
    keepalive_s: int = field(default=30, metadata=check(between(5, 3600)))
    window: int = field(default=16, metadata=check(between(1, 1000)))
    max_rate: float = field(default=200.0, metadata=check(between(0.1, 100_000)))
    burst: int = field(default=100, metadata=check(between(1, 100_000)))
    uplink_readings: bool = True
    uplink_anchors: bool = True
    readings_per_message: int = field(default=200, metadata=check(between(1, 10_000)))
    readings_linger_s: float = field(default=2.0, metadata=check(between(0, 60)))  # gateway.toml
    status_s: float = field(default=60.0, metadata=check(between(1, 86_400)))
    plans: bool = True  # take signed plans from sealtrail/v1/<gw>/plans (needs [rules])
    acks: bool = True  # an alert is delivered when customs acknowledges it, not at PUBACK
    ack_keys_file: Path | None = None  # customs keys for acks; default rules.customs_keys_file
    ack_timeout_s: float = field(default=30.0, metadata=check(between(1, 3600)))
    resend_max_s: float = field(default=900.0, metadata=check(between(1, 86_400)))


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    url: str = field(metadata=check(lambda v: None if v.startswith("https://") and len(v) > 8
                                    else f"{v!r}: expected an https:// URL (alerts and "
                                         "credentials never travel in clear)"))
    ca: Path | None = None  # default: the system's CA store
    cert: Path | None = None  # client certificate (with key), for mutual TLS
    key: Path | None = None
    authorization_file: Path | None = None  # its content is sent as the Authorization header
    timeout_s: float = field(default=10.0, metadata=check(between(1, 300)))
    refusal_retries: int = field(default=3, metadata=check(between(0, 100)))


@dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    alerts: bool = True  # one line per alert on stdout (the journal of the systemd unit)


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    enabled: bool = True
    listen: str = field(default="127.0.0.1:9108", metadata=check(_listen))


@dataclass(frozen=True, kw_only=True)
class Config:
    gateway: GatewayConfig
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    seals: SealsConfig | None = None
    rules: RulesConfig | None = None
    ledger: LedgerConfig | None = None
    customs: CustomsConfig | None = None
    webhook: WebhookConfig | None = None
    console: ConsoleConfig | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    path: Path | None = field(default=None, metadata=INTERNAL)  # the file it came from
    warnings: tuple[str, ...] = field(default=(), metadata=INTERNAL)

    @property
    def journal_max_bytes(self) -> int:
        return int(self.gateway.journal_max_mb * 1024 * 1024)


SECTIONS = ("gateway", "sources", "seals", "rules", "ledger", "customs", "webhook", "console",
            "metrics")
OPTIONAL = {  # sections whose code may be missing from a build: module, what it is
    "rules": ("edge_agent.rules.engine", "the rules engine (edge_agent/rules/)"),
    "customs": ("edge_agent.sinks.customs_mqtt", "the customs MQTT sink"),
    "webhook": ("edge_agent.sinks.webhook", "the webhook sink"),
}


def available(section: str) -> bool:
    """Whether the code behind an optional section is installed."""
    module = OPTIONAL[section][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent is a module, not a package
        return False


# --- loading ---------------------------------------------------------------------------------

def load_config(path: str | Path, *, check_files: bool = True) -> Config:
    """Parse and check gateway.toml; ConfigError lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read: {exc.strerror or exc}")]) \
            from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not UTF-8 text ({exc.reason})")]) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent,
                        check_files=check_files, origin=path)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None,
                 check_files: bool = True, origin: Path | None = None) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [Problem("", f"not valid TOML: {exc}")]) from None
    builder = Builder(base_dir or Path.cwd())
    known = {name: name for name in SECTIONS}
    for name in list(doc):
        if name in OPTIONAL and (name not in known or not available(name)):
            builder.problem(name, f"not available in this build: {OPTIONAL[name][1]} is not "
                                  "installed; remove the section")
            del doc[name]
        elif name not in known:
            builder.problem(name, "unknown section" + did_you_mean(name, [*SECTIONS, *OPTIONAL]))
    doc = {k: v for k, v in doc.items() if k in known}
    if "gateway" not in doc:
        builder.problem("gateway", "required section is missing (at least: id = \"...\")")
        raise ConfigError(source, builder.problems)
    config = builder.table(Config, doc, "")
    problems = builder.problems
    if config is None:
        raise ConfigError(source, problems)
    warnings: list[str] = []
    problems += cross_checks(config)
    if check_files and not problems:
        problems += file_checks(config, warnings)
    if problems:
        raise ConfigError(source, problems)
    return replace(config, path=origin, warnings=tuple(warnings))


def read_secret(path: Path) -> str:
    """A password file's content without the trailing newline editors add."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")
