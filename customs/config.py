"""customs.toml: the customs service's one file, checked completely before anything starts.

`load_config(path)` parses TOML into frozen dataclasses and reports every problem at once
(``ConfigError``, one line per dotted key), like the gateway's gateway.toml: an operator at a
customs office should fix the file in one pass, not discover its faults one restart at a time.
Besides types and ranges it checks what can be known before starting: secret files exist and
are private (mode 0600), the trust source is named exactly once, a cookie without the Secure
flag is allowed only on a loopback listener, the store's directory exists. The schema is
documented key by key in deploy/customs.toml.

``[ledger]`` is shared with `sealtrail verify --config customs.toml`: it holds exactly ``rpc``,
``contract``, ``chain_id`` and ``confirmations``; the audit chain's anchoring settings live in
``[audit]`` so that table stays what a verifier reads.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from sealtrail.errors import SealTrailError
from sealtrail.tomlschema import INTERNAL, Builder, Check, Problem, at_least, between, check

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CONTRACT_RE = re.compile(r"0x[0-9a-fA-F]{40}")
EXIT_CONFIG = 78  # EX_CONFIG: the systemd unit does not restart on it


class ConfigError(SealTrailError):
    """customs.toml cannot be used; ``problems`` names each key and what is wrong."""

    exit_code = EXIT_CONFIG

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        head = f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


def _pattern(regex: re.Pattern[str], what: str) -> Check:
    return lambda v: None if regex.fullmatch(v) else f"{v!r} is not a valid {what}"


def parse_listen(value: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected HOST:PORT with a port 1-65535")
    host = host.removeprefix("[").removesuffix("]")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{value!r}: the host must be an IP address or localhost") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _listen(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


def _url(*schemes: str) -> Check:
    return lambda v: None if v.startswith(schemes) else (
        f"{v!r}: expected a URL starting with {' or '.join(schemes)}")


# --- schema ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class OfficeConfig:
    audit_id: str = field(default="customs-audit", metadata=check(_pattern(
        ID_RE, "audit chain id (letters, digits, '.', '_', '-'; at most 64)")))
    service_key: Path = Path("/var/lib/sealtrail-customs/service.key")
    customs_keys_file: Path | None = None  # more public keys whose plans are trusted
    issuer: str | None = None  # credential issuer DID; default: did:key of the service key


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    target: str = "/var/lib/sealtrail-customs/customs.db"  # SQLite path or postgresql:// URL
    quarantine_rows: int = field(default=1000, metadata=check(between(1, 10_000_000)))
    quarantine_mb: float = field(default=8.0, metadata=check(between(0.01, 100_000)))
    pool_size: int = field(default=4, metadata=check(between(1, 100)))


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    broker: str
    port: int = field(default=8883, metadata=check(between(1, 65535)))
    tls: bool = True
    ca: Path | None = None  # default: the system's CA store
    cert: Path | None = None
    key: Path | None = None
    username: str = "customs"
    password_file: Path | None = None
    client_id: str = "sealtrail-customs"
    group: str | None = None  # MQTT 5 shared subscription group of several receivers
    keepalive_s: int = field(default=30, metadata=check(between(5, 3600)))
    recheck_s: float = field(default=60.0, metadata=check(between(1, 86_400)))
    backoff_min_s: float = field(default=0.5, metadata=check(between(0.01, 60)))
    backoff_max_s: float = field(default=30.0, metadata=check(between(0.1, 3600)))


@dataclass(frozen=True, kw_only=True)
class TrustConfig:
    file: Path | None = None  # {"gateways": {"<gw>": "<public key hex>"}}
    ledger: bool = False  # the registry of [ledger]
    ttl_s: float = field(default=60.0, metadata=check(between(0, 86_400)))


@dataclass(frozen=True, kw_only=True)
class LedgerConfig:
    rpc: str = field(metadata=check(_url("http://", "https://")))
    contract: str = field(metadata=check(_pattern(CONTRACT_RE, "contract address (0x + 40 "
                                                               "hex digits)")))
    chain_id: int | None = field(default=None, metadata=check(at_least(1)))
    confirmations: int = field(default=0, metadata=check(between(0, 1000)))


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    evm_key: Path | None = None  # the customs submitter's EVM key: anchoring on when set
    max_leaves: int = field(default=256, metadata=check(between(1, 1_000_000)))
    max_age_s: float = field(default=60.0, metadata=check(between(1, 86_400)))
    poll_s: float = field(default=2.0, metadata=check(between(0.05, 3600)))
    timeout_s: float = field(default=10.0, metadata=check(between(1, 300)))


@dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    listen: str = field(default="127.0.0.1:8080", metadata=check(_listen))
    session_hours: float = field(default=12.0, metadata=check(between(0.05, 24 * 30)))
    secure_cookie: bool = True
    verify_timeout_s: float = field(default=5.0, metadata=check(between(0.1, 120)))


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    url: str = field(metadata=check(_url("http://", "https://")))
    token_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Config:
    office: OfficeConfig = field(default_factory=OfficeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    mqtt: MqttConfig | None = None  # without it: console (and imports) only
    trust: TrustConfig = field(default_factory=TrustConfig)
    ledger: LedgerConfig | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    webhook: WebhookConfig | None = None
    path: Path | None = field(default=None, metadata=INTERNAL)

    @property
    def listen(self) -> tuple[str, int]:
        return parse_listen(self.console.listen)


SECTIONS = ("office", "store", "mqtt", "trust", "ledger", "audit", "console", "webhook")


def load_config(path: str | Path, *, check_files: bool = True) -> Config:
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
    store = doc.get("store")
    if isinstance(store, dict) and isinstance(store.get("target"), str) and \
            not store["target"].startswith(("postgresql://", "postgres://")):
        path = Path(store["target"]).expanduser()  # a relative SQLite path: beside the file
        store["target"] = str(path if path.is_absolute() else builder.base_dir / path)
    config = builder.table(Config, doc, "")
    if config is None:
        raise ConfigError(source, builder.problems)
    problems = cross_checks(config)
    if check_files and not problems:
        problems += file_checks(config)
    if problems:
        raise ConfigError(source, problems)
    return replace(config, path=origin)


def cross_checks(c: Config) -> list[Problem]:
    problems: list[Problem] = []
    if c.mqtt is not None:
        if (c.trust.file is None) == (not c.trust.ledger):
            problems.append(Problem("trust", "name the trusted gateway keys exactly once: "
                                             "file = \"trust.json\", or ledger = true"))
        if c.mqtt.backoff_min_s > c.mqtt.backoff_max_s:
            problems.append(Problem("mqtt.backoff_min_s", "must not exceed backoff_max_s"))
        if (c.mqtt.cert is None) != (c.mqtt.key is None):
            problems.append(Problem("mqtt.cert", "cert and key come together"))
        if not c.mqtt.tls and not is_loopback_name(c.mqtt.broker):
            problems.append(Problem("mqtt.tls", "false is only allowed for a broker on "
                                                "loopback (a lab); gateways' alerts and "
                                                "passwords never travel in clear"))
    if c.trust.ledger and c.ledger is None:
        problems.append(Problem("trust.ledger", "needs a [ledger] table (rpc, contract)"))
    if c.audit.evm_key is not None and c.ledger is None:
        problems.append(Problem("audit.evm_key", "anchoring the audit chain needs a [ledger] "
                                                 "table (rpc, contract)"))
    host, _ = c.listen
    if not c.console.secure_cookie and not is_loopback(host):
        problems.append(Problem("console.secure_cookie", "false is only allowed when the "
                                "console listens on loopback (tests, or behind a local TLS "
                                f"proxy); {c.console.listen} is reachable from the network"))
    return problems


def is_loopback_name(host: str) -> bool:
    try:
        return is_loopback(host)
    except ValueError:
        return False


def file_checks(c: Config) -> list[Problem]:
    problems: list[Problem] = []
    secrets = [("office.service_key", c.office.service_key),
               ("audit.evm_key", c.audit.evm_key)]
    if c.mqtt is not None:
        secrets += [("mqtt.password_file", c.mqtt.password_file), ("mqtt.key", c.mqtt.key)]
    if c.webhook is not None:
        secrets.append(("webhook.token_file", c.webhook.token_file))
    for key, path in secrets:
        if path is not None:
            problems += _private_file(key, path)
    readable = [("office.customs_keys_file", c.office.customs_keys_file),
                ("trust.file", c.trust.file)]
    if c.mqtt is not None:
        readable += [("mqtt.ca", c.mqtt.ca), ("mqtt.cert", c.mqtt.cert)]
    for key, path in readable:
        if path is not None and not path.is_file():
            problems.append(Problem(key, f"{path}: no such file"))
    target = c.store.target
    if not target.startswith(("postgresql://", "postgres://")):
        parent = Path(target).parent
        if not parent.is_dir():
            problems.append(Problem("store.target", f"{parent}: no such directory"))
        elif not os.access(parent, os.W_OK):
            problems.append(Problem("store.target", f"{parent}: not writable by this user"))
    return problems


def _private_file(key: str, path: Path) -> list[Problem]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        hint = " (make it with `sealtrail keys init --key PATH`)" if key.endswith("_key") and \
            key != "mqtt.key" else ""
        return [Problem(key, f"{path}: no such file{hint}")]
    except OSError as exc:
        return [Problem(key, f"{path}: {exc.strerror}")]
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Problem(key, f"{path}: permissions {stat.filemode(mode)} are too open; run "
                             f"`chmod 600 {path}`")]
    return []
