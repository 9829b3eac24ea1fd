"""``sealtrail sim fleet``, ``sim seal`` and ``sim keys``: many devices, a few seals, their keys.

``sim seal`` is a one-line fleet (a reader pty or MQTT, N seals, optional open/tamper times)
run by the same engine as ``sim fleet``, so a seal behaves identically whichever command
started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from firmware_sim.fleet import Fleet, FleetOptions
from firmware_sim.keystore import (
    default_seal_ids,
    derived_keys,
    read_keystore,
    write_keystore,
)
from firmware_sim.scenario import Scenario, load_scenario, parse_scenario
from firmware_sim.tomlcheck import ScenarioError

Sub = argparse._SubParsersAction  # type: ignore[type-arg]

FLEET_EPILOG = """\
examples:
  # 1,000 containers at a port gate, as fast as the broker takes them, with a run log
  sealtrail sim fleet --scenario port_gate --fast \\
      --mqtt-host 127.0.0.1 --mqtt-port 1883 --summary run.json
  # a truck transit in real time; ptys appear as links in /tmp/sealtrail
  sealtrail sim fleet --scenario truck_transit --pty-dir /tmp/sealtrail
  # the agent's keystore for that run (same seed, same keys)
  sealtrail sim keys --scenario port_gate --out seals.json

--scenario takes a file, or the name of a scenario shipped with SealTrail: port_gate,
truck_transit, attacks.

stdout: one line "port <device> <path>" per pty device, then "ready" once everything is
connected (in --fast mode the run then waits until every pty has a reader). Progress goes to
stderr every few seconds. The summary (--summary) lists per seal the counters sent genuine,
replayed, forged and lost, and per port the bytes written, their SHA-256 and the faults.
--fast runs on a simulated clock: with the same scenario, seed and --t0-ms, every device's byte
stream is identical from run to run. Exit status: 0 done, 1 runtime error (e.g. broker
unreachable), 2 bad arguments or scenario, 130 interrupted. SIGTERM ends the run cleanly
(summary written, links removed).
"""

SEAL_EPILOG = """\
examples:
  sealtrail sim seal --id SEAL-1 --pty-link /tmp/seal-reader --heartbeat-s 10 --open-at 30
  sealtrail sim seal --count 5 --mqtt-host 127.0.0.1 --gateway-id gw-01 --fast --duration-s 600
  sealtrail sim seal --keys seals.json --id SEAL-00001 --counters ctr.json --pty-link /tmp/r0

Keys come from --keys (a keystore, as the agent reads) or are derived from --seed (the same keys
`sim keys --seed` writes). --counters keeps each seal's counter between runs, as a real seal
keeps it in flash; without it every run starts at counter 1 and the agent will see replays.
"""

KEYS_EPILOG = """\
examples:
  sealtrail sim keys --count 1000 --seed 7 --out /etc/sealtrail/seals.json
  sealtrail sim keys --scenario port_gate --out seals.json

The file is {"version": 1, "seals": {"<seal_id>": "<64 hex>"}}, mode 0600, and is never
overwritten unless --force is given. Keys are derived from the seed: simulator use only.
"""


def add_parsers(sim_sub: Sub) -> None:
    """Register ``fleet``, ``seal`` and ``keys`` under ``sealtrail sim``."""
    raw = argparse.RawDescriptionHelpFormatter
    fleet = sim_sub.add_parser(
        "fleet", help="run a TOML scenario: trucks, seal readers and seals with timed events",
        description="Run a scenario of trucks (GNSS receivers on ptys), serial e-seal readers "
        "and seals (on readers or MQTT)\nwith timed events and injected faults.",
        epilog=FLEET_EPILOG, formatter_class=raw)
    fleet.add_argument("--scenario", type=Path, required=True, metavar="FILE",
                       help="scenario TOML (schema: firmware_sim/README.md)")
    fleet.add_argument("--duration", type=float, metavar="S",
                       help="override the scenario's run.duration_s")
    _common(fleet, scenario=True)
    fleet.add_argument("--pty-dir", type=Path, metavar="DIR",
                       help="symlink each pty device as DIR/<device id> (unless it sets link)")
    fleet.add_argument("--keys", type=Path, metavar="FILE",
                       help="read seal keys from this keystore instead of deriving them")
    fleet.add_argument("--keys-out", type=Path, metavar="FILE",
                       help="write this run's keystore (mode 0600, never overwritten)")
    fleet.set_defaults(func=run_fleet_command)

    seal = sim_sub.add_parser(
        "seal", help="one or a few e-seals on a serial reader pty or on MQTT",
        description="Simulate e-seals: keyed, counting, with battery drain and heartbeats.",
        epilog=SEAL_EPILOG, formatter_class=raw)
    ids = seal.add_mutually_exclusive_group()
    ids.add_argument("--id", action="append", dest="ids", metavar="SEAL_ID",
                     help="seal id (repeatable; default SEAL-00001)")
    ids.add_argument("--count", type=int, metavar="N", help="N seals SEAL-00001..")
    seal.add_argument("--pty-link", type=Path, metavar="PATH",
                      help="create the reader pty and symlink it at PATH (default: a bare pty)")
    seal.add_argument("--heartbeat-s", type=float, default=10.0, metavar="S",
                      help="heartbeat interval (default 10)")
    seal.add_argument("--duration-s", type=float, default=3600.0, metavar="S",
                      help="how long to run (default 3600)")
    seal.add_argument("--open-at", type=float, metavar="S", help="open every seal at S s")
    seal.add_argument("--tamper-at", type=float, metavar="S", help="tamper every seal at S s")
    seal.add_argument("--battery-pct", type=float, default=100.0, help="start battery (100)")
    seal.add_argument("--drain-pct-per-h", type=float, default=0.0,
                      help="battery drain in %% per hour (default 0)")
    seal.add_argument("--keys", type=Path, metavar="FILE", help="keystore to take keys from")
    _common(seal, scenario=False)
    seal.set_defaults(func=run_seal_command)

    keys = sim_sub.add_parser(
        "keys", help="write a seal keystore for the agent",
        description="Write the keystore the agent reads: a key per seal, derived from a seed.",
        epilog=KEYS_EPILOG, formatter_class=raw)
    src = keys.add_mutually_exclusive_group(required=True)
    src.add_argument("--count", type=int, metavar="M", help="M seals, ids <prefix>00001..")
    src.add_argument("--scenario", type=Path, metavar="FILE",
                     help="every seal of this scenario (seed defaults to its run.seed)")
    keys.add_argument("--prefix", default="SEAL-", help="id prefix with --count (SEAL-)")
    keys.add_argument("--seed", type=int, default=None, help="key seed (default 0)")
    keys.add_argument("--out", type=Path, required=True, metavar="FILE", help="keystore path")
    keys.add_argument("--force", action="store_true", help="replace an existing file")
    keys.set_defaults(func=run_keys_command)


def scenario_path(given: Path) -> Path:
    """A scenario file, or the name of one shipped in the package (port_gate, ...)."""
    if given.exists() or given.suffix or given.parent != Path("."):
        return given
    shipped = Path(__file__).resolve().parent / "scenarios" / f"{given}.toml"
    return shipped if shipped.exists() else given


def _common(p: argparse.ArgumentParser, *, scenario: bool) -> None:
    of = "the scenario's, else " if scenario else ""
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help=f"randomness and derived keys (default: {of}0)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", dest="fast", action="store_true",
                      help="simulated clock: wait for readers, run as fast as they drain")
    mode.add_argument("--realtime", dest="fast", action="store_false",
                      help="real-time pacing, wall-clock stamps (default)")
    p.add_argument("--t0-ms", type=int, metavar="MS",
                   help="--fast: Unix ms of simulated t = 0 (default "
                        + ("run.start_utc, else now)" if scenario else "now)"))
    p.add_argument("--wait-readers", action="store_true",
                   help="real time: start only once every pty has a reader")
    p.add_argument("--mqtt-host", metavar="H", help="broker for MQTT seals")
    p.add_argument("--mqtt-port", type=int, default=1883, metavar="P", help="(default 1883)")
    p.add_argument("--gateway-id", metavar="GW",
                   help="topic sealtrail/v1/<GW>/sensors/<seal_id>"
                        + (" (default: the scenario's, else gw-sim)" if scenario
                           else " (default gw-sim)"))
    p.add_argument("--mqtt-connections", type=int, metavar="N",
                   help="MQTT connections (default one per seal, at most 1000)")
    p.add_argument("--counters", type=Path, metavar="FILE",
                   help="persist each seal's counter here across runs")
    p.add_argument("--summary", type=Path, metavar="FILE", help="write the run log as JSON")
    p.add_argument("--progress-s", type=float, default=5.0, metavar="S",
                   help="progress line interval on stderr (default 5)")


def _say(cmd: str, msg: str) -> None:
    print(f"sim {cmd}: {msg}", file=sys.stderr, flush=True)


def run_fleet_command(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(scenario_path(args.scenario))
        keys = read_keystore(args.keys) if args.keys else None
    except (ScenarioError, OSError, ValueError) as exc:
        _say("fleet", str(exc))
        return 2
    if args.duration is not None and args.duration <= 0:
        _say("fleet", "--duration must be > 0")
        return 2
    return _run(args, scenario, keys, "fleet")


def run_seal_command(args: argparse.Namespace) -> int:
    try:
        ids = args.ids or default_seal_ids(args.count or 1)
        via = "mqtt" if args.mqtt_host else "reader"
        events = [{"t_s": t, "type": kind, "target": "*"}
                  for t, kind in ((args.open_at, "seal_open"), (args.tamper_at, "seal_tamper"))
                  if t is not None]
        doc: dict[str, Any] = {
            "run": {"duration_s": args.duration_s, "name": "sim-seal"},
            "seals": [{"id": i, "via": via, "heartbeat_s": args.heartbeat_s,
                       "battery_pct": args.battery_pct,
                       "drain_pct_per_h": args.drain_pct_per_h, "phase_s": 0.0} for i in ids],
            "events": events,
        }
        if via == "reader":
            doc["readers"] = [{"id": "reader", **(
                {"link": str(args.pty_link)} if args.pty_link else {})}]
        scenario = parse_scenario(doc, base_dir=Path.cwd())
        keys = read_keystore(args.keys) if args.keys else None
    except (ScenarioError, OSError, ValueError) as exc:
        _say("seal", str(exc))
        return 2
    args.duration = None
    args.pty_dir = None
    args.keys_out = None
    return _run(args, scenario, keys, "seal")


def run_keys_command(args: argparse.Namespace) -> int:
    try:
        if args.scenario is not None:
            scenario = load_scenario(scenario_path(args.scenario))
            ids = [s.id for s in scenario.seals]
            seed = args.seed if args.seed is not None else scenario.seed
        else:
            if args.count < 1:
                raise ValueError("--count must be >= 1")
            ids = default_seal_ids(args.count, args.prefix)
            seed = args.seed or 0
        write_keystore(args.out, derived_keys(seed, ids), force=args.force)
    except FileExistsError:
        _say("keys", f"{args.out} exists; not overwriting it (use --force to replace)")
        return 1
    except (ScenarioError, OSError, ValueError) as exc:
        _say("keys", str(exc))
        return 2
    print(f"wrote {args.out}: {len(ids)} seal keys (seed {seed}, mode 0600)")
    return 0


def _run(args: argparse.Namespace, scenario: Scenario, keys: dict[str, bytes] | None,
         cmd: str) -> int:
    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "ready":
            for dev, path in event["ports"].items():
                print(f"port {dev} {path}", flush=True)
            print("ready", flush=True)
        elif event["type"] in ("unplug", "replug"):
            _say(cmd, json.dumps(event, sort_keys=True))

    opts = FleetOptions(
        seed=args.seed, fast=bool(args.fast), t0_ms=args.t0_ms, duration_s=args.duration,
        mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, gateway_id=args.gateway_id,
        mqtt_connections=args.mqtt_connections, pty_dir=args.pty_dir,
        wait_readers=args.wait_readers, counters_file=args.counters, keys=keys,
        progress_s=args.progress_s, log=lambda m: _say(cmd, m), on_event=on_event,
    )
    if args.t0_ms is not None and not args.fast:
        _say(cmd, "--t0-ms only applies with --fast (real time uses the wall clock)")
        return 2
    try:
        fleet = Fleet(scenario, opts)
        if args.keys_out is not None:
            write_keystore(args.keys_out, {s: d.seal.key for s, d in fleet.seals.items()})
        summary = asyncio.run(_with_signals(fleet, opts))
    except FileExistsError as exc:
        _say(cmd, f"{exc.filename}: exists; not overwriting it")
        return 1
    except ScenarioError as exc:
        _say(cmd, str(exc))
        return 2
    except (OSError, ValueError, ConnectionError) as exc:
        _say(cmd, f"{type(exc).__name__}: {exc}")
        return 1
    except Exception as exc:  # aiomqtt.MqttError and friends: report, don't trace
        if type(exc).__module__.startswith("aiomqtt"):
            _say(cmd, f"MQTT: {exc}")
            return 1
        raise
    if args.summary is not None:
        args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    t = summary["totals"]
    _say(cmd, f"done in {summary['wall_s']:.1f} s: {t['seal_messages_sent']} seal messages "
         f"({t['genuine']} genuine, {t['replays']} replays, {t['forged']} forged, "
         f"{t['lost']} lost), {t['gps_epochs']} GPS epochs")
    return 130 if summary["stopped_early"] and _interrupted else 0


_interrupted = False


async def _with_signals(fleet: Fleet, opts: FleetOptions) -> dict[str, Any]:
    """SIGTERM and SIGINT stop the run cleanly: summary written, links removed."""
    loop = asyncio.get_running_loop()

    def on_int() -> None:
        global _interrupted
        _interrupted = True
        opts.stop.set()

    with contextlib.ExitStack() as stack:
        for sig, handler in ((signal.SIGTERM, opts.stop.set), (signal.SIGINT, on_int)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
                stack.callback(loop.remove_signal_handler, sig)
        return await fleet.run()
