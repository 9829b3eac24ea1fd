"""`sealtrail demo`: the whole product on one machine in about a minute and a half.

A simulated truck (firmware_sim, run as its own process, as real firmware would be) drives a
route on a pseudo-terminal; the real agent reads that serial port, signs and journals every fix,
evaluates the transit corridor, prints alerts, and anchors Merkle batches on an in-process EVM
chain (eth-tester) where a customs account deployed the contract and registered the gateway.
When the truck arrives, each alert is verified the way customs would: signature with the key
registered on chain, chain link, inclusion proof, and the root stored by the contract.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.keys import create_key, public_hex
from edge_agent.rules import RouteRules
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.serial_gps import SerialGpsSource
from geofences import Corridor, DeviationParams, load_corridor
from ledger_client import chain
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.verify import VerificationError, verify_record

GATEWAY_ID = "gw-demo-mvd-01"
VEHICLE = "truck-SBX-1234"
PLAN_ID = "plan-demo-0001"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    speed_mps: float = 25.0
    rate_hz: float = 10.0
    progress_every_s: float = 5.0
    timeout_s: float = 110.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo", help="run a simulated truck through the real agent and verify its alerts",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--workdir", type=Path, default=None,
                      help="keep the key, journal and logs here (default: a temporary directory, "
                           "removed at the end)")
    demo.add_argument("--speed-mps", type=float, default=25.0,
                      help="truck speed in m/s (default 25: the drive takes about 75 s)")
    demo.add_argument("--rate-hz", type=float, default=10.0,
                      help="GPS fixes per second (default 10)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log the agent's internals")
    demo.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sealtrail-")))
        workdir.mkdir(parents=True, exist_ok=True)
        options = DemoOptions(workdir, args.speed_mps, args.rate_hz)
        return asyncio.run(run_demo(options))
    return 1  # pragma: no cover  (ExitStack does not swallow exceptions)


def say(text: str) -> None:
    print(text, flush=True)


async def run_demo(opts: DemoOptions) -> int:
    started = time.monotonic()
    say("SealTrail demo: simulated truck -> real agent -> in-process ledger -> verification")

    key = create_key(opts.workdir / "gateway.key")
    journal = Journal(opts.workdir / "journal.db", gateway_id=GATEWAY_ID, key=key)
    say(f"[setup] gateway {GATEWAY_ID}: new Ed25519 key {public_hex(key)[:16]}…, "
        f"journal {opts.workdir / 'journal.db'}")

    w3 = chain.connect(None)
    customs = w3.eth.accounts[0]
    registry = chain.AnchorRegistry.deploy(w3, customs)
    submitter = Account.create()
    chain.fund(w3, customs, submitter.address, 10**18)
    registry.register_gateway(GATEWAY_ID, bytes.fromhex(public_hex(key)), submitter.address,
                              customs)
    say(f"[setup] ledger: in-process chain id {w3.eth.chain_id}, anchor contract "
        f"{registry.address}, gateway registered by customs")

    corridor_file = resources.files("edge_agent") / "demo_data" / "corridor.geojson"
    corridor = load_corridor(Path(str(corridor_file)))
    say(f"[setup] transit plan {PLAN_ID}: corridor {corridor.corridor_id}, "
        f"{corridor.width_m:.0f} m either side of the route")

    sim_log = opts.workdir / "sim.log"
    with sim_log.open("w") as log_file:
        sim = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim.cli", "sim", "gps", "--pty-link",
             str(opts.workdir / "gps0"), "--speed-mps", str(opts.speed_mps), "--rate-hz",
             str(opts.rate_hz), "--wait-reader"],
            stdout=subprocess.PIPE, stderr=log_file, text=True)
    try:
        assert sim.stdout is not None
        port = await asyncio.to_thread(sim.stdout.readline)
        sim.stdout.close()
        if not port.strip():
            sim.wait()
            say(f"[error] simulator did not start: {sim_log.read_text().strip()}")
            return 1
        say(f"[setup] simulated GPS receiver on {port.strip()} "
            f"({opts.rate_hz:g} Hz, {opts.speed_mps:g} m/s)")
        return await _drive(opts, journal, registry, submitter, corridor, port.strip(), sim,
                            started)
    finally:
        if sim.poll() is None:
            sim.terminate()
            sim.wait()
        journal.close()


async def _drive(opts: DemoOptions, journal: Journal, registry: chain.AnchorRegistry,
                 submitter: LocalAccount, corridor: Corridor, port: str,
                 sim: subprocess.Popen[str],
                 started: float) -> int:
    alerts: list[str] = []

    def show(line: str) -> None:
        alerts.append(line)
        say(line)

    source = SerialGpsSource(port, sensor_id="gps0")
    rules = RouteRules(journal, corridor, vehicle=VEHICLE, plan_id=PLAN_ID,
                       params=DeviationParams(min_duration_ms=5_000, return_min_duration_ms=2_000))
    anchor = AnchorSink(journal, registry, submitter,
                        BatchPolicy(max_leaves=256, max_age_s=10.0))
    agent = Agent(journal, [source], [rules, ConsoleSink(journal, show), anchor])
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop))
    deadline = started + opts.timeout_s
    try:
        while sim.poll() is None:
            if runner.done():
                runner.result()
                say("[error] the agent stopped unexpectedly")
                return 1
            if time.monotonic() > deadline:
                say("[error] the drive took too long; giving up")
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(runner), opts.progress_every_s)
            anchored = sum(1 for b in journal.batches() if b.status == "anchored")
            say(f"[{time.monotonic() - started:5.1f}s] fixes {source.counts['fixes']:4d}  "
                f"journal seq {journal.head()[0]:4d}  batches anchored {anchored:2d}  "
                f"alerts {len(alerts)}")
        say("[done] the truck has arrived; closing the last batch")
    finally:
        stop.set()
        await runner
    await anchor.flush(journal.head()[0])
    return _verify_alerts(journal, registry)


def _verify_alerts(journal: Journal, registry: chain.AnchorRegistry) -> int:
    alerts = journal.alerts_after(0)
    if not alerts:
        say("[error] the truck left its corridor but no alert was raised")
        return 1
    for alert in alerts:
        body = alert.record()["body"]
        say(f"[verify] {body['type']} alert {body['alert_id']} (seq {alert.seq})")
        previous = journal.get(alert.seq - 1)
        if previous is None or alert.record()["prev"] != previous.hash.hex():
            say(f"  chain link: BROKEN at seq {alert.seq}")
            return 1
        say(f"  chain link: ok, prev is the hash of seq {alert.seq - 1}")
        batch = journal.batch_for(alert.seq)
        if batch is None or batch.status != "anchored":
            say("  not anchored")
            return 1
        signed = [s.signed for s in journal.range(batch.first_seq, batch.last_seq)]
        assert batch.tx_hash is not None and batch.block_hash is not None
        ref = AnchorRef(registry.w3.eth.chain_id, registry.address, batch.batch_seq,
                        batch.tx_hash.hex(), batch.block_number or 0, batch.block_hash.hex(),
                        batch.log_index or 0)
        proof = make_proof(signed, batch.first_seq, alert.seq, ref, "anchored")
        try:
            result = verify_record(alert.signed, proof, registry)
        except VerificationError as exc:
            say(f"  FAILED: {exc}")
            return exc.code
        for step in result.steps:
            say(f"  {step}")
    say("verified")
    return 0
