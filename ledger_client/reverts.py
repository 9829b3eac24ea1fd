"""What the ledger said no to, in one vocabulary whichever node said it.

eth-tester, anvil, geth and Besu report the same refusal in different shapes (an exception
class, a JSON-RPC error code, a message, revert bytes in one of three places). Callers need
to branch on the meaning, not the shape: "the contract reverted with BadBatchSeq(2, 3)", "that
nonce is taken", "the fee is too low", so the shapes are mapped here once, into the classes of
``ledger_client.errors``. This module imports web3; ``errors`` does not, so a command that
only reads the ledger (``sealtrail verify``) can raise and catch those classes without paying a
second of imports.

eth-tester (the in-process chain of the demo and the unit tests) is never imported here: it
pulls in py-evm, ~0.5 s and ~7 MB that a gateway on a real node has no use for. Its revert
exception can only be raised once something else imported it, so ``REVERTS`` and
``NODE_REFUSALS`` are computed when looked up (``reverts.REVERTS``, not a from-import) and
include it exactly when eth-tester is loaded.
"""

from __future__ import annotations

import ast
import re
import sys
from typing import Any

from eth_utils import keccak
from eth_utils.exceptions import ValidationError as EvmValidationError
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from ledger_client.errors import ContractRevert
from ledger_client.evmtx import KNOWN_TX as KNOWN_TX  # re-exported: defined without web3
from ledger_client.evmtx import NONCE_LOW as NONCE_LOW
from ledger_client.evmtx import UNDERPRICED as UNDERPRICED

STD_ERRORS = {
    bytes.fromhex("08c379a0"): ("Error", ["string"]),
    bytes.fromhex("4e487b71"): ("Panic", ["uint256"]),
}
_NODE_REFUSALS = (Web3RPCError, ValueError, EvmValidationError)
_REVERTS = (ContractLogicError, Web3RPCError, ValueError)


def _eth_tester_failure() -> tuple[type[Exception], ...]:
    """eth-tester's TransactionFailed if eth-tester is loaded (only then can it be raised)."""
    module = sys.modules.get("eth_tester.exceptions")
    return (module.TransactionFailed,) if module is not None else ()


def from_eth_tester(exc: BaseException) -> bool:
    """Whether `exc` is the in-process chain's "transaction failed" (a revert it mined)."""
    return isinstance(exc, _eth_tester_failure())


def __getattr__(name: str) -> Any:
    """REVERTS, NODE_REFUSALS: the exception classes to catch, eth-tester's when loaded."""
    if name == "REVERTS":
        return _REVERTS + _eth_tester_failure()
    if name == "NODE_REFUSALS":
        return _NODE_REFUSALS + _eth_tester_failure()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def revert_data(exc: Exception) -> bytes | None:
    """Revert payload from whatever shape the node/provider used to report it: `data` on
    web3's ContractLogicError, error.data of a JSON-RPC error, or (eth-tester) a Python bytes
    literal inside the message ("execution reverted: b'...'")."""
    data: Any = getattr(exc, "data", None)
    if data is None and isinstance(exc, Web3RPCError) and exc.rpc_response:
        data = exc.rpc_response.get("error", {}).get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    literal = re.search(r"\bb(['\"]).*\1", str(exc), re.DOTALL)
    if literal:
        try:
            value = ast.literal_eval(literal.group(0))
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


class RevertDecoder:
    """Maps revert bytes to the ABI's custom errors (plus Error(string) and Panic(uint256))."""

    def __init__(self, w3: Web3, abi: list[dict[str, Any]]) -> None:
        self.w3 = w3
        self._errors = {
            keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")[:4]: (
                e["name"],
                [i["type"] for i in e["inputs"]],
            )
            for e in abi
            if e["type"] == "error"
        } | STD_ERRORS

    def decode(self, data: bytes) -> ContractRevert:
        """Turn revert bytes into ContractRevert naming the custom error (or Error/Panic)."""
        name, types = self._errors.get(data[:4], (None, []))
        if name is None:
            return ContractRevert("UnknownRevert", (data,), data)
        values = self.w3.codec.decode(types, data[4:])
        args = tuple(
            Web3.to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, values, strict=True)
        )
        return ContractRevert(name, args, data)

    def reraise(self, exc: Exception) -> None:
        """Raise ContractRevert from `exc` if it carries revert data; return otherwise."""
        data = revert_data(exc)
        if data:
            raise self.decode(data) from exc
        if isinstance(exc, ContractLogicError):
            raise ContractRevert("Revert", (str(exc),)) from exc
