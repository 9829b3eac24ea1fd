"""The customs side of the `sealtrail` command: administer the anchor registry, verify records.

Lives in ledger_client, not edge_agent, because customs runs it without any gateway code: only a
JSON-RPC endpoint, the registry address and, for administration, an EVM key file. The gateway
CLI (`edge_agent.ledger_cli`) mounts these commands and adds the ones that read a journal.
`sealtrail verify` itself is `verify_cli`.

Errors are raised, not printed: every failure is a `sealtrail.errors.SealTrailError` with its
exit code, and the `sealtrail` command prints it as one line. Exit codes: 0 ok; 1 the ledger
refused (revert, key, timeout); 2 bad input; 3 ledger unreachable; 10-19 a record did not verify
(`ledger_client.verify`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger_client import verify_cli
from sealtrail.errors import SealTrailError, Unreachable, UsageError

if TYPE_CHECKING:  # web3 and the EVM code load in a second; `--help` must not wait for them
    from web3 import Web3

    from ledger_client import chain

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
DEFAULT_RPC = verify_cli.DEFAULT_RPC
Handler = Callable[[argparse.Namespace], int]
SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


# --- options shared by the commands ---------------------------------------------------------

def add_rpc_options(parser: argparse.ArgumentParser, *, contract: bool = True,
                    write: bool = False, contract_required: bool = True) -> None:
    """--rpc/--chain-id/--poa (every command), --contract, and for transactions --key,
    --gas-price-wei and --confirmations."""
    env_rpc = os.environ.get("SEALTRAIL_RPC", DEFAULT_RPC)
    parser.add_argument("--rpc", metavar="URL", default=env_rpc,
                        help=f"JSON-RPC endpoint of the ledger node (default $SEALTRAIL_RPC or "
                             f"{DEFAULT_RPC}); any Besu-compatible node")
    parser.add_argument("--chain-id", type=int, metavar="N",
                        help="refuse to work unless the node is on this chain")
    parser.add_argument("--poa", action=argparse.BooleanOptionalAction, default=None,
                        help="force the POA extra-data middleware on/off (default: detected "
                             "from the blocks; Besu QBFT/Clique need it)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the node per request and per transaction")
    if contract:
        env_contract = os.environ.get("SEALTRAIL_CONTRACT")
        parser.add_argument("--contract", metavar="ADDR", default=env_contract,
                            required=contract_required and env_contract is None,
                            help="SealTrailAnchor registry address (default $SEALTRAIL_CONTRACT)")
    if write:
        parser.add_argument("--key", type=Path, required=True, metavar="FILE",
                            help="file holding the hex private key of the sending EVM account "
                                 "(mode 0600; never pass a key on the command line)")
        parser.add_argument("--gas-price-wei", type=int, metavar="WEI",
                            help="fixed legacy gas price; 0 on zero-gas Besu networks "
                                 "(default: ask the node)")
        parser.add_argument("--confirmations", type=int, default=0, metavar="N",
                            help="wait for N blocks on top of the transaction (default 0: QBFT "
                                 "finality is immediate)")


def connect(args: argparse.Namespace) -> Web3:
    from ledger_client import chain

    return chain.connect(args.rpc, poa=args.poa, timeout=args.timeout, chain_id=args.chain_id)


def registry(args: argparse.Namespace, w3: Web3 | None = None,
             address: str | None = None) -> chain.AnchorRegistry:
    from web3 import Web3

    from ledger_client import chain

    address = address or args.contract
    if not address or not Web3.is_address(address):
        raise UsageError(f"--contract: {address!r} is not an EVM address")
    reg = chain.AnchorRegistry(w3 or connect(args), address)
    reg.check_deployed()
    return reg


def _confirmed(w3: Web3, receipt: Any, args: argparse.Namespace) -> Any:
    from ledger_client import tx

    if args.confirmations < 0:
        raise UsageError("--confirmations must be >= 0")
    return tx.wait_confirmations(w3, receipt, args.confirmations, timeout=args.timeout)


def guarded(handler: Handler) -> Handler:
    """Give the few foreign exceptions a ledger command meets their place in the project's
    hierarchy, and let every SealTrailError through to the `sealtrail` command's handler
    (one line, its exit code): web3's connection errors (requests', which are OSErrors) are
    an unreachable ledger, its timeout a ledger failure, a file that cannot be opened or
    written bad input. Anything else stays a bug (exit 70)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except SealTrailError:
            raise
        except Exception as exc:
            raise translated(exc, getattr(args, "rpc", None)) from exc

    return run


def translated(exc: Exception, rpc: str | None) -> Exception:
    """`exc` as a SealTrailError where it is one of the foreign errors above; else `exc`. The
    web3 and requests classes are looked up only if those modules are already loaded (if they
    are not, `exc` cannot be one of theirs)."""
    from ledger_client.errors import ChainError

    requests_exc = sys.modules.get("requests.exceptions")
    web3_exc = sys.modules.get("web3.exceptions")
    if requests_exc is not None and isinstance(exc, requests_exc.RequestException):
        return Unreachable(f"cannot reach the ledger at {rpc}: {exc}")
    if web3_exc is not None and isinstance(exc, web3_exc.TimeExhausted):
        return ChainError(f"ledger: {exc}")
    if isinstance(exc, OSError) and exc.filename is not None:
        return UsageError(f"{exc.filename}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return Unreachable(f"cannot reach the ledger at {rpc}: {exc}")
    return exc


# --- ledger administration ------------------------------------------------------------------

def cmd_account(args: argparse.Namespace) -> int:
    from ledger_client.evmkey import create_account, load_account

    account = create_account(args.key) if args.create else load_account(args.key)
    if args.create:
        print(f"wrote {args.key} (mode 0600)")
    print(account.address)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from ledger_client import chain
    from ledger_client.evmkey import load_account

    account = load_account(args.key)
    w3 = connect(args)
    reg = chain.AnchorRegistry.deploy(w3, account, gas_price=args.gas_price_wei)
    assert reg.deploy_receipt is not None
    _confirmed(w3, reg.deploy_receipt, args)
    info = {"contract": reg.address, "chain_id": reg.chain_id, "block": reg.from_block,
            "customs": account.address,
            "tx_hash": "0x" + bytes(reg.deploy_receipt["transactionHash"]).hex()}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"contract {reg.address} deployed on chain {reg.chain_id} in block "
              f"{reg.from_block}; customs (registry admin) is {account.address}")
        print(f"next: export SEALTRAIL_CONTRACT={reg.address}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from web3 import Web3

    from ledger_client.evmkey import load_account

    try:
        pubkey = bytes.fromhex(args.pubkey.removeprefix("0x"))
    except ValueError:
        raise UsageError("--pubkey must be hex (`sealtrail keys show` on the gateway)") from None
    if len(pubkey) != 32:
        raise UsageError(f"--pubkey must be 32 bytes (64 hex digits), got {len(pubkey)} bytes")
    if not Web3.is_address(args.submitter):
        raise UsageError(f"--submitter: {args.submitter!r} is not an EVM address")
    account = load_account(args.key)
    reg = registry(args)
    receipt = reg.register_gateway(args.gateway_id, pubkey, args.submitter, account,
                                   gas_price=args.gas_price_wei)
    receipt = _confirmed(reg.w3, receipt, args)
    print(f"gateway {args.gateway_id} registered in block {receipt['blockNumber']}: key "
          f"{pubkey.hex()}, submitter {Web3.to_checksum_address(args.submitter)}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from ledger_client import chain
    from ledger_client.evmkey import load_account

    account = load_account(args.key)
    reg = registry(args)
    trusted = chain.TRUST_ALL if args.last_trusted_batch == "all" else _int_arg(
        args.last_trusted_batch, "--last-trusted-batch")
    receipt = reg.revoke_gateway(args.gateway_id, account, last_trusted_batch=trusted,
                                 gas_price=args.gas_price_wei)
    receipt = _confirmed(reg.w3, receipt, args)
    info = reg.gateway(args.gateway_id)
    assert info is not None
    print(f"gateway {args.gateway_id} revoked in block {receipt['blockNumber']}; records of "
          f"batches 1..{info.last_trusted_batch} stay verifiable, later ones do not")
    return 0


def _int_arg(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name}: expected a number or 'all', got {text!r}") from None
    if value < 0:
        raise UsageError(f"{name} must be >= 0")
    return value


def chain_status(reg: chain.AnchorRegistry, gateway_id: str) -> dict[str, Any]:
    """What the ledger knows about one gateway, for `ledger status`."""
    info = reg.gateway(gateway_id)
    out: dict[str, Any] = {"gateway_id": gateway_id, "chain_id": reg.chain_id,
                           "contract": reg.address, "head_block": reg.w3.eth.block_number,
                           "registered": info is not None}
    if info is None:
        return out
    out.update(pubkey=info.pubkey.hex(), submitter=info.submitter,
               registered_at_block=info.registered_at, revoked=info.revoked,
               revoked_at_block=info.revoked_at or None,
               last_trusted_batch=info.last_trusted_batch if info.revoked else None,
               last_batch=info.last_batch, anchored_through_seq=info.next_seq - 1)
    if info.last_batch:
        event = reg.anchor_event(gateway_id, info.last_batch)
        if event is not None:
            out["last_anchor"] = {"batch_seq": event.batch_seq, "block": event.block_number,
                                  "confirmations": out["head_block"] - event.block_number,
                                  "tx_hash": "0x" + event.tx_hash.hex(),
                                  "first_seq": event.first_seq, "tree_size": event.tree_size}
    return out


def print_chain_status(st: dict[str, Any]) -> None:
    print(f"ledger: chain {st['chain_id']}, contract {st['contract']}, head block "
          f"{st['head_block']}")
    if not st["registered"]:
        print(f"gateway {st['gateway_id']}: NOT REGISTERED on this contract")
        return
    state = (f"REVOKED at block {st['revoked_at_block']} (batches 1..{st['last_trusted_batch']}"
             " still trusted)" if st["revoked"] else "active")
    print(f"gateway {st['gateway_id']}: {state}; registered at block "
          f"{st['registered_at_block']}")
    print(f"  public key {st['pubkey']}")
    print(f"  submitter  {st['submitter']}")
    last = st.get("last_anchor")
    if last is None:
        print("  no batch anchored yet")
    else:
        print(f"  last batch on chain: {last['batch_seq']} (seq {last['first_seq']}.."
              f"{last['first_seq'] + last['tree_size'] - 1}) in block {last['block']}, "
              f"{last['confirmations']} confirmations, tx {last['tx_hash']}")


def cmd_status(args: argparse.Namespace) -> int:
    if not args.gateway_id:
        raise UsageError("--gateway-id is required (or --journal, to take it from there)")
    st = chain_status(registry(args), args.gateway_id)
    if args.json:
        print(json.dumps(st))
    else:
        print_chain_status(st)
    return 0


# --- parsers -----------------------------------------------------------------------------------

def _customs_action(lsub: SubParsers, name: str, handler: Handler, summary: str,
                    description: str) -> argparse.ArgumentParser:
    """A registry administration command: customs key, ledger options, --gateway-id."""
    p: argparse.ArgumentParser = lsub.add_parser(name, help=summary,
                                                 description=f"Customs only. {description}")
    add_rpc_options(p, write=True)
    p.add_argument("--gateway-id", required=True, metavar="ID", help="gateway id (records' gw)")
    p.set_defaults(func=guarded(handler))
    return p


def add_commands(sub: SubParsers) -> dict[str, argparse.ArgumentParser]:
    """Register `ledger ...` and `verify`; returns the parsers the gateway CLI extends."""
    ledger = sub.add_parser(
        "ledger", help="the anchor registry on the EVM ledger (customs administration)",
        description="Deploy and administer the SealTrailAnchor registry, and look at what it "
                    "holds for a gateway. Works with any Besu-compatible JSON-RPC node.")
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    parsers: dict[str, argparse.ArgumentParser] = {}

    p = lsub.add_parser("account", help="make or show an EVM account key file",
                        description="Print the address of the EVM key in --key; with --create, "
                                    "first make a new key there (mode 0600, never overwrites). "
                                    "Gateways use it as their submitter, customs as admin.")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="key file")
    p.add_argument("--create", action="store_true", help="create a new key at --key")
    p.set_defaults(func=guarded(cmd_account))

    p = lsub.add_parser("deploy", help="deploy a new anchor registry (you become its admin)",
                        description="Deploy SealTrailAnchor from the committed, checked build. "
                                    "The --key account becomes `customs`, the only one that "
                                    "can register and revoke gateways.")
    add_rpc_options(p, contract=False, write=True)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=guarded(cmd_deploy))

    p = _customs_action(
        lsub, "register-gateway", cmd_register, "register a gateway's key and submitter",
        "Bind a gateway id to its Ed25519 public key (`sealtrail keys show` on the gateway) and "
        "to the EVM address that anchors for it (`sealtrail ledger account`). Once per "
        "gateway; a submitter serves one gateway, ever.")
    p.add_argument("--pubkey", required=True, metavar="HEX", help="raw Ed25519 key, 64 hex")
    p.add_argument("--submitter", required=True, metavar="ADDR",
                   help="EVM address the gateway anchors from")

    p = _customs_action(
        lsub, "revoke-gateway", cmd_revoke, "stop a gateway and say which batches to trust",
        "The gateway can no longer anchor. Its records in batches 1..--last-trusted-batch "
        "still verify; later ones fail as 'revoked'. After a key compromise, give the last "
        "batch anchored before it.")
    p.add_argument("--last-trusted-batch", default="all", metavar="N|all",
                   help="last batch whose records stay valid (default all: decommissioning)")

    p = lsub.add_parser("status", help="a gateway's registration and anchoring on the ledger",
                        description="Show the gateway's registration (key, submitter, revoked?) "
                                    "and its last anchored batch with its confirmations.")
    add_rpc_options(p)
    p.add_argument("--gateway-id", metavar="ID", help="gateway id")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=guarded(cmd_status))
    parsers["status"] = p

    p = verify_cli.add_parser(sub)
    p.set_defaults(func=guarded(verify_cli.cmd_verify))
    parsers["verify"] = p
    return parsers
