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

The ledger is anything with the reads of `Ledger`: the web3 client (`chain.AnchorRegistry`) or
the cached, batched JSON-RPC reader (`reader.RegistryReader`) the command uses. What only a file
of several records can show (broken links, a header that names another gateway, a seq label
that is not the signed seq) is checked in `verify_file`; its failures are defined here so that
every verdict has one class, one label and one exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger_client.merkle import ProofError
from ledger_client.proof import AnchorRef, Proof
from ledger_client.records import RecordError, check_schema, parse, verify_signature
from sealtrail.errors import SealTrailError

if TYPE_CHECKING:
    from ledger_client.abi import AnchorEvent, GatewayInfo


class VerificationError(SealTrailError):
    """Base of the reasons a record is not verified; `exit_code` is the command's exit code."""

    exit_code = 10
    label = "not verified"

    @property
    def code(self) -> int:
        """The exit code, under the name callers used before the one error hierarchy."""
        return self.exit_code


class TamperedRecord(VerificationError):
    exit_code = 11
    label = "tampered"


class UnknownGateway(VerificationError):
    exit_code = 12
    label = "unknown gateway"


class RevokedGateway(VerificationError):
    exit_code = 13
    label = "revoked gateway"


class NotAnchored(VerificationError):
    exit_code = 14
    label = "not anchored"


class WrongChain(VerificationError):
    exit_code = 15
    label = "wrong chain"


class WrongKey(VerificationError):
    exit_code = 16
    label = "wrong key"


class BrokenLink(VerificationError):
    """The record's `prev` is not the hash of the record before it in the same file (or, for
    seq 1, not the genesis value): both are signed, so the gateway signed a fork, or one of the
    two is not the record the gateway anchored."""

    exit_code = 17
    label = "broken link"


class WrongGateway(VerificationError):
    """The record is signed as another gateway's than the file's header names."""

    exit_code = 18
    label = "wrong gateway"


class MislabelledSeq(VerificationError):
    """The file's (unsigned) seq label is not the seq signed in the record."""

    exit_code = 19
    label = "mislabelled seq"


SEVERITY: tuple[type[VerificationError], ...] = (
    TamperedRecord, WrongKey, BrokenLink, WrongGateway, MislabelledSeq, RevokedGateway,
    UnknownGateway, WrongChain, NotAnchored, VerificationError)
"""Most serious first: when records fail for different reasons, the CLI exits with the code
of the most serious one. Changed bytes and signatures by another key come first; then what
only the file as a whole shows: a forked chain, records of another gateway, labels that lie
(each means someone altered or assembled the file, or the gateway misbehaved); then the
ledger's verdicts on the gateway (revoked, unknown), a file for another chain, and last a
record that is merely not anchored yet."""


class Ledger(Protocol):
    """The reads verification makes; `chain.AnchorRegistry` and `reader.RegistryReader`."""

    address: str

    @property
    def chain_id(self) -> int: ...

    def gateway(self, gateway_id: str) -> GatewayInfo | None: ...

    def root(self, gateway_id: str, batch_seq: int) -> bytes | None: ...

    def anchor_event(self, gateway_id: str, batch_seq: int, *,
                     block_number: int | None = None) -> AnchorEvent | None: ...

    def head_block(self) -> int: ...


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


def check_chain(anchor: AnchorRef, registry: Ledger) -> None:
    """WrongChain unless the anchor reference names this endpoint's chain and contract."""
    if anchor.chain_id != registry.chain_id or anchor.contract.lower() != registry.address.lower():
        raise WrongChain(f"proof is for chain {anchor.chain_id} contract {anchor.contract}; "
                         f"this endpoint is chain {registry.chain_id} contract "
                         f"{registry.address}")


def parse_record(signed: bytes) -> dict[str, Any]:
    """The record in `signed`; TamperedRecord when it is not a well-formed canonical record."""
    try:
        record = parse(signed)
        check_schema(record)
    except RecordError as exc:
        raise TamperedRecord(str(exc)) from exc
    return record


def verify_record(signed: bytes, proof: Proof | None, registry: Ledger, *,
                  min_confirmations: int = 0) -> Verified:
    """Verify one record and its proof against the ledger; raise the first failure.

    `proof` None is a record that was not in a closed batch yet: its signature and gateway
    are still checked, so the failure says more than "not anchored" where it can.
    """
    return verify_parsed(parse_record(signed), signed, proof, registry,
                         min_confirmations=min_confirmations)


def verify_parsed(record: dict[str, Any], signed: bytes, proof: Proof | None,
                  registry: Ledger, *, min_confirmations: int = 0) -> Verified:
    """`verify_record` for a record `parse_record` already returned (a file is parsed once)."""
    gateway_id, seq = record["gw"], record["seq"]
    anchor = proof.anchor if proof is not None else None
    if anchor is not None:
        check_chain(anchor, registry)
    info = registry.gateway(gateway_id)
    if info is None:
        raise UnknownGateway(f"gateway {gateway_id!r} is not registered on contract "
                             f"{registry.address}")
    bad_signature = _signature_error(record, info, signed)
    if proof is None:
        if bad_signature:
            raise TamperedRecord(f"{bad_signature} (key registered on chain for {gateway_id})")
        if info.revoked:
            raise RevokedGateway(f"seq {seq}: {gateway_id} was revoked at block "
                                 f"{info.revoked_at}; this record was never anchored")
        raise NotAnchored(f"seq {seq}: not in a closed batch yet, so there is no proof")
    try:
        proof.check(signed, seq=seq)
    except ProofError as exc:
        extra = f"; and {bad_signature}" if bad_signature else ""
        raise TamperedRecord(f"seq {seq}: inclusion proof: {exc}{extra}") from exc
    if bad_signature:
        if anchor is not None and registry.root(gateway_id, anchor.batch_seq) == bytes.fromhex(
                proof.root):
            raise WrongKey(f"seq {seq}: the record is in the root anchored for batch "
                           f"{anchor.batch_seq}, but its signature is not by the key "
                           f"registered for {gateway_id} ({info.pubkey.hex()[:16]}…)")
        raise TamperedRecord(f"{bad_signature} (key registered on chain for {gateway_id}): "
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


def _signature_error(record: dict[str, Any], info: GatewayInfo,
                     signed: bytes | None = None) -> str | None:
    return signature_error(record, public_key(info.pubkey), signed)


def signature_error(record: dict[str, Any], key: Ed25519PublicKey,
                    signed: bytes | None = None) -> str | None:
    """Why `record`'s signature does not verify with `key`, or None when it does. `signed`:
    the bytes `parse` accepted for `record`, which saves encoding the record again."""
    unsigned = unsigned_bytes(signed, record["sig"]) if signed is not None else None
    if unsigned is None:
        try:
            verify_signature(record, key)
        except RecordError as exc:
            return str(exc)
        return None
    try:
        key.verify(bytes.fromhex(record["sig"]), unsigned)
    except InvalidSignature:
        return str(RecordError("signature does not verify with the gateway key",
                               seq=record["seq"], field="sig"))
    return None


def unsigned_bytes(signed: bytes, sig: str) -> bytes | None:
    """The bytes `sig` covers, cut out of canonical signed bytes: the same member removed.

    Only for bytes `records.parse` accepted (canonical: sorted keys, no spaces). Then the top
    level `"sig"` member is preceded by `"seq"`'s and followed by `"src"`, `"t_ms"` and `"v"`,
    whose values (a string, whose quotes are escaped, and two integers) cannot hold
    `,"sig":"`; so the last occurrence of that member is the top-level one, even if the body
    has a member of the same name and value. None if it is not there (then encode)."""
    member = b',"sig":"' + sig.encode("ascii") + b'"'
    at = signed.rfind(member)
    return None if at < 0 else signed[:at] + signed[at + len(member):]


@lru_cache(maxsize=256)
def public_key(raw: bytes) -> Ed25519PublicKey:
    """The key object of a registered 32-byte key, made once per gateway, not per record."""
    return Ed25519PublicKey.from_public_bytes(raw)


def _check_anchor(gateway_id: str, seq: int, proof: Proof, anchor: AnchorRef,
                  info: GatewayInfo, registry: Ledger, min_confirmations: int,
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
    depth = registry.head_block() - event.block_number
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
