"""End-to-end verification of one record, as customs runs it: trust nothing but the ledger.

Each failure has its own exception class so a command line tool can map it to its own message
and exit code. The gateway's key comes from the on-chain registry (not from the record, the
proof or the gateway), the inclusion proof must lead to a root, and that root must be the one
the contract holds for that gateway and batch, with enough blocks on top.

"Revoked at that time": the only clock a verifier can trust is the ledger's, and the contract
refuses anchors from a revoked gateway, so "when" is the batch a record was anchored in. A key is
usually revoked because it leaked, which is found out after the fact, so the revocation carries
the last batch customs still trusts (`GatewayInfo.last_trusted_batch`): records of later batches,
and records of a revoked gateway that were never anchored, fail as RevokedGateway.

Tampered or wrong key: a signature that does not verify means one of the two. When the record's
bytes are exactly a leaf of the root the contract holds, the gateway itself anchored them, so
they were signed with another key than the registered one (WrongKey); otherwise the bytes were
changed after they were anchored (TamperedRecord).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.merkle import ProofError
from ledger_client.proof import AnchorRef, Proof
from ledger_client.records import RecordError, check_schema, parse, verify_signature

if TYPE_CHECKING:  # web3 loads in a second; verifying a file offline does not need it
    from ledger_client.chain import AnchorRegistry, GatewayInfo


class VerificationError(Exception):
    """Base of the reasons a record is not verified; `code` is the CLI exit code."""

    code = 10
    label = "not verified"


class TamperedRecord(VerificationError):
    code = 11
    label = "tampered"


class UnknownGateway(VerificationError):
    code = 12
    label = "unknown gateway"


class RevokedGateway(VerificationError):
    code = 13
    label = "revoked gateway"


class NotAnchored(VerificationError):
    code = 14
    label = "not anchored"


class WrongChain(VerificationError):
    code = 15
    label = "wrong chain"


class WrongKey(VerificationError):
    code = 16
    label = "wrong key"


SEVERITY: tuple[type[VerificationError], ...] = (
    TamperedRecord, WrongKey, RevokedGateway, UnknownGateway, WrongChain, NotAnchored,
    VerificationError)
"""Most serious first: when records fail for different reasons, the CLI exits with the code
of the most serious one (a forged record outweighs a not-yet-anchored one)."""


def worst(errors: list[VerificationError]) -> VerificationError | None:
    """The most serious of several failures (SEVERITY order), None when there are none."""
    for cls in SEVERITY:
        for err in errors:
            if type(err) is cls:
                return err
    return errors[0] if errors else None


@dataclass(frozen=True, slots=True)
class Verified:
    gateway_id: str
    seq: int
    batch_seq: int
    block_number: int
    confirmations: int
    steps: tuple[str, ...]
    notes: tuple[str, ...] = ()


def check_chain(anchor: AnchorRef, registry: AnchorRegistry) -> None:
    """WrongChain unless the anchor reference names this endpoint's chain and contract."""
    if anchor.chain_id != registry.chain_id or anchor.contract.lower() != registry.address.lower():
        raise WrongChain(f"proof is for chain {anchor.chain_id} contract {anchor.contract}; "
                         f"this endpoint is chain {registry.chain_id} contract "
                         f"{registry.address}")


def verify_record(signed: bytes, proof: Proof | None, registry: AnchorRegistry, *,
                  min_confirmations: int = 0) -> Verified:
    """Verify one record and its proof against the ledger; raise the first failure.

    `proof` None is a record that was not in a closed batch yet: its signature and gateway
    are still checked, so the failure says more than "not anchored" where it can.
    """
    try:
        record = parse(signed)
        check_schema(record)
    except RecordError as exc:
        raise TamperedRecord(str(exc)) from exc
    gateway_id, seq = record["gw"], record["seq"]
    anchor = proof.anchor if proof is not None else None
    if anchor is not None:
        check_chain(anchor, registry)
    info = registry.gateway(gateway_id)
    if info is None:
        raise UnknownGateway(f"gateway {gateway_id!r} is not registered on contract "
                             f"{registry.address}")
    signature_error = _signature_error(record, info)
    if proof is None:
        if signature_error:
            raise TamperedRecord(f"{signature_error} (key registered on chain for {gateway_id})")
        if info.revoked:
            raise RevokedGateway(f"seq {seq}: {gateway_id} was revoked at block "
                                 f"{info.revoked_at}; this record was never anchored")
        raise NotAnchored(f"seq {seq}: not in a closed batch yet, so there is no proof")
    try:
        proof.check(signed)
    except ProofError as exc:
        extra = f"; and {signature_error}" if signature_error else ""
        raise TamperedRecord(f"seq {seq}: inclusion proof: {exc}{extra}") from exc
    if signature_error:
        if anchor is not None and registry.root(gateway_id, anchor.batch_seq) == bytes.fromhex(
                proof.root):
            raise WrongKey(f"seq {seq}: the record is in the root anchored for batch "
                           f"{anchor.batch_seq}, but its signature is not by the key "
                           f"registered for {gateway_id} ({info.pubkey.hex()[:16]}…)")
        raise TamperedRecord(f"{signature_error} (key registered on chain for {gateway_id}): "
                             "the record was changed after it was signed")
    steps = [f"signature: ok with the Ed25519 key registered for {gateway_id}",
             f"inclusion: ok, leaf {proof.leaf_index} of {proof.tree_size} "
             f"({len(proof.audit_path)} hashes)"]
    if info.revoked and (anchor is None or not info.trusts_batch(anchor.batch_seq)):
        where = "never anchored" if anchor is None else f"anchored in batch {anchor.batch_seq}"
        raise RevokedGateway(f"seq {seq}: {gateway_id} was revoked at block {info.revoked_at} "
                             f"and customs trusts its batches 1..{info.last_trusted_batch} "
                             f"only; this record was {where}")
    if anchor is None:
        raise NotAnchored(f"seq {seq}: the proof names no anchor transaction yet "
                          f"(status {proof.status})")
    return _check_anchor(gateway_id, seq, proof, anchor, info, registry, min_confirmations,
                         steps)


def _signature_error(record: dict[str, Any], info: GatewayInfo) -> str | None:
    try:
        verify_signature(record, Ed25519PublicKey.from_public_bytes(info.pubkey))
    except RecordError as exc:
        return str(exc)
    return None


def _check_anchor(gateway_id: str, seq: int, proof: Proof, anchor: AnchorRef,
                  info: GatewayInfo, registry: AnchorRegistry, min_confirmations: int,
                  steps: list[str]) -> Verified:
    on_chain = registry.root(gateway_id, anchor.batch_seq)
    if on_chain is None:
        raise NotAnchored(f"seq {seq}: batch {anchor.batch_seq} of {gateway_id} is not on chain")
    if on_chain.hex() != proof.root:
        raise TamperedRecord(f"seq {seq}: batch {anchor.batch_seq}: root on chain "
                             f"{on_chain.hex()} differs from the proof's {proof.root}")
    wanted = bytes.fromhex(anchor.block_hash.removeprefix("0x"))
    event = registry.anchor_event(gateway_id, anchor.batch_seq,
                                  block_number=anchor.block_number)
    if event is None:
        raise NotAnchored(f"seq {seq}: batch {anchor.batch_seq}: the contract holds the root "
                          "but this node returns no Anchored log for it (still indexing?)")
    if (event.first_seq, event.tree_size) != (proof.first_seq, proof.tree_size):
        raise TamperedRecord(f"seq {seq}: batch {anchor.batch_seq} on chain covers seq "
                             f"{event.first_seq} (+{event.tree_size}), the proof claims "
                             f"{proof.first_seq} (+{proof.tree_size})")
    notes = []
    if event.block_hash != wanted:
        notes.append(f"the anchor moved from block {anchor.block_number} to block "
                     f"{event.block_number} (reorg); the root is the same")
    depth = registry.w3.eth.block_number - event.block_number
    if depth < min_confirmations:
        raise NotAnchored(f"seq {seq}: batch {anchor.batch_seq} has {depth} confirmations, "
                          f"{min_confirmations} required")
    if info.revoked:
        notes.append(f"{gateway_id} was revoked at block {info.revoked_at}; batch "
                     f"{anchor.batch_seq} is within the batches customs still trusts "
                     f"(1..{info.last_trusted_batch})")
    steps.append(f"ledger: root of batch {anchor.batch_seq} matches the contract, block "
                 f"{event.block_number}, {depth} confirmations")
    return Verified(gateway_id, seq, anchor.batch_seq, event.block_number, depth, tuple(steps),
                    tuple(notes))
