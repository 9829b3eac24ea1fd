"""customs.toml: the documented example parses, and a bad file lists every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from customs.config import ConfigError, load_config, parse_config
from sealtrail.cli import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "customs.toml"


def test_the_documented_example_parses() -> None:
    config = load_config(DEPLOY, check_files=False)
    assert config.mqtt is not None and config.mqtt.port == 8883
    assert config.trust.file == Path("/etc/sealtrail/trust.json")
    assert config.console.secure_cookie and config.listen == ("127.0.0.1", 8080)
    assert config.ledger is None and config.office.audit_id == "customs-audit-uymvd"


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    key = tmp_path / "service.key"
    key.write_text("not really a key")
    key.chmod(0o644)
    text = f"""
[office]
service_key = "{key}"
audit_id = "has spaces"
[store]
target = "{tmp_path}/nowhere/customs.db"
quarantine_rows = -1
[mqtt]
broker = "mqtt.example"
tls = false
portt = 1883
[console]
listen = "0.0.0.0:8080"
secure_cookie = false
[ledger]
rpc = "ftp://x"
contract = "0x12"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="customs.toml")
    message = str(info.value)
    for expected in ("office.audit_id: 'has spaces' is not a valid audit chain id",
                     "store.quarantine_rows: must be between 1",
                     "mqtt.portt: unknown key (did you mean 'port'?)",
                     "ledger.rpc: 'ftp://x': expected a URL",
                     "ledger.contract: '0x12' is not a valid contract address"):
        assert expected in message, message
    fixed = text.replace('audit_id = "has spaces"', "").replace("quarantine_rows = -1", "")
    fixed = fixed.replace("portt", "port").replace('"ftp://x"', '"http://127.0.0.1:8545"')
    fixed = fixed.replace('"0x12"', '"0x' + "ab" * 20 + '"')
    with pytest.raises(ConfigError) as info:
        parse_config(fixed, source="customs.toml")
    message = str(info.value)
    for expected in ("trust: name the trusted gateway keys exactly once",
                     "mqtt.tls: false is only allowed for a broker on loopback",
                     "console.secure_cookie: false is only allowed when the console listens "
                     "on loopback"):
        assert expected in message, message
    fixed = fixed.replace("tls = false", "").replace('"0.0.0.0:8080"', '"127.0.0.1:8080"')
    fixed += f'\n[trust]\nfile = "{tmp_path}/trust.json"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(fixed, source="customs.toml")
    message = str(info.value)
    assert "permissions -rw-r--r-- are too open" in message
    assert "nowhere: no such directory" in message and "trust.json: no such file" in message


def test_serve_with_a_bad_config_exits_78_naming_the_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "customs.toml"
    path.write_text("[console]\nlisten = 'nowhere'\n")
    assert main(["customs", "serve", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert "console.listen: 'nowhere': expected HOST:PORT" in err
