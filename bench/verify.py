"""`sealtrail verify` throughput against a local anvil node, and its offline part alone.

An evidence file of --records records (default 1,000: the goal's own size, so interpreter start
and imports are in the figure) is built the way a gateway and customs make one: the journal
signs and chains GPS and e-seal readings, the agent's anchoring sink anchors them on anvil in
batches of 256, and the exporter writes the file. Then:

- the real command, `python -m sealtrail.cli verify FILE --rpc URL --contract ADDR`, in a
  subprocess, wall time, --rounds times (median and best reported), and once more on a file
  five times as long (what the fixed start-up cost leaves per record);
- the offline part alone (parse, the file's own checks, signature and inclusion proof per
  record: `verify_file.check_offline`), in process, on the same file;
- for scale: the raw Ed25519 verify rate of this machine in the same run (a shared machine
  drifts, so read the figures against it), the ledger round trips one verification makes,
  and the per-record web3 path the command used before (`verify_record` with
  `chain.AnchorRegistry`, four round trips a record) on a 100-record sample.

    python bench/verify.py [--records N] [--rounds R]

Prints one JSON line. Goal (DESIGN.md budgets, issue 12): at least 1,000 records/s verified
against a local node; the offline part several thousand records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout, and tests/anvil_node.py

from anvil_node import AnvilNode, running  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from edge_agent.journal import Draft, Journal  # noqa: E402
from edge_agent.ledger_cli import JournalFile, build_evidence  # noqa: E402
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy  # noqa: E402
from ledger_client import chain, evidence, verify_file  # noqa: E402
from ledger_client.keys import public_hex  # noqa: E402
from ledger_client.reader import RegistryReader  # noqa: E402
from ledger_client.rpc import JsonRpc  # noqa: E402
from ledger_client.verify import verify_record  # noqa: E402

GOAL = 1_000
LEAVES = 256
T0 = 1_790_000_000_000
GW = "gw-bench-verify"
WEB3_SAMPLE = 100


def drafts(n: int) -> list[Draft]:
    """Readings as a truck gateway journals them: GPS at 1 Hz, a seal report every 10th."""
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(Draft(T0 + i * 1000, "seal", f"SEAL-{i % 4:05d}", {
                "ctr": i, "state": "C", "battery_pct": 87, "seal_t_ms": T0 + i * 1000}))
        else:
            out.append(Draft(T0 + i * 1000, "gps", "gps0", {
                "lat_e7": -349_000_000 + i * 37, "lon_e7": -562_000_000 - i * 41,
                "hdop_x10": 9, "sats": 11, "speed_cmps": 2222, "course_cdeg": 4500,
                "fix": 1}))
    return out


def build(node: AnvilNode, workdir: Path, n: int) -> tuple[Path, chain.AnchorRegistry,
                                                          Ed25519PrivateKey]:
    customs, submitter = node.account(), node.account()
    registry = chain.AnchorRegistry.deploy(node.w3, customs)
    key = Ed25519PrivateKey.generate()
    gateway_id = f"{GW}-{n}"
    registry.register_gateway(gateway_id, bytes.fromhex(public_hex(key)), submitter.address,
                              customs)
    path = workdir / f"journal-{n}.db"
    journal = Journal(path, gateway_id=gateway_id, key=key, synchronous="NORMAL")
    journal.append(drafts(n))
    asyncio.run(AnchorSink(journal, registry, submitter,
                           BatchPolicy(max_leaves=LEAVES)).flush(n))
    journal.close()
    jf = JournalFile(path)
    try:
        ev = build_evidence(jf, dict(jf.signed(1, n)), {"seq": [f"1..{n}"]})
    finally:
        jf.close()
    assert len(ev.pending) == 0, "every batch should be anchored"
    out = workdir / f"evidence-{n}.json"
    out.write_text(ev.to_json())
    return out, registry, key


def command(file: Path, url: str, contract: str) -> float:
    """Wall time of the real command, checked to verify every record."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sealtrail.cli", "verify", str(file), "--rpc",
                           url, "--contract", contract], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or " records verified" not in proc.stdout.splitlines()[-1]:
        raise RuntimeError(f"verify failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall


def startup() -> float:
    """Interpreter start and the verify command's imports: `sealtrail verify --help`."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sealtrail.cli", "verify", "--help"],
                   capture_output=True, check=True, cwd=ROOT)
    return time.perf_counter() - start


def offline_rate(file: Path, key: Ed25519PrivateKey, rounds: int) -> float:
    ev = evidence.read(file)
    keys = {ev.gateway_id: key.public_key()}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        results = verify_file.check_offline(ev, keys)
        times.append(time.perf_counter() - start)
        assert all(r.ok for r in results)
    return len(ev.records) / statistics.median(times)


def raw_verify_rate(key: Ed25519PrivateKey, n: int = 3000) -> float:
    messages = [b'{"body":{"lat_e7":-349000000},"seq":%d}' % i for i in range(n)]
    signatures = [key.sign(m) for m in messages]
    public = key.public_key()
    start = time.perf_counter()
    for message, signature in zip(messages, signatures, strict=True):
        public.verify(signature, message)
    return n / (time.perf_counter() - start)


def round_trips(file: Path, url: str, contract: str) -> int:
    """HTTP requests one verification of the file makes (the command's own path)."""
    reader = RegistryReader(JsonRpc(url), contract)
    reader.check_deployed()
    results = verify_file.verify(evidence.read(file), reader)
    assert all(r.ok for r in results)
    return reader.rpc.requests


def web3_rate(file: Path, registry: chain.AnchorRegistry) -> float:
    """The per-record path `sealtrail verify` took before: web3, four round trips a record."""
    ev = evidence.read(file)
    sample = ev.records[:WEB3_SAMPLE]
    start = time.perf_counter()
    for rec in sample:
        verify_record(rec.signed, rec.proof, registry)
    return len(sample) / (time.perf_counter() - start)


def measure(records: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sealtrail-bench-verify-") as tmp, \
            running(Path(tmp)) as node:
        file, registry, key = build(node, Path(tmp), records)
        big, big_registry, _ = build(node, Path(tmp), records * 5)
        raw_before = raw_verify_rate(key)
        walls = [command(file, node.url, registry.address) for _ in range(rounds)]
        big_wall = statistics.median(command(big, node.url, big_registry.address)
                                     for _ in range(max(1, rounds // 2)))
        offline = offline_rate(file, key, rounds)
        raw_after = raw_verify_rate(key)
        out = {
            "records": records, "rounds": rounds, "batches": -(-records // LEAVES),
            "file_bytes": file.stat().st_size,
            "verify_wall_s_median": round(statistics.median(walls), 3),
            "verify_records_per_s": round(records / statistics.median(walls)),
            "verify_records_per_s_best": round(records / min(walls)),
            "verify_records_per_s_5x_file": round(5 * records / big_wall),
            "startup_s": round(statistics.median(startup() for _ in range(3)), 3),
            "offline_records_per_s": round(offline),
            "raw_ed25519_verifies_per_s": round((raw_before + raw_after) / 2),
            "ledger_round_trips": round_trips(file, node.url, registry.address),
            "web3_per_record_records_per_s": round(web3_rate(file, registry), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=GOAL, help="records in the file")
    parser.add_argument("--rounds", type=int, default=5, help="runs of the command")
    args = parser.parse_args()
    if args.records < 1000 or args.rounds < 1:
        parser.error("--records must be >= 1000 and --rounds >= 1")
    figures = measure(args.records, args.rounds)
    print(json.dumps({
        "bench": "verify", "cpus": os.cpu_count(), **figures, "goal_records_per_s": GOAL,
        "ratio_to_goal": round(figures["verify_records_per_s"] / GOAL, 2),
        "offline_ratio_to_goal": round(figures["offline_records_per_s"] / GOAL, 2),
    }))


if __name__ == "__main__":
    main()
