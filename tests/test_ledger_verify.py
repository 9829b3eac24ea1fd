"""verify_record's verdicts on the in-process chain, for cases a well-behaved agent never
produces: a gateway that anchors a batch whose leaves are not the seqs it claims, a proof
pointing at another contract, an unregistered gateway, a record with no proof at all.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from ledger_client import chain
from ledger_client.keys import public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.records import GENESIS_PREV, record_hash, sign_record
from ledger_client.verify import (
    NotAnchored,
    TamperedRecord,
    UnknownGateway,
    WrongChain,
    verify_record,
)

GW = "gw-verify"


def _records(key: Ed25519PrivateKey, seqs: range, gw: str = GW) -> list[bytes]:
    out, prev = [], GENESIS_PREV
    for seq in seqs:
        _, signed = sign_record({"v": 1, "gw": gw, "seq": seq, "t_ms": 1_790_000_000_000 + seq,
                                 "kind": "gps", "src": "gps0", "body": {"lat_e7": seq},
                                 "prev": prev}, key)
        out.append(signed)
        prev = record_hash(signed).hex()
    return out


@pytest.fixture
def ledger() -> tuple[chain.AnchorRegistry, Ed25519PrivateKey, Account]:
    w3 = chain.connect(None)
    customs = w3.eth.accounts[0]
    registry = chain.AnchorRegistry.deploy(w3, customs)
    key, submitter = Ed25519PrivateKey.generate(), Account.create()
    chain.fund(w3, customs, submitter.address, 10**18)
    registry.register_gateway(GW, bytes.fromhex(public_hex(key)), submitter.address, customs)
    return registry, key, submitter


def _anchor(registry: chain.AnchorRegistry, submitter: Account, leaves: list[bytes],
            first_seq: int) -> AnchorRef:
    nonce = registry.w3.eth.get_transaction_count(submitter.address)
    info = registry.gateway(GW)
    assert info is not None
    raw, tx_hash = registry.build_anchor_tx(submitter, info.last_batch + 1,
                                            MerkleTree.from_leaves(leaves).root, first_seq,
                                            len(leaves), nonce=nonce)
    registry.send_raw(raw)
    event = registry.receipt_event(tx_hash)
    assert event is not None
    return AnchorRef(registry.chain_id, registry.address, event.batch_seq, "0x" + tx_hash.hex(),
                     event.block_number, "0x" + event.block_hash.hex(), event.log_index)


def test_a_batch_whose_leaves_are_not_the_seqs_it_claims_is_tampered(ledger) -> None:
    registry, key, submitter = ledger
    honest = _records(key, range(1, 5))
    ref = _anchor(registry, submitter, honest, 1)
    verified = verify_record(honest[2], make_proof(honest, 1, 3, ref, "anchored"), registry)
    assert (verified.seq, verified.batch_seq) == (3, 1)
    # Batch 2 claims seqs 5..6 on chain but its leaves are records 9 and 10.
    odd = _records(key, range(1, 11))[8:10]
    ref = _anchor(registry, submitter, odd, 5)
    proof = make_proof(odd, 9, 9, ref, "anchored")  # self-consistent: seq 9 is leaf 0
    proof.check(odd[0])
    with pytest.raises(TamperedRecord, match="on chain covers seq 5"):
        verify_record(odd[0], proof, registry)


def test_chain_contract_gateway_and_missing_proof_verdicts(ledger) -> None:
    registry, key, submitter = ledger
    records = _records(key, range(1, 3))
    ref = _anchor(registry, submitter, records, 1)
    proof = make_proof(records, 1, 1, ref, "anchored")
    elsewhere = make_proof(records, 1, 1, AnchorRef(
        ref.chain_id, "0x" + "11" * 20, ref.batch_seq, ref.tx_hash, ref.block_number,
        ref.block_hash, ref.log_index), "anchored")
    with pytest.raises(WrongChain, match="contract 0x1111"):
        verify_record(records[0], elsewhere, registry)
    stranger = _records(key, range(1, 2), gw="gw-nobody")[0]
    with pytest.raises(UnknownGateway):
        verify_record(stranger, proof, registry)
    with pytest.raises(NotAnchored, match="no proof"):
        verify_record(records[0], None, registry)
    with pytest.raises(TamperedRecord, match="signature"):
        verify_record(records[0].replace(b'"lat_e7":1', b'"lat_e7":7'), None, registry)
    assert verify_record(records[0], proof, registry).confirmations == 0
    with pytest.raises(NotAnchored, match="0 confirmations, 2 required"):
        verify_record(records[0], proof, registry, min_confirmations=2)
    registry.w3.provider.ethereum_tester.mine_blocks(2)  # type: ignore[attr-defined]
    assert verify_record(records[0], proof, registry, min_confirmations=2).confirmations == 2
