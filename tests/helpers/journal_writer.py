"""Append readings to a journal forever, printing each committed seq (for the SIGKILL test).

A line `committed N` is printed only after the transaction holding seq N has returned from
COMMIT, so the parent knows exactly which records the journal promised to keep.
"""

from __future__ import annotations

import random
import sys

from edge_agent.journal import Draft, Journal
from ledger_client.keys import load_key


def main() -> None:
    path, key_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    journal = Journal(path, gateway_id="gw-kill", key=load_key(key_path))
    t_ms = 1_700_000_000_000 + seed * 1_000_000
    print("ready", flush=True)
    while True:
        drafts = []
        for _ in range(rng.randint(1, 20)):
            t_ms += 100
            body = {"lat_e7": rng.randint(-900_000_000, 900_000_000),
                    "lon_e7": rng.randint(-1_800_000_000, 1_800_000_000)}
            drafts.append(Draft(t_ms, "gps", "gps0", body))
        stored = journal.append(drafts)
        print(f"committed {stored[-1].seq}", flush=True)


if __name__ == "__main__":
    main()
