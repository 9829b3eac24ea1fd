"""End-to-end verification of one record, as customs runs it: trust nothing but the ledger.

Each check has its own exception class so a command line tool can map it to its own message and
exit code: the gateway's key comes from the on-chain registry (not from the record or the
gateway), the signature is checked with it, the inclusion proof must lead to a root, and that
root must be the one the contract holds for that gateway and batch, in the block the proof names.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.chain import AnchorRegistry
from ledger_client.merkle import ProofError
from ledger_client.proof import Proof
from ledger_client.records import RecordError, check_schema, parse, verify_signature


class VerificationError(Exception):
    """Base of the reasons a record is not verified; `code` is the CLI exit code."""

    code = 10


class TamperedRecord(VerificationError):
    code = 11


class UnknownGateway(VerificationError):
    code = 12


class RevokedGateway(VerificationError):
    code = 13


class NotAnchored(VerificationError):
    code = 14


class WrongChain(VerificationError):
    code = 15


@dataclass(frozen=True, slots=True)
class Verified:
    gateway_id: str
    seq: int
    batch_seq: int
    block_number: int
    confirmations: int
    steps: tuple[str, ...]


def verify_record(signed: bytes, proof: Proof, registry: AnchorRegistry, *,
                  min_confirmations: int = 0) -> Verified:
    steps = []
    try:
        record = parse(signed)
        check_schema(record)
    except RecordError as exc:
        raise TamperedRecord(str(exc)) from exc
    gateway_id = record["gw"]

    info = registry.gateway(gateway_id)
    if info is None:
        raise UnknownGateway(f"gateway {gateway_id!r} is not registered on contract "
                             f"{registry.address}")
    try:
        verify_signature(record, Ed25519PublicKey.from_public_bytes(info.pubkey))
    except RecordError as exc:
        raise TamperedRecord(f"{exc} (key registered on chain for {gateway_id})") from exc
    steps.append(f"signature: ok with the Ed25519 key registered for {gateway_id}")

    try:
        proof.check(signed)
    except ProofError as exc:
        raise TamperedRecord(f"inclusion proof: {exc}") from exc
    steps.append(f"inclusion: ok, leaf {proof.leaf_index} of {proof.tree_size} "
                 f"({len(proof.audit_path)} hashes)")

    anchor = proof.anchor
    if anchor is None:
        raise NotAnchored(f"seq {record['seq']}: the proof names no anchor transaction yet")
    chain_id = registry.w3.eth.chain_id
    if anchor.chain_id != chain_id or anchor.contract.lower() != registry.address.lower():
        raise WrongChain(f"proof is for chain {anchor.chain_id} contract {anchor.contract}; "
                         f"this endpoint is chain {chain_id} contract {registry.address}")
    on_chain = registry.root(gateway_id, anchor.batch_seq)
    if on_chain is None:
        raise NotAnchored(f"batch {anchor.batch_seq} of {gateway_id} is not on chain")
    if on_chain.hex() != proof.root:
        raise TamperedRecord(f"batch {anchor.batch_seq}: root on chain {on_chain.hex()} differs "
                             f"from the proof's {proof.root}")
    event = registry.anchor_event(gateway_id, anchor.batch_seq)
    if event is None or event.block_hash.hex() != anchor.block_hash.removeprefix("0x"):
        raise NotAnchored(f"batch {anchor.batch_seq}: the anchoring block named in the proof is "
                          "not on this chain (reorganised away?)")
    if info.revoked_at and event.block_number >= info.revoked_at:
        raise RevokedGateway(f"{gateway_id} was revoked at block {info.revoked_at}, before this "
                             f"batch was anchored in block {event.block_number}")
    depth = registry.w3.eth.block_number - event.block_number
    if depth < min_confirmations:
        raise NotAnchored(f"batch {anchor.batch_seq} has {depth} confirmations, "
                          f"{min_confirmations} required")
    steps.append(f"ledger: root of batch {anchor.batch_seq} matches the contract, block "
                 f"{event.block_number}, {depth} confirmations")
    return Verified(gateway_id, record["seq"], anchor.batch_seq, event.block_number, depth,
                    tuple(steps))
