"""gateway.toml: every problem reported at once, each naming its key; files checked at start."""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from edge_agent import agent_cli, config
from edge_agent.config import ConfigError, load_config, parse_config
from edge_agent.config_checks import ack_keys_file
from edge_agent.journal import Journal
from geofences import sign_envelope
from ledger_client.keys import create_key, public_hex
from sealtrail.tomlschema import dump

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "gateway.toml"
PLAN = ROOT / "sealtrail" / "demo_data" / "plan.json"
MINIMAL = """
[gateway]
id = "gw-test-01"

[[sources.serial_gps]]
port = "/dev/ttyUSB0"
"""


def agent(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    agent_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["agent", *argv])
    return int(args.func(args))


def problems(text: str, **kw) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, check_files=False, **kw)
    return {p.key: p.message for p in info.value.problems}


def test_the_documented_example_is_valid_and_its_dump_reads_back_the_same() -> None:
    cfg = load_config(EXAMPLE, check_files=False)
    assert cfg.gateway.id == "UY-TRUCK-SBX1234"
    assert cfg.sources.serial_gps[0].filters.max_age_ms == 30_000
    assert cfg.ledger is not None and cfg.ledger.gas_price_wei == 0
    assert cfg.customs is not None and cfg.customs.plans
    text = "\n".join(dump(cfg))
    tomllib.loads(text)  # valid TOML
    assert parse_config(text, check_files=False) == replace(cfg, path=None)


def test_defaults_fill_a_minimal_file() -> None:
    cfg = parse_config(MINIMAL, check_files=False)
    gps = cfg.sources.serial_gps[0]
    assert (gps.sensor_id, gps.baud, gps.filters.min_sats) == ("gps0", 9600, 4)
    assert cfg.gateway.journal == Path("/var/lib/sealtrail/journal.db")
    assert cfg.journal_max_bytes == 1024 * 1024 * 1024
    assert cfg.metrics.listen == "127.0.0.1:9108" and cfg.ledger is None


def test_every_problem_is_reported_at_once_naming_its_dotted_key() -> None:
    found = problems("""
[gateway]
id = "gw/01"
journal_max_mb = 0
heartbeat_s = 120

[[sources.serial_gps]]
port = "/dev/ttyUSB0"

[[sources.serial_gps]]
port = "/dev/ttyUSB1"
baudrate = 9600
baud = 9601
[sources.serial_gps.filters]
max_age_ms = "30s"
max_future_ms = false

[ledgr]
rpc = "http://x"

[metrics]
listen = "0.0.0.0"
""")
    assert found == {
        "ledgr": "unknown section (did you mean 'ledger'?)",
        "gateway.id": found["gateway.id"],
        "gateway.journal_max_mb": "must be >= 1, got 0.0",
        "gateway.heartbeat_s": found["gateway.heartbeat_s"],
        "sources.serial_gps[1].baudrate": "unknown key (did you mean 'baud'?)",
        "sources.serial_gps[1].baud": found["sources.serial_gps[1].baud"],
        "sources.serial_gps[1].filters.max_age_ms": "expected an integer, got a string ('30s')",
        "metrics.listen": "'0.0.0.0': expected HOST:PORT with a port 1-65535",
    }
    assert "not a valid gateway id" in found["gateway.id"]
    assert "9601 is not one of" in found["sources.serial_gps[1].baud"]
    assert "60 s" in found["gateway.heartbeat_s"]


def test_syntax_errors_and_a_missing_gateway_section_are_named() -> None:
    assert "not valid TOML" in problems("[gateway\nid = 1")[""]
    assert "line 2" in problems("[gateway]\nid = \n")[""]
    assert problems("[[sources.gpsd]]\n") == {
        "gateway": 'required section is missing (at least: id = "...")'}
    assert problems("[gateway]\n") == {"gateway.id": "required key is missing"}
    assert "no source configured" in problems('[gateway]\nid = "gw-1"\n')["sources"]


def test_cross_key_rules() -> None:
    found = problems(MINIMAL + """
[[sources.gpsd]]
sensor_id = "gps0"

[[sources.serial_seal]]
port = "/dev/ttyUSB0"

[customs]
host = "broker"
cert = "client.pem"
""")
    assert "already used by sources.serial_gps[0].sensor_id" in found["sources.gpsd[0].sensor_id"]
    assert "already read by sources.serial_gps[0].port" in found["sources.serial_seal[0].port"]
    assert "required when an e-seal source" in found["seals.keystore"]
    assert "cert and key go together" in found["customs.cert"]
    assert "need a [rules] section" in found["customs.plans"]


def test_a_section_whose_code_is_missing_is_refused_as_not_available(monkeypatch) -> None:
    monkeypatch.setitem(config.OPTIONAL, "customs", ("edge_agent.sinks.no_such_sink", "the x"))
    found = problems(MINIMAL + '[customs]\nhost = "broker"\n')
    assert found == {"customs": "not available in this build: the x is not installed; "
                                "remove the section"}
    monkeypatch.setitem(config.OPTIONAL, "webhook", ("edge_agent.sinks.no_such_sink", "y"))
    assert "not available in this build" in problems(MINIMAL + "[webhook]\n")["webhook"]


def test_webhooks_are_https_only() -> None:
    assert "expected an https:// URL" in problems(
        MINIMAL + '[webhook]\nurl = "http://alerts.example/x"\n')["webhook.url"]
    cfg = parse_config(MINIMAL + '[webhook]\nurl = "https://alerts.example/x"\n',
                       check_files=False)
    assert cfg.webhook is not None and cfg.webhook.refusal_retries == 3


# --- files, checked before anything runs ---------------------------------------------------------

def _site(tmp_path: Path, extra: str = "", *, key_mode: int = 0o600) -> Path:
    key = tmp_path / "gateway.key"
    if not key.exists():
        create_key(key)
    key.chmod(key_mode)
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "gw-test-01"
key = "gateway.key"
journal = "state/journal.db"

[[sources.serial_gps]]
port = "{tmp_path / 'no-such-tty'}"
{extra}""")
    (tmp_path / "state").mkdir(exist_ok=True)
    return path


def _file_problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return {p.key: p.message for p in info.value.problems}


def test_relative_paths_resolve_next_to_the_file_and_absent_ports_only_warn(tmp_path) -> None:
    cfg = load_config(_site(tmp_path))
    assert cfg.gateway.key == tmp_path / "gateway.key"
    assert cfg.gateway.journal == tmp_path / "state" / "journal.db"
    assert any("no-such-tty is not present now" in w for w in cfg.warnings)
    assert any("no [ledger]" in w for w in cfg.warnings)


def test_keys_and_secrets_must_be_private_and_well_formed(tmp_path) -> None:
    (tmp_path / "seals.json").write_text('{"version": 1, "seals": {}}')
    (tmp_path / "seals.json").chmod(0o644)
    (tmp_path / "evm.key").write_text("not hex\n")
    (tmp_path / "evm.key").chmod(0o600)
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o640)
    (tmp_path / "customs-keys.txt").write_text(public_hex(Ed25519PrivateKey.generate()) + "\n")
    path = _site(tmp_path, """
[[sources.serial_seal]]
port = "/dev/ttyUSB9"
[seals]
keystore = "seals.json"
[ledger]
rpc = "http://127.0.0.1:8545"
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
chain_id = 31337
evm_key = "evm.key"
[customs]
host = "broker"
password_file = "pw"
plans = false
ack_keys_file = "customs-keys.txt"
""", key_mode=0o644)
    found = _file_problems(path)
    assert "too open" in found["gateway.key"] and "chmod 600" in found["gateway.key"]
    assert "too open" in found["seals.keystore"]
    assert "expected 64 hex digits" in found["ledger.evm_key"]
    assert "too open for a secret" in found["customs.password_file"]
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    path.write_text(path.read_text().replace('password_file = "pw"',
                                             'password_file = "pw"\nca = "ca.pem"'))
    assert "cannot load CA certificates" in _file_problems(path)["customs.ca"]
    path.write_text(path.read_text().replace('ca = "ca.pem"', ""))
    (tmp_path / "gateway.key").chmod(0o600)
    (tmp_path / "seals.json").chmod(0o600)
    (tmp_path / "evm.key").write_text(Account.create().key.hex() + "\n")
    (tmp_path / "pw").chmod(0o600)
    cfg = load_config(path)
    assert any("customs.tls" not in w for w in cfg.warnings)


def test_customs_needs_the_keys_that_sign_its_delivery_acks(tmp_path) -> None:
    """Alerts are delivered when customs acknowledges them: without customs' keys the gateway
    could not check an ack, so [customs] needs them (by default the plans' keys), or an
    explicit acks = false, which is warned about."""
    customs = MINIMAL + '[customs]\nhost = "broker"\ntls = false\nplans = false\n'
    assert "required to check customs' delivery" in problems(customs)["customs.ack_keys_file"]
    (tmp_path / "keys.txt").write_text(public_hex(Ed25519PrivateKey.generate()) + "\n")
    with_rules = parse_config(customs + '[rules]\ncustoms_keys_file = "keys.txt"\n',
                              base_dir=tmp_path, check_files=False)
    assert ack_keys_file(with_rules) == tmp_path / "keys.txt"  # the plans' keys by default
    (tmp_path / "bad.txt").write_text("not a key\n")
    path = _site(tmp_path, '[customs]\nhost = "broker"\ntls = false\nplans = false\n'
                           'ack_keys_file = "bad.txt"\nack_timeout_s = 60\nresend_max_s = 30\n')
    assert "at least ack_timeout_s" in problems(path.read_text())["customs.resend_max_s"]
    path.write_text(path.read_text().replace("resend_max_s = 30", "resend_max_s = 600"))
    assert "not an Ed25519 public key" in _file_problems(path)["customs.ack_keys_file"]
    path.write_text(path.read_text().replace('ack_keys_file = "bad.txt"', "acks = false"))
    assert any("customs.acks is false" in w for w in load_config(path).warnings)


def test_an_existing_journal_must_belong_to_this_gateway_and_key(tmp_path) -> None:
    path = _site(tmp_path)
    other = Ed25519PrivateKey.generate()
    Journal(tmp_path / "state" / "journal.db", gateway_id="gw-other", key=other).close()
    assert "belongs to gateway 'gw-other'" in _file_problems(path)["gateway.journal"]
    (tmp_path / "state" / "journal.db").unlink()
    Journal(tmp_path / "state" / "journal.db", gateway_id="gw-test-01", key=other).close()
    assert "signed with another key" in _file_problems(path)["gateway.journal"]
    path.write_text(path.read_text().replace("state/journal.db", "nowhere/journal.db"))
    assert "does not exist" in _file_problems(path)["gateway.journal"]


def test_signed_plans_are_verified_at_start(tmp_path) -> None:
    customs, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (tmp_path / "customs-keys.txt").write_text(f"# customs\n{public_hex(customs)}\n")
    payload = PLAN.read_bytes()
    (tmp_path / "plan.json").write_bytes(sign_envelope("plan", payload, stranger))
    fences = json.dumps({"format": "sealtrail-fences/1", "bundle_id": "port-01", "version": 1,
                         "zones": {"type": "FeatureCollection", "features": [{
                             "type": "Feature", "properties": {"id": "gate", "role": "port_area",
                                                               "radius_m": 200},
                             "geometry": {"type": "Point", "coordinates": [-56.2, -34.9]}}]}})
    (tmp_path / "fences.json").write_bytes(sign_envelope("fences", fences.encode(), customs))
    path = _site(tmp_path, """
[rules]
customs_keys_file = "customs-keys.txt"
plan = "fences.json"
fences = "plan.json"
""")
    found = _file_problems(path)
    assert "holds a signed fences, not a plan" in found["rules.plan"]
    assert "plan.json" in found["rules.fences"]  # signed by a key customs did not list
    (tmp_path / "plan.json").write_bytes(sign_envelope("plan", payload, customs))
    path.write_text(path.read_text().replace('plan = "fences.json"', 'plan = "plan.json"')
                    .replace('fences = "plan.json"', 'fences = "fences.json"'))
    cfg = load_config(path)
    assert cfg.rules is not None and cfg.rules.plan == tmp_path / "plan.json"


def test_agent_check_prints_the_effective_config_or_every_problem(tmp_path, capsys) -> None:
    path = _site(tmp_path)
    assert agent("check", "-c", str(path)) == 0
    out = capsys.readouterr().out
    effective = tomllib.loads(out)
    assert effective["gateway"]["journal_max_mb"] == 1024.0
    assert effective["sources"]["serial_gps"][0]["filters"]["max_age_ms"] == 30000
    path.write_text(path.read_text() + "\n[metrics]\nlisten = \"127.0.0.1:99999\"\n")
    assert agent("check", "-c", str(path)) == 78
    err = capsys.readouterr().err
    assert "1 problem" in err and "metrics.listen" in err


def test_rule_thresholds_are_configurable_and_checked_by_key(tmp_path) -> None:
    from edge_agent.assemble import build_rules

    text = MINIMAL + """
[rules]
[rules.thresholds]
max_stop_ms = 1_200_000
low_battery_pct = 15
[rules.thresholds.deviation]
min_duration_ms = 90_000
"""
    cfg = parse_config(text, check_files=False)
    assert cfg.rules is not None
    journal = Journal(tmp_path / "j.db", gateway_id="gw-test-01",
                      key=Ed25519PrivateKey.generate())
    engine = build_rules(cfg, journal)
    assert (engine.params.max_stop_ms, engine.params.low_battery_pct,
            engine.params.deviation.min_duration_ms) == (1_200_000, 15, 90_000)
    assert engine.params.seal_missing_ms == 300_000  # the rest keep their defaults
    journal.close()
    bad = problems(text.replace("1_200_000", "-5").replace("15\n", "15\nmax_stp_ms = 1\n")
                   .replace("90_000", "-1"))
    assert "did you mean 'max_stop_ms'" in bad["rules.thresholds.max_stp_ms"]
    assert "min_duration_ms must be an int >= 0" in bad["rules.thresholds.deviation"]
    assert problems(text.replace("low_battery_pct = 15", "low_battery_pct = 40")) == {
        "rules.thresholds": "RuleParams.low_battery_rearm_pct must be >= low_battery_pct"}
