"""Root plus every inclusion proof for 100,000 leaves, and proof verification per record.

Prints one JSON line. Goal (DESIGN.md / issue 5): root and all proofs in under 1 s.
`bench/anchor.py` includes these figures next to gas and verification costs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ledger_client.merkle import MerkleTree, leaf_hash, verify_inclusion

N = 100_000


def measure(n: int = N) -> dict[str, Any]:
    leaves = [b'{"seq":%d,"body":{"lat_e7":-349000000}}' % i for i in range(n)]
    start = time.perf_counter()
    tree = MerkleTree.from_leaves(leaves)
    built = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in range(n)]
    proved = time.perf_counter()
    sample = range(0, n, 97)
    for i in sample:
        verify_inclusion(leaf_hash(leaves[i]), i, n, proofs[i], tree.root)
    verified = time.perf_counter()
    return {
        "leaves": n,
        "root_s": round(built - start, 3),
        "all_proofs_s": round(proved - built, 3),
        "root_plus_all_proofs_s": round(proved - start, 3),
        "goal_s": 1.0,
        "verify_us_per_proof": round((verified - proved) / len(sample) * 1e6, 1),
        "proof_bytes": 32 * len(proofs[n // 2]),
    }


def main() -> None:
    print(json.dumps({"bench": "merkle", **measure()}))


if __name__ == "__main__":
    main()
