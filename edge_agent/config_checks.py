"""The checks of gateway.toml that look across keys and at the files it names.

Split from config.py (the schema) because these know about the rest of the agent: key files,
the seal keystore, the journal, signed plans. All run before anything starts, and each
returns every problem it finds (config.load_config reports them together).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from sealtrail.tomlschema import Problem

if TYPE_CHECKING:
    from edge_agent.config import Config, RulesConfig


def parse_listen(value: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port)."""
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


def cross_checks(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    src = config.sources
    if not (src.serial_gps or src.gpsd or src.serial_seal or src.mqtt_seal):
        problems.append(Problem("sources", "no source configured: add at least one "
                                           "[[sources.serial_gps]], [[sources.gpsd]], "
                                           "[[sources.serial_seal]] or [sources.mqtt_seal]"))
    if (src.serial_seal or src.mqtt_seal) and config.seals is None:
        problems.append(Problem("seals.keystore", "required when an e-seal source is configured"
                                                  " (the seal keys, JSON, mode 0600)"))
    seen: dict[str, str] = {}
    entries: list[tuple[str, str]] = []
    entries += [(f"sources.serial_gps[{i}].sensor_id", s.sensor_id)
                for i, s in enumerate(src.serial_gps)]
    entries += [(f"sources.gpsd[{i}].sensor_id", s.sensor_id) for i, s in enumerate(src.gpsd)]
    entries += [(f"sources.serial_seal[{i}].reader_id", s.reader_id)
                for i, s in enumerate(src.serial_seal)]
    for key, ident in entries:
        if ident in seen:
            problems.append(Problem(key, f"{ident!r} is already used by {seen[ident]}: every "
                                         "sensor needs its own id (records name it as src)"))
        seen.setdefault(ident, key)
    ports: dict[Path, str] = {}
    for key, port in [(f"sources.serial_gps[{i}].port", s.port)
                      for i, s in enumerate(src.serial_gps)] + \
                     [(f"sources.serial_seal[{i}].port", s.port)
                      for i, s in enumerate(src.serial_seal)]:
        if port in ports:
            problems.append(Problem(key, f"{port} is already read by {ports[port]}"))
        ports.setdefault(port, key)
    for section, mq in (("sources.mqtt_seal", src.mqtt_seal), ("customs", config.customs)):
        if mq is None:
            continue
        if (mq.cert is None) != (mq.key is None):
            problems.append(Problem(f"{section}.cert", "cert and key go together (a client "
                                                       "certificate and its key)"))
        if not mq.tls and (mq.ca or mq.cert):
            problems.append(Problem(f"{section}.tls", "is false, but ca/cert are set"))
    rules = config.rules
    if rules is not None:
        if (rules.plan or rules.fences) and rules.customs_keys_file is None:
            problems.append(Problem("rules.customs_keys_file", "required to check the "
                                                               "signature of rules.plan/fences"))
        if (rules.site_lat is None) != (rules.site_lon is None):
            problems.append(Problem("rules.site_lat", "site_lat and site_lon go together"))
    wh = config.webhook
    if wh is not None and (wh.cert is None) != (wh.key is None):
        problems.append(Problem("webhook.cert", "cert and key go together (a client "
                                                "certificate and its key)"))
    if config.customs is not None and config.customs.plans and rules is None:
        problems.append(Problem("customs.plans", "plans from customs need a [rules] section "
                                                 "(with customs_keys_file) to check and apply "
                                                 "them; add it or set plans = false"))
    cc = config.customs
    if cc is not None and cc.acks and ack_keys_file(config) is None:
        problems.append(Problem("customs.ack_keys_file", "required to check customs' delivery "
                                                         "acknowledgements (customs public keys, "
                                                         "hex, one a line; default: "
                                                         "rules.customs_keys_file)"))
    if cc is not None and cc.ack_timeout_s > cc.resend_max_s:
        problems.append(Problem("customs.resend_max_s", f"must be at least ack_timeout_s "
                                                        f"({cc.ack_timeout_s:g})"))
    return problems


def ack_keys_file(config: Config) -> Path | None:
    """The customs keys that sign delivery acks: customs.ack_keys_file, else the plans' keys."""
    cc, rules = config.customs, config.rules
    if cc is None or not cc.acks:
        return None
    if cc.ack_keys_file is not None:
        return cc.ack_keys_file
    return rules.customs_keys_file if rules is not None else None


def file_checks(config: Config, warnings: list[str]) -> list[Problem]:
    """What the agent will open: present, parseable, private where secret."""
    from ledger_client.keys import KeyFileError, load_key, public_hex

    problems: list[Problem] = []
    gw = config.gateway
    public = None
    try:
        public = public_hex(load_key(gw.key))
    except KeyFileError as exc:
        problems.append(Problem("gateway.key", str(exc)))
    problems += _journal_checks(gw.id, gw.journal, public)
    if config.seals is not None:
        from edge_agent.sources.seal_auth import KeystoreError, load_keystore
        try:
            load_keystore(config.seals.keystore)
        except KeystoreError as exc:
            problems.append(Problem("seals.keystore", str(exc)))
    if config.ledger is not None:
        from ledger_client.evmkey import EvmKeyError, read_private_key
        try:
            read_private_key(config.ledger.evm_key)
        except EvmKeyError as exc:
            problems.append(Problem("ledger.evm_key", str(exc)))
    else:
        warnings.append("no [ledger]: nothing is anchored, so the journal is never pruned and "
                        "grows past journal_max_mb")
    for section, link in (("sources.mqtt_seal", config.sources.mqtt_seal),
                          ("customs", config.customs), ("webhook", config.webhook)):
        if link is None:
            continue
        found = _readable(f"{section}.ca", link.ca) + _readable(f"{section}.cert", link.cert)
        found += _secret(f"{section}.key", link.key)
        for name in ("password_file", "authorization_file"):
            found += _secret(f"{section}.{name}", getattr(link, name, None))
        if not found and getattr(link, "tls", True):
            found += _tls(section, link)
        problems += found
        if not getattr(link, "tls", True):
            warnings.append(f"{section}.tls is false: the MQTT password and everything sent "
                            "cross the network in clear text")
    if config.rules is not None:
        problems += _rules_checks(config.rules)
    acks_from = ack_keys_file(config)
    if acks_from is not None and config.customs is not None \
            and config.customs.ack_keys_file is not None:
        from geofences import GeofenceError, load_trusted_keys
        try:
            load_trusted_keys(acks_from)
        except GeofenceError as exc:
            problems.append(Problem("customs.ack_keys_file", str(exc)))
    if config.customs is not None and not config.customs.acks:
        warnings.append("customs.acks is false: an alert counts as delivered once the broker "
                        "has it (PUBACK); a broker crash or a customs store that loses data "
                        "can lose alerts without the gateway knowing")
    for i, s in enumerate(config.sources.serial_gps):
        if not s.port.exists():
            warnings.append(f"sources.serial_gps[{i}].port: {s.port} is not present now; the "
                            "agent keeps trying to open it")
    for i, s in enumerate(config.sources.serial_seal):
        if not s.port.exists():
            warnings.append(f"sources.serial_seal[{i}].port: {s.port} is not present now; the "
                            "agent keeps trying to open it")
    if config.metrics.enabled:
        host, _ = parse_listen(config.metrics.listen)
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            warnings.append(f"metrics.listen: {config.metrics.listen} is reachable from the "
                            "network; metrics hold no secrets but show the gateway's activity")
    return problems


def _rules_checks(rules: RulesConfig) -> list[Problem]:
    """Signed plan and fences load now, not at the first reading: a wrong signature is found
    while the installer is still at the gateway."""
    from geofences import GeofenceError, load_trusted_keys, open_envelope

    if rules.customs_keys_file is None:
        return []
    try:
        keys = load_trusted_keys(rules.customs_keys_file)
    except GeofenceError as exc:
        return [Problem("rules.customs_keys_file", str(exc))]
    problems = []
    for name in ("plan", "fences"):
        path = getattr(rules, name)
        if path is None:
            continue
        try:
            doc = open_envelope(path.read_bytes(), keys, source=str(path))
        except OSError as exc:
            problems.append(Problem(f"rules.{name}", f"{path}: {exc.strerror or exc}"))
            continue
        except GeofenceError as exc:
            problems.append(Problem(f"rules.{name}", str(exc)))
            continue
        kind = "plan" if hasattr(doc, "plan_id") else "fences"
        if kind != name:
            problems.append(Problem(f"rules.{name}", f"{path} holds a signed {kind}, not "
                                                     f"{'a plan' if name == 'plan' else 'fences'}"))
    return problems


def _journal_checks(gateway_id: str, journal: Path, public: str | None) -> list[Problem]:
    if journal.exists():
        if not journal.is_file():
            return [Problem("gateway.journal", f"{journal} is not a file")]
        from ledger_client.journal_format import JournalError
        from ledger_client.journal_reader import JournalReader

        try:
            with JournalReader(journal) as found:
                owner, key = found.gateway_id, found.public_key
        except JournalError as exc:  # not a journal, or a newer format than this agent's
            return [Problem("gateway.journal", str(exc))]
        if owner != gateway_id:
            return [Problem("gateway.journal", f"{journal} belongs to gateway "
                                               f"{owner!r}, not {gateway_id!r}")]
        if public is not None and key != public:
            return [Problem("gateway.journal", f"{journal} was signed with another key "
                                               f"({str(key)[:16]}…) than "
                                               "gateway.key; a chain signed by two keys "
                                               "verifies by none")]
        if not os.access(journal, os.W_OK):
            return [Problem("gateway.journal", f"{journal} is not writable by this user")]
        return []
    parent = journal.parent
    if not parent.is_dir():
        return [Problem("gateway.journal", f"directory {parent} does not exist")]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [Problem("gateway.journal", f"directory {parent} is not writable by this user "
                                           "(the journal and its WAL are created there)")]
    return []


def _tls(section: str, link: object) -> list[Problem]:
    """The CA, certificate and key load as PEM (what the TLS context will do at connect)."""
    from edge_agent.sinks.tls import TlsConfigError, client_context
    try:
        client_context(getattr(link, "ca", None), getattr(link, "cert", None),
                       getattr(link, "key", None))
    except TlsConfigError as exc:
        key = "ca" if getattr(link, "ca", None) and "CA" in str(exc) else "cert"
        return [Problem(f"{section}.{key}", str(exc))]
    return []


def _readable(key: str, path: Path | None) -> list[Problem]:
    if path is None:
        return []
    if not path.is_file() or not os.access(path, os.R_OK):
        return [Problem(key, f"{path}: not a readable file")]
    return []


def _secret(key: str, path: Path | None) -> list[Problem]:
    problems = _readable(key, path)
    if problems or path is None:
        return problems
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Problem(key, f"{path}: permissions {stat.filemode(mode)} are too open for a "
                             f"secret; run `chmod 600 {path}`")]
    return []
