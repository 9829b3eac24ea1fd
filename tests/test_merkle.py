"""RFC 9162 roots and audit paths, checked against public vectors and an independent library."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable

import pymerkle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_client.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    root,
    verify_inclusion,
)

# certificate-transparency / transparency-dev testonly vectors (RFC 6962 = RFC 9162 hashing).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {  # (leaf index, tree size) -> audit path
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_certificate_transparency_vectors(size: int) -> None:
    assert root(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size"), sorted(CT_PATHS))
def test_audit_paths_match_certificate_transparency_vectors(index: int, size: int) -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES[:size])
    assert [h.hex() for h in tree.inclusion_proof(index)] == CT_PATHS[(index, size)]


def _reference(leaves: list[bytes]) -> pymerkle.InmemoryTree:
    ref = pymerkle.InmemoryTree(algorithm="sha256")  # RFC 9162 prefixes ("security") on
    for data in leaves:
        ref.append_entry(data)
    return ref


REFERENCE_SIZES = 1000
EVERY_LEAF_UP_TO = 100
SAMPLED_PER_SIZE = 6


def test_roots_and_proofs_for_sizes_1_to_1000_match_pymerkle() -> None:
    """Every tree size 1..1000: the root, and the audit path of every leaf (sizes up to 100)
    or of the first, middle, last and three random leaves (beyond), equal pymerkle's.

    One reference tree serves all sizes: pymerkle proves inclusion against any earlier size
    of its log, which is itself an independent check of the RFC 9162 split rule.
    """
    leaves = [f"record {i}".encode() for i in range(REFERENCE_SIZES)]
    ref = _reference(leaves)
    rng = random.Random(9162)
    checked = 0
    for size in range(1, REFERENCE_SIZES + 1):
        tree = MerkleTree.from_leaves(leaves[:size])
        assert tree.root == ref.get_root(size), size
        if size <= EVERY_LEAF_UP_TO:
            indexes: Iterable[int] = range(size)
        else:
            indexes = sorted({0, size // 2, size - 1,
                              *rng.sample(range(size), SAMPLED_PER_SIZE - 3)})
        for index in indexes:
            ours = tree.inclusion_proof(index)
            theirs = ref.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
            # pymerkle's path starts with the leaf itself; the rest is the RFC audit path.
            assert [h.hex() for h in ours] == theirs.serialize()["path"][1:], (size, index)
            verify_inclusion(leaf_hash(leaves[index]), index, size, ours, tree.root)
            assert len(ours) <= (size - 1).bit_length()
            checked += 1
        if size % 97 == 0:  # their verifier accepts their proofs against our root, too
            pymerkle.verify_inclusion(ref.get_leaf(size), tree.root, theirs)
    assert checked > 5050 + 900 * 3


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_a_proof_fails_for_any_other_leaf_index_or_root(leaves: list[bytes], data) -> None:
    tree = MerkleTree.from_leaves(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = tree.inclusion_proof(index)
    good = leaf_hash(leaves[index])
    verify_inclusion(good, index, len(leaves), path, tree.root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[index] + b"x"), index, len(leaves), path, tree.root)
    with pytest.raises(ProofError):
        verify_inclusion(good, index, len(leaves), path, hashlib.sha256(tree.root).digest())
    other = data.draw(st.integers(0, len(leaves) - 1))
    if other != index and leaves[other] != leaves[index]:
        with pytest.raises(ProofError):
            verify_inclusion(good, other, len(leaves), path, tree.root)


def test_malformed_proofs_are_refused_not_crashed() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    path = tree.inclusion_proof(3)
    leaf = leaf_hash(CT_LEAVES[3])
    for bad_index, bad_size, bad_path in [
        (8, 8, path),            # index outside the tree
        (3, 8, path[:-1]),       # too short
        (3, 8, [*path, path[0]]),  # too long
        (3, 8, [path[0][:31], *path[1:]]),  # not a 32-byte hash
    ]:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, bad_index, bad_size, bad_path, tree.root)
