"""`sealtrail demo`: the whole product on one machine in about a minute and a half.

Customs make a signing key and sign a transit plan (corridor, offices, authorized stop, seals,
deadline) at run time; the gateway's rules engine accepts it only because it trusts that key. A
simulated truck and its two container e-seals (firmware_sim, each its own process, as real
firmware would be) talk over pseudo-terminals; the real agent reads those serial ports, signs
and journals every fix and seal message, evaluates the plan (corridor, zones, seals), prints
alerts, and anchors Merkle batches on an in-process EVM chain (eth-tester) where a customs
account deployed the contract and registered the gateway. The truck leaves its corridor on the
way; at the destination office customs open the seals, which closes the trip. Then each alert
is verified the way customs would: signature with the key registered on chain, chain link,
inclusion proof, and the root stored by the contract.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from edge_agent.agent import Agent
from edge_agent.journal import Journal
from edge_agent.rules import RuleParams, RulesEngine
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from edge_agent.sinks.console import ConsoleSink
from edge_agent.sources.heartbeat import HeartbeatSource
from edge_agent.sources.seal_auth import SealAuthenticator, load_keystore
from edge_agent.sources.serial_gps import SerialGpsSource
from edge_agent.sources.serial_seal import SerialSealSource
from geofences import DeviationParams, TransitPlan, sign_envelope
from ledger_client import chain
from ledger_client.keys import create_key, public_hex
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.verify import VerificationError, verify_record

GATEWAY_ID = "gw-demo-mvd-01"
DEMO_RULES = RuleParams(deviation=DeviationParams(min_duration_ms=5_000,
                                                  return_min_duration_ms=2_000))
"""Production waits a minute off the corridor before alerting; the demo's detour lasts ~16 s."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    speed_mps: float = 25.0
    rate_hz: float = 10.0
    progress_every_s: float = 5.0
    timeout_s: float = 110.0
    temporary: bool = False  # the workdir is removed at the end


def run_demo_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sealtrail-")))
        workdir.mkdir(parents=True, exist_ok=True)
        options = DemoOptions(workdir, args.speed_mps, args.rate_hz,
                              temporary=args.workdir is None)
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

    rules, plan = _customs_plan(opts.workdir, journal)
    say(f"[setup] customs signed transit plan {plan.plan_id} ({plan.declaration_ref}): "
        f"corridor {plan.corridor.corridor_id}, {plan.corridor.width_m:.0f} m either side, "
        f"{plan.departure_office} -> {plan.destination_office}, digest {plan.digest[:16]}…")

    sims = _Sims(opts.workdir / "sim.log")
    try:
        gps_port = await sims.start("gps", "--pty-link", str(opts.workdir / "gps0"),
                                    "--speed-mps", str(opts.speed_mps),
                                    "--rate-hz", str(opts.rate_hz), "--wait-reader")
        open_at = DEMO_ROUTE_M / opts.speed_mps + 3  # just after the truck has arrived
        keystore = _seal_keystore(opts.workdir / "seals.json", plan.seal_ids)
        seal_port = await sims.start("seal", "--keys", str(keystore),
                                     *[a for s in plan.seal_ids for a in ("--id", s)],
                                     "--pty-link", str(opts.workdir / "seals"),
                                     "--heartbeat-s", "5", "--open-at", f"{open_at:.1f}",
                                     "--duration-s", f"{open_at + 60:.1f}", "--wait-readers",
                                     "--progress-s", "3600")
        if gps_port is None or seal_port is None:
            say(f"[error] simulator did not start: {sims.log.read_text().strip()}")
            return 1
        say(f"[setup] simulated GPS receiver on {gps_port} "
            f"({opts.rate_hz:g} Hz, {opts.speed_mps:g} m/s)")
        say(f"[setup] simulated e-seal reader on {seal_port}: seals "
            f"{', '.join(plan.seal_ids)}, opened {open_at:.0f} s after departure")
        return await _drive(opts, journal, registry, submitter, rules, gps_port, seal_port,
                            keystore, sims.procs[0], started)
    finally:
        sims.stop()
        journal.close()


DEMO_ROUTE_M = 1780.0
"""Length of the simulator's default route (firmware_sim/scenarios/demo_truck_route.geojson)."""


class _Sims:
    """The simulated devices, each its own process as real firmware would be."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.procs: list[subprocess.Popen[str]] = []

    async def start(self, kind: str, *args: str) -> str | None:
        """Start ``sim <kind>``; the pty path it announces on its first line, or None."""
        with self.log.open("a") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.cli", "sim", kind,
                                     *args], stdout=subprocess.PIPE, stderr=log_file, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line.strip():
            proc.wait()
            return None
        return line.split()[-1]  # "<path>" (gps) or "port <device> <path>" (seal)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _seal_keystore(path: Path, seal_ids: Sequence[str]) -> Path:
    """The seals' secret keys, shared by the seal simulator and the gateway (mode 0600)."""
    doc = {"version": 1, "seals": {s: secrets.token_hex(32) for s in seal_ids}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    return path


def _customs_plan(workdir: Path, journal: Journal) -> tuple[RulesEngine, TransitPlan]:
    """Customs' side, done at run time: a fresh signing key, the demo plan made valid from now,
    signed; then the gateway's rules engine, trusting only that key, loads the envelope."""
    customs = create_key(workdir / "customs.key")
    say(f"[setup] customs: new Ed25519 plan-signing key {public_hex(customs)[:16]}…")
    doc = json.loads((resources.files("sealtrail") / "demo_data" / "plan.json").read_text())
    now = datetime.now(UTC).replace(microsecond=0)
    doc["valid_from"] = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    doc["deadline"] = (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    envelope = sign_envelope("plan", json.dumps(doc, indent=1).encode(), customs)
    (workdir / "plan.signed.json").write_bytes(envelope)
    rules = RulesEngine(journal, trusted_keys=[bytes.fromhex(public_hex(customs))],
                        params=DEMO_RULES)
    plan = rules.set_plan(envelope, source=str(workdir / "plan.signed.json"))
    assert isinstance(plan, TransitPlan)
    return rules, plan


async def _drive(opts: DemoOptions, journal: Journal, registry: chain.AnchorRegistry,
                 submitter: LocalAccount, rules: RulesEngine, gps_port: str, seal_port: str,
                 keystore: Path, sim: subprocess.Popen[str], started: float) -> int:
    alerts: list[str] = []
    closed = asyncio.Event()

    def show(line: str) -> None:
        alerts.append(line)
        say(line)
        if " tripClosed " in line:
            closed.set()

    source = SerialGpsSource(gps_port, sensor_id="gps0")
    seals = SerialSealSource(seal_port, SealAuthenticator(journal, load_keystore(keystore)),
                             reader_id="seal-reader0")
    anchor = AnchorSink(journal, registry, submitter,
                        BatchPolicy(max_leaves=256, max_age_s=10.0))
    agent = Agent(journal, [source, seals, HeartbeatSource(5.0)],
                  [rules, ConsoleSink(journal, show), anchor])
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
            say(f"[{time.monotonic() - started:5.1f}s] fixes {source.stats().added:4d}  "
                f"journal seq {journal.head()[0]:4d}  batches anchored {anchored:2d}  "
                f"alerts {len(alerts)}")
        say("[done] the truck has arrived; customs open its seals at the destination office")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), 15)
        say("[done] closing the last batch")
    finally:
        stop.set()
        await runner
    await anchor.flush(journal.head()[0])
    code = _verify_alerts(journal, registry)
    if code == 0:
        from sealtrail.demo_customs import customs_office

        for line in customs_office(opts.workdir, registry, rules.plan.plan_id
                                   if rules.plan is not None else "plan-demo-0001",
                                   temporary=opts.temporary):
            say(line)
    return code


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
