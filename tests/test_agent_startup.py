"""What the agent loads at start, and the readings uplink's linger as a gateway.toml setting.

After a power cut the gateway must be reading again within 2 s, so `sealtrail agent run`
imports only the sources and sinks its configuration names, and the ledger client (raw
JSON-RPC; never web3 or eth-account) only when the first batch is to be anchored. The import
checks run the real command in a fresh interpreter, stop it once it told systemd READY (its
own NOTIFY_SOCKET message, the event to wait on) or /metrics shows an anchored batch, and
look at its `sys.modules`. How long start-up takes is
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


RUN_UNTIL_ANCHORED = textwrap.dedent("""
    import faulthandler, json, os, signal, sys, threading, time, urllib.request
    from sealtrail.cli import main

    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where, in stderr

    def anchored_through():
        url = f"http://127.0.0.1:{sys.argv[2]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("sealtrail_anchored_through_seq "):
                return float(line.split()[1])
        return 0

    def stop_when_anchored():
        while anchored_through() < 1:  # /metrics reads the journal's anchored prefix
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_anchored, daemon=True).start()
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


@pytest.mark.integration
def test_an_agent_that_anchored_a_batch_never_imported_web3_or_eth_account(tmp_path) -> None:
    """The gateway's ledger client is raw JSON-RPC with a `cryptography` signer (issue 16:
    web3 and eth-account were ~50 MB of a gateway's RSS): after a batch is anchored on a real
    node, none of web3, eth-account, eth-keys or eth-utils was imported."""
    from anvil_node import deploy_and_register, running, write_key

    from ledger_client.keys import load_key, public_hex

    config = _config(tmp_path)
    port = free_port()
    text = config.read_text().replace('journal = "journal.db"',
                                      'journal = "journal.db"\nheartbeat_s = 1')
    with running(tmp_path) as anvil:
        pubkey = bytes.fromhex(public_hex(load_key(tmp_path / "gateway.key")))
        registry, _, submitter = deploy_and_register(anvil, "gw-start-01", pubkey)
        write_key(tmp_path / "evm.key", submitter)
        config.write_text(text.split("[metrics]")[0] + f"""
[ledger]
rpc = "{anvil.url}"
contract = "{registry.address}"
chain_id = {anvil.chain_id}
evm_key = "evm.key"
max_age_s = 1
poll_s = 0.2

[metrics]
listen = "127.0.0.1:{port}"
""")
        proc = subprocess.run([sys.executable, "-c", RUN_UNTIL_ANCHORED, str(config), str(port)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["code"] == 0, proc.stderr[-3000:]
        assert registry.root("gw-start-01", 1) is not None  # anchored on chain, not only said
    modules = set(result["modules"])
    assert "ledger_client.rpc_registry" in modules and "ledger_client.signer" in modules
    assert _loaded(modules, ("web3", "eth_account", "eth_keys", "eth_utils", "eth_tester",
                             "ledger_client.chain", "ledger_client.tx")) == []


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
