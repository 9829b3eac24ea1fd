"""Anchoring costs: Merkle root + every proof for 100,000 leaves, gas per anchor, and the time
customs spends verifying one record, with and without the ledger round trips.

    python bench/anchor.py            # eth-tester, plus anvil when it is on PATH

Prints one JSON line. Gas is measured over 20 real anchor transactions sent by the agent's own
sink (first batch included, since the first anchor writes the most); verification is
`verify_record` exactly as `sealtrail verify` runs it (registry lookups, root, Anchored log
found by block hash, head block), and its offline part (signature + inclusion) alone.
Budgets (DESIGN.md): root + all proofs < 1 s; one anchor tx < 60,000 gas.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from merkle import measure as merkle_figures  # bench/merkle.py, beside this script
from web3 import Web3

from edge_agent.journal import Draft, Journal
from edge_agent.sinks.anchor import AnchorSink, BatchPolicy
from ledger_client import chain, evidence
from ledger_client.keys import public_hex
from ledger_client.proof import AnchorRef
from ledger_client.records import parse, verify_signature

ANCHORS = 20
LEAVES_PER_BATCH = 64
VERIFY_SAMPLES = 200
GAS_BUDGET = 60_000


@contextmanager
def anvil() -> Iterator[str | None]:
    """A throwaway anvil on a free loopback port, or None when anvil is not installed."""
    exe = shutil.which("anvil")
    if exe is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--accounts", "1", "--silent"],
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if Web3(Web3.HTTPProvider(url)).eth.chain_id:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("anvil did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ledger_figures(rpc: str | None, workdir: Path) -> dict[str, Any]:
    w3 = chain.connect(rpc)
    customs, submitter = Account.create(), Account.create()
    if rpc is None:
        for acct in (customs, submitter):
            chain.fund(w3, w3.eth.accounts[0], acct.address, 10**20)
    else:
        for acct in (customs, submitter):
            w3.provider.make_request("anvil_setBalance", [acct.address, hex(10**20)])  # type: ignore[arg-type]
    key = Ed25519PrivateKey.generate()
    gw = "gw-bench"
    registry = chain.AnchorRegistry.deploy(w3, customs)
    registry.register_gateway(gw, bytes.fromhex(public_hex(key)), submitter.address, customs)
    journal = Journal(workdir / f"bench-{rpc is None}.db", gateway_id=gw, key=key,
                      synchronous="NORMAL")
    journal.append([Draft(1_790_000_000_000 + i * 100, "gps", "gps0",
                          {"lat_e7": -349_000_000 + i, "lon_e7": -562_000_000, "hdop_x10": 9})
                    for i in range(ANCHORS * LEAVES_PER_BATCH)])
    sink = AnchorSink(journal, registry, submitter, BatchPolicy(max_leaves=LEAVES_PER_BATCH))
    sink.close_due_batches(journal.head()[0])
    asyncio.run(sink.flush(journal.head()[0]))
    batches = journal.batches()
    gas = [int(w3.eth.get_transaction_receipt(b.tx_hash)["gasUsed"]) for b in batches
           if b.tx_hash is not None]

    infos = [evidence.BatchInfo(b.batch_seq, b.first_seq, b.tree_size, b.root,
                                AnchorRef(registry.chain_id, registry.address, b.batch_seq,
                                          "0x" + (b.tx_hash or b"").hex(), b.block_number or 0,
                                          "0x" + (b.block_hash or b"").hex(), b.log_index or 0),
                                True) for b in batches]
    step = max(1, journal.head()[0] // VERIFY_SAMPLES)
    chosen = {s.seq: s.signed for s in journal.read_after(0, journal.head()[0])
              if s.seq % step == 0}
    ev = evidence.build(gw, chosen.items(), infos,
                        lambda a, b: [s.signed for s in journal.range(a, b)])
    journal.close()
    start = time.perf_counter()
    results = evidence.verify(ev, registry)
    online = (time.perf_counter() - start) / len(results)
    assert all(r.ok for r in results), [str(r.error) for r in results if r.error]

    public = key.public_key()
    start = time.perf_counter()
    for rec in ev.records:
        verify_signature(parse(rec.signed), public)
        assert rec.proof is not None
        rec.proof.check(rec.signed)
    offline = (time.perf_counter() - start) / len(ev.records)
    return {"gas_min": min(gas), "gas_max": max(gas), "anchors": len(gas),
            "gas_median": int(median(gas)),
            "verify_record_ms": round(online * 1e3, 2),
            "verify_offline_us": round(offline * 1e6, 1), "records_verified": len(results)}


def main() -> None:
    out: dict[str, Any] = {"bench": "anchor", "merkle": merkle_figures()}
    with tempfile.TemporaryDirectory(prefix="sealtrail-bench-") as tmp:
        out["eth-tester"] = ledger_figures(None, Path(tmp))
        with anvil() as url:
            if url is not None:
                out["anvil"] = ledger_figures(url, Path(tmp))
    gas = [v for k in ("eth-tester", "anvil") if k in out for v in (out[k]["gas_min"],
                                                                    out[k]["gas_max"])]
    out["gas_budget"] = GAS_BUDGET
    out["gas_headroom"] = GAS_BUDGET - max(gas)
    out["merkle_within_goal"] = out["merkle"]["root_plus_all_proofs_s"] < out["merkle"]["goal_s"]
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
