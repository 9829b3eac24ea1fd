"""Root plus every inclusion proof for 100,000 leaves, and proof verification per record.

Prints one JSON line. Goal (DESIGN.md / issue 5): root and all proofs in under 1 s.
"""

from __future__ import annotations

import json
import time

from ledger_client.merkle import MerkleTree, leaf_hash, verify_inclusion

N = 100_000


def main() -> None:
    leaves = [b'{"seq":%d,"body":{"lat_e7":-349000000}}' % i for i in range(N)]
    start = time.perf_counter()
    tree = MerkleTree.from_leaves(leaves)
    built = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in range(N)]
    proved = time.perf_counter()
    sample = range(0, N, 97)
    for i in sample:
        verify_inclusion(leaf_hash(leaves[i]), i, N, proofs[i], tree.root)
    verified = time.perf_counter()
    print(json.dumps({
        "bench": "merkle", "leaves": N,
        "root_s": round(built - start, 3),
        "all_proofs_s": round(proved - built, 3),
        "root_plus_all_proofs_s": round(proved - start, 3),
        "goal_s": 1.0,
        "verify_us_per_proof": round((verified - proved) / len(sample) * 1e6, 1),
        "proof_bytes": 32 * len(proofs[N // 2]),
    }))


if __name__ == "__main__":
    main()
