"""What the agent loads at start, and the readings uplink's linger as a gateway.toml setting.

After a power cut the gateway must be reading again within 2 s, so `sealtrail agent run`
imports only the sources and sinks its configuration names, and the ledger client (web3,
eth-account) only when the first batch is to be anchored. The import checks run the real
command in a fresh interpreter, stop it once it told systemd READY (its own NOTIFY_SOCKET
message, the event to wait on), and look at its `sys.modules`. How long start-up takes is
measured in bench/startup.py, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.mosquitto import free_port

from edge_agent.assemble import assemble
from edge_agent.config import ConfigError, load_config, parse_config
from ledger_client.evmkey import create_account
from ledger_client.keys import create_key

HEAVY = ("aiomqtt", "paho", "web3", "eth_account", "eth_tester", "eth", "customs",
         "sealtrail.demo", "firmware_sim")

RUN_UNTIL_READY = textwrap.dedent("""
    import faulthandler, json, os, signal, socket, sys, tempfile, threading
    from sealtrail.cli import main

    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where, in stderr

    folder = tempfile.mkdtemp(prefix="st-notify-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(folder + "/n")
    os.environ["NOTIFY_SOCKET"] = folder + "/n"

    def stop_when_ready():
        while not sock.recv(4096).startswith(b"READY=1"):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    code = main(["agent", "run", "-c", sys.argv[1], "--log-level", "warning"])
    print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
""")


def _config(tmp_path: Path, extra: str = "") -> Path:
    create_key(tmp_path / "gateway.key")
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "gw-start-01"
key = "gateway.key"
journal = "journal.db"

[[sources.serial_gps]]
port = "{tmp_path / 'no-gps-yet'}"

[metrics]
listen = "127.0.0.1:{free_port()}"
{extra}""")
    return path


def _modules_after_start(config: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", RUN_UNTIL_READY, str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0, proc.stderr[-3000:]
    return set(result["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_a_gps_only_gateway_starts_without_mqtt_web3_customs_or_the_demo(tmp_path) -> None:
    modules = _modules_after_start(_config(tmp_path))
    assert "edge_agent.sources.serial_gps" in modules  # it did start what was configured
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, ("edge_agent.sinks", "edge_agent.sources.mqtt_seal",
                             "edge_agent.sources.gpsd", "edge_agent.rules.engine")) == []


def test_with_a_ledger_configured_web3_waits_for_the_first_batch(tmp_path) -> None:
    create_account(tmp_path / "evm.key")
    modules = _modules_after_start(_config(tmp_path, """
[ledger]
rpc = "http://127.0.0.1:9"
contract = "0x00000000000000000000000000000000000000aa"
chain_id = 31337
evm_key = "evm.key"
max_age_s = 3600
"""))
    assert "edge_agent.sinks.ledger" in modules and "edge_agent.sinks.anchor" in modules
    assert _loaded(modules, ("web3", "eth_account", "eth_tester", "ledger_client.chain")) == []


# --- customs.readings_linger_s -------------------------------------------------------------

CUSTOMS = """
[customs]
host = "127.0.0.1"
tls = false
acks = false
plans = false
"""


def test_the_readings_linger_is_a_setting_the_customs_sink_gets(tmp_path) -> None:
    default = assemble(load_config(_config(tmp_path, CUSTOMS)))
    try:
        sink = next(c for c in default.agent.consumers if c.name == "customs")
        assert sink.policy.readings_linger_s == 2.0  # what the sink always used
    finally:
        default.close()
    (tmp_path / "set").mkdir()
    config = load_config(_config(tmp_path / "set", CUSTOMS + "readings_linger_s = 0.25\n"))
    assert config.customs is not None and config.customs.readings_linger_s == 0.25
    assembly = assemble(config)
    try:
        sink = next(c for c in assembly.agent.consumers if c.name == "customs")
        assert sink.policy.readings_linger_s == 0.25
    finally:
        assembly.close()


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "must be between 0 and 60"),
    ("61", "must be between 0 and 60"),
    ('"1s"', "expected a number"),
])
def test_an_invalid_readings_linger_is_refused_by_its_key(value: str, message: str) -> None:
    text = '[gateway]\nid = "gw-1"\n[[sources.serial_gps]]\nport = "/dev/ttyUSB0"\n' + CUSTOMS
    with pytest.raises(ConfigError) as info:
        parse_config(text + f"readings_linger_s = {value}\n", check_files=False)
    found = {p.key: p.message for p in info.value.problems}
    assert message in found["customs.readings_linger_s"], found


def test_the_documented_example_states_the_default_linger() -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "gateway.toml"
    config = load_config(example, check_files=False)
    assert config.customs is not None and config.customs.readings_linger_s == 2.0
