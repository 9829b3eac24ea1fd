"""Ingest rate (NMEA decode + sign + journal commit) against the raw Ed25519 signing rate.

Both are measured in the same run on the same machine, so their ratio is the figure to watch
(DESIGN.md budget: ingest at least half the raw signing rate). Prints one JSON line.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal import Draft, Journal
from edge_agent.sources.nmea import NmeaDecoder
from firmware_sim.nmea import SimFix, epoch_bytes

N = 20_000
GROUP = 256  # what the agent commits at once under load (Agent.max_group is 512)


def raw_sign_rate(key: Ed25519PrivateKey, payloads: list[bytes]) -> float:
    start = time.perf_counter()
    for payload in payloads:
        key.sign(payload)
    return len(payloads) / (time.perf_counter() - start)


def ingest_rate(key: Ed25519PrivateKey, lines: list[bytes], synchronous: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "bench.db", gateway_id="gw-bench", key=key,
                          synchronous=synchronous)
        decoder = NmeaDecoder()
        group: list[Draft] = []
        start = time.perf_counter()
        for line in lines:
            fix = decoder.feed(line)
            if fix is None:
                continue
            group.append(Draft(fix.t_ms, "gps", "gps0", fix.body()))
            if len(group) == GROUP:
                journal.append(group)
                group = []
        if group:
            journal.append(group)
        elapsed = time.perf_counter() - start
        count = journal.head()[0]
        journal.close()
    return count / elapsed


def main() -> None:
    key = Ed25519PrivateKey.generate()
    t0 = 1_790_000_000_000
    lines = []
    for i in range(N):
        fix = SimFix(t_ms=t0 + i * 100, lat=-34.9 + i * 1e-6, lon=-56.2, speed_mps=12.0,
                     course_deg=45.0)
        lines.extend(epoch_bytes(fix).splitlines())
    payloads = [b'{"body":{"lat_e7":-349000000,"lon_e7":-562000000},"seq":%d}' % i
                for i in range(N)]
    sign = raw_sign_rate(key, payloads)
    full = ingest_rate(key, lines, "FULL")
    normal = ingest_rate(key, lines, "NORMAL")
    print(json.dumps({
        "bench": "ingest", "readings": N, "group_commit": GROUP,
        "raw_ed25519_signs_per_s": round(sign),
        "ingest_per_s_sync_full": round(full),
        "ingest_per_s_sync_normal": round(normal),
        "ratio_full_to_raw_sign": round(full / sign, 3),
        "ratio_normal_to_raw_sign": round(normal / sign, 3),
        "goal_ratio": 0.5,
    }))


if __name__ == "__main__":
    main()
