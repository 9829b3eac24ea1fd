"""`sealtrail verify`: what customs runs on an evidence file, or on a record and its proof.

The ledger to check against is customs' choice and never the file's: the registry address comes
from `--contract`, `--config customs.toml` ([ledger] contract) or `$SEALTRAIL_CONTRACT`, and the
command refuses to run without one. A file names a contract too, but anyone can deploy a
registry, register a key of their own and anchor forged records there; trusting the file's
address would verify those. A file that names another contract (or chain) than the chosen one
fails as a whole, every record "wrong chain".

Where settings come from, first match wins: the flag, then `--config` (read only for its
[ledger] table: `rpc`, `contract`, `chain_id`, `confirmations`; the customs service's other
tables are none of this command's business), then `$SEALTRAIL_RPC`/`$SEALTRAIL_CONTRACT`, then
the default. An explicit `--config` beats the environment because it was given on this line.

The command reads the ledger through `reader.RegistryReader` (raw JSON-RPC, batched, cached),
not web3: module imports here stay light so `sealtrail verify --help` is instant, and verifying
never loads py_ecc, whose import raises the recursion limit to where deep JSON crashes the
process.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger_client.merkle import ProofError
from ledger_client.proof import Proof
from ledger_client.records import MAX_RECORD_BYTES, RecordError, parse
from sealtrail import boundedjson
from sealtrail.errors import UsageError

if TYPE_CHECKING:
    from ledger_client import evidence

DEFAULT_RPC = "http://127.0.0.1:8545"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_PROOF_BYTES = 64 * 1024
EXIT_CODES = """\
exit codes: 0 every record verified; a record failed, the most serious first:
  11 tampered, 16 wrong key, 17 broken link, 18 wrong gateway,
  19 mislabelled seq, 13 revoked gateway, 12 unknown gateway, 15 wrong chain,
  14 not anchored;
  1 the ledger refused, 2 bad input (a file, an option, no contract chosen),
  3 the ledger node cannot be reached."""


@dataclass(frozen=True, slots=True)
class LedgerChoice:
    """The ledger customs chose for this run, and where each part of the choice came from."""

    rpc: str
    contract: str
    chain_id: int | None
    confirmations: int
    contract_from: str


def read_config(path: Path) -> dict[str, Any]:
    """The [ledger] table of a customs.toml (rpc, contract, chain_id, confirmations), each
    value type-checked; other tables and other keys are left to the customs service."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES} bytes; not a "
                         "customs.toml")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"--config {path}: not a TOML file (not UTF-8 at byte "
                         f"{exc.start})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(f"--config {path}: not a TOML file ({exc})") from None
    table = doc.get("ledger")
    if not isinstance(table, dict):
        raise UsageError(f"--config {path}: no [ledger] table (rpc, contract, chain_id, "
                         "confirmations)")
    out: dict[str, Any] = {}
    for key, kind in (("rpc", str), ("contract", str), ("chain_id", int),
                      ("confirmations", int)):
        value = table.get(key)
        if value is None:
            continue
        if type(value) is not kind or (kind is int and value < 0):
            wanted = "a string" if kind is str else "an integer >= 0"
            raise UsageError(f"--config {path}: [ledger] {key} must be {wanted}, got "
                             f"{value!r}")
        out[key] = value
    return out


def choose_ledger(args: argparse.Namespace) -> LedgerChoice:
    """The ledger to verify against: flag, then --config, then environment, then default.
    UsageError when no registry contract was chosen: the file's own is never used."""
    from ledger_client.abi import is_address

    config = read_config(args.config) if args.config is not None else {}
    where = f"--config {args.config} [ledger]"
    if args.contract:
        contract, source = args.contract, "--contract"
    elif "contract" in config:
        contract, source = config["contract"], f"{where} contract"
    elif os.environ.get("SEALTRAIL_CONTRACT"):
        contract, source = os.environ["SEALTRAIL_CONTRACT"], "$SEALTRAIL_CONTRACT"
    else:
        missing = f" ({where} has no contract)" if args.config is not None else ""
        raise UsageError(f"no registry contract chosen{missing}: pass --contract ADDR, set "
                         "$SEALTRAIL_CONTRACT, or give --config customs.toml with [ledger] "
                         "contract. The contract an evidence file names is never trusted: "
                         "anyone can deploy a registry and anchor forged records on it")
    if not is_address(contract):
        raise UsageError(f"{source}: {contract!r} is not an EVM address (0x and 40 hex "
                         "digits; in mixed case, with a correct EIP-55 checksum)")
    rpc = args.rpc or config.get("rpc") or os.environ.get("SEALTRAIL_RPC") or DEFAULT_RPC
    chain_id = args.chain_id if args.chain_id is not None else config.get("chain_id")
    confirmations = (args.confirmations if args.confirmations is not None
                     else config.get("confirmations", 0))
    if confirmations < 0:
        raise UsageError("--confirmations must be >= 0")
    return LedgerChoice(rpc, contract, chain_id, confirmations, source)


def read_record_file(path: Path) -> bytes:
    """A record file holds the signed bytes exactly (a trailing newline is tolerated)."""
    try:
        with path.open("rb") as f:
            signed = f.read(MAX_RECORD_BYTES + 3).rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        parse(signed)
    except RecordError as exc:
        raise UsageError(f"{path}: not a record file: {exc}") from None
    return signed


def read_proof_file(path: Path) -> Proof:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROOF_BYTES + 1)
        return Proof.from_dict(boundedjson.loads(raw, max_bytes=MAX_PROOF_BYTES))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except (boundedjson.JsonBoundError, ProofError) as exc:
        raise UsageError(f"{path}: not a proof file: {exc}") from None


def single(signed: bytes, proof: Proof | None) -> evidence.Evidence:
    """A one-record evidence document, so every input takes the same verification path."""
    from ledger_client import evidence

    record = parse(signed)
    anchor = proof.anchor if proof else None
    return evidence.Evidence(
        record["gw"], [evidence.EvidenceRecord(record["seq"], signed, proof,
                                               proof.status if proof else "pending")],
        anchor.chain_id if anchor else None, anchor.contract if anchor else None)


def load_evidence(args: argparse.Namespace) -> evidence.Evidence:
    from ledger_client import evidence

    if args.evidence is not None:
        if args.record or args.proof:
            raise UsageError("give an evidence file, or --record with --proof, not both")
        ev = evidence.read(args.evidence)
        if not ev.records:
            raise UsageError(f"{args.evidence}: holds no records; nothing to verify")
        return ev
    if args.record is None or args.proof is None:
        raise UsageError("nothing to verify: give an evidence file, or --record FILE and "
                         "--proof FILE")
    return single(read_record_file(args.record), read_proof_file(args.proof))


def verify_evidence(ev: evidence.Evidence, args: argparse.Namespace,
                    choice: LedgerChoice | None = None) -> int:
    """Verify against the chosen ledger, print one line per record and a summary; return the
    exit code of the most serious failure (0 when every record verified)."""
    from ledger_client import verify_file
    from ledger_client.errors import ChainError
    from ledger_client.reader import RegistryReader
    from ledger_client.rpc import JsonRpc

    choice = choice or choose_ledger(args)
    args.rpc = choice.rpc  # for messages about the endpoint
    reader = RegistryReader(JsonRpc(choice.rpc, timeout=args.timeout), choice.contract)
    if choice.chain_id is not None and reader.chain_id != choice.chain_id:
        raise ChainError(f"{choice.rpc} is chain {reader.chain_id}, not the expected chain "
                         f"{choice.chain_id}")
    if ev.chain_id is None or ev.chain_id == reader.chain_id:
        reader.check_deployed()  # on another chain, every record fails as wrong chain instead
    results = verify_file.verify(ev, reader, min_confirmations=choice.confirmations)
    print(f"ledger: chain {reader.chain_id}, contract {reader.address} (from "
          f"{choice.contract_from}), at least {choice.confirmations} confirmations required")
    lines, code = verify_file.report(results, verbose=args.verbose)
    print("\n".join(lines))
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    choice = choose_ledger(args)  # refuse before reading anything
    return verify_evidence(load_evidence(args), args, choice)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "verify", help="verify records against the ledger (evidence file, or record + proof)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check each record with nothing but a JSON-RPC endpoint and the\n"
                    "registry contract customs chose:\n"
                    "  - its signature with the gateway key registered on chain, and that the\n"
                    "    gateway was not revoked for that batch;\n"
                    "  - the Merkle inclusion proof, and that the contract holds that root with\n"
                    "    enough confirmations;\n"
                    "  - in a file: each record's prev is the hash of the record before it,\n"
                    "    each record is the header gateway's, each seq label is the signed seq.\n"
                    "One line per record, named by its signed seq, then a summary.\n\n"
                    "The contract comes from --contract, --config customs.toml ([ledger]\n"
                    "contract) or $SEALTRAIL_CONTRACT, never from the file: without one the\n"
                    "command refuses to run. A file naming another contract or chain fails\n"
                    "as a whole (15 wrong chain).",
        epilog=EXIT_CODES)
    p.add_argument("evidence", type=Path, nargs="?", help="evidence file (`evidence export`)")
    p.add_argument("--record", type=Path, metavar="FILE", help="a record's signed bytes")
    p.add_argument("--proof", type=Path, metavar="FILE", help="its proof (DESIGN.md 'Proof')")
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="customs.toml: its [ledger] rpc, contract, chain_id and confirmations "
                        "are the defaults for the flags below (other tables are ignored)")
    p.add_argument("--rpc", metavar="URL",
                   help=f"JSON-RPC endpoint of the ledger node (default: --config, "
                        f"$SEALTRAIL_RPC, {DEFAULT_RPC}); any Besu-compatible node")
    p.add_argument("--contract", metavar="ADDR",
                   help="SealTrailAnchor registry customs uses (default: --config, "
                        "$SEALTRAIL_CONTRACT; required one way or another)")
    p.add_argument("--chain-id", type=int, metavar="N",
                   help="refuse to work unless the node is on this chain (exit 1)")
    p.add_argument("--confirmations", type=int, metavar="N",
                   help="blocks required on top of the anchoring block (default: --config, 0)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the node per request")
    p.add_argument("--poa", action=argparse.BooleanOptionalAction, default=None,
                   help="accepted for compatibility and ignored: verify reads no block "
                        "headers, so POA extra-data needs no handling")
    p.add_argument("-v", "--verbose", action="store_true", help="print every check")
    p.set_defaults(func=cmd_verify)
    return p
