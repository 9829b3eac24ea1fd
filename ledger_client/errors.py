"""The ledger's failures as users meet them: each one a ``sealtrail.errors.SealTrailError``.

These classes carry the meaning ("the contract reverted with BadBatchSeq(2, 3)", "that nonce is
taken", "the fee is too low"); ``ledger_client.reverts`` maps each node's shape of saying so
(eth-tester, anvil, geth, Besu) onto them. This module imports nothing heavy, so the read-only
verification path can raise and catch them without loading web3 (a second and a half, and the
recursion limit py_ecc raises).

The names ``reverts`` defines (``REVERTS``, ``RevertDecoder``, ``revert_data``, ...) are still
importable from here, loaded on first use.
"""

from __future__ import annotations

from typing import Any

from sealtrail.errors import EXIT_FAILED, SealTrailError


class ChainError(SealTrailError, RuntimeError):
    """Anything the ledger said no to; the message is meant for an operator's log. Exit 1."""

    exit_code = EXIT_FAILED


class ContractRevert(ChainError):
    """A call or transaction reverted; `error` is the contract's custom error name (or
    Error/Panic/UnknownRevert), `values` its decoded arguments, `data` the raw revert bytes."""

    def __init__(self, error: str, values: tuple[Any, ...] = (), data: bytes = b"") -> None:
        self.error, self.values, self.data = error, values, data
        shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in values)
        super().__init__(f"SealTrailAnchor reverted: {error}({shown})")


class NonceConsumed(ChainError):
    """The nonce of a raw tx was used by a DIFFERENT transaction: ask the contract whether the
    batch is anchored before building a new transaction."""


class Underpriced(ChainError):
    """The node will not take the tx at its fee (below base fee, minimum gas price, or not
    enough of a bump over the tx it would replace): sign it again with a higher fee."""


_IN_REVERTS = frozenset({"KNOWN_TX", "NONCE_LOW", "UNDERPRICED", "STD_ERRORS", "NODE_REFUSALS",
                         "REVERTS", "revert_data", "RevertDecoder"})


def __getattr__(name: str) -> Any:
    """The node-shape mapping, for callers that import it from here (loads web3)."""
    if name in _IN_REVERTS:
        from ledger_client import reverts

        return getattr(reverts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
