"""Raw transactions and their lifecycle: fees, idempotent broadcast, status, replacement.

Kept apart from the contract client because the hard part of anchoring is not the call but the
transaction: it may be refused as underpriced, dropped from a mempool, stuck behind a rising base
fee, replaced by a higher-fee twin at the same nonce, or mined and then reorganised away. Every
function here works on raw signed bytes, which is what the agent journals before broadcast.
"""

from __future__ import annotations

import time
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt

from ledger_client import reverts
from ledger_client.errors import ChainError, NonceConsumed, Underpriced
from ledger_client.evmtx import KNOWN_TX, NONCE_LOW, UNDERPRICED, fees_from
from ledger_client.evmtx import Fees as Fees  # re-exported: defined without web3
from ledger_client.evmtx import RawTx as RawTx
from ledger_client.evmtx import TxState as TxState
from ledger_client.evmtx import decode_raw as decode_raw
from ledger_client.reverts import RevertDecoder

Sender = str | LocalAccount
"""An unlocked node account (eth-tester, anvil) or a local key that signs here."""


def suggest_fees(w3: Web3, gas_price: int | None = None) -> Fees:
    """Fees for a tx now. An explicit gas_price (0 on Besu free-gas networks) gives a legacy
    tx; otherwise EIP-1559 where the latest block has a base fee, legacy at the node's gas
    price where it does not. One or two RPC rounds; nothing is sent."""
    if gas_price is not None:
        return Fees(gas_price=gas_price)
    base_fee = w3.eth.get_block("latest").get("baseFeePerGas")
    if base_fee is None:
        return fees_from(None, None, w3.eth.gas_price, 0)
    return fees_from(None, base_fee, 0, w3.eth.max_priority_fee if base_fee else 0)


def sign(account: LocalAccount, tx: dict[str, Any], fees: Fees) -> tuple[bytes, bytes]:
    """Sign `tx` with `fees`; returns (raw, hash)."""
    signed = account.sign_transaction({**tx, **fees.fields()})
    return bytes(signed.raw_transaction), bytes(signed.hash)


def tx_state(w3: Web3, tx_hash: bytes) -> tuple[TxState, TxReceipt | None]:
    """Where a tx is now, with its receipt when mined."""
    try:
        return TxState.MINED, w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        pass
    return (TxState.PENDING if tx_known(w3, tx_hash) else TxState.UNKNOWN), None


def tx_known(w3: Web3, tx_hash: bytes) -> bool:
    try:
        w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return True


def send_raw(w3: Web3, raw: bytes, decoder: RevertDecoder | None = None) -> bytes:
    """Broadcast a journaled raw tx; idempotent, returns its hash.

    - node already has it ("already known", "known transaction", "already imported"): fine;
    - "nonce too low": if THIS tx is known to the node (mined, or pending) return its hash;
      otherwise another tx used the nonce: NonceConsumed, and the caller asks the contract
      whether the batch is anchored before building a new tx;
    - fee too low for the node: Underpriced (sign again with higher fees, same nonce);
    - a revert at submission (nodes that simulate) raises ContractRevert via `decoder`.
    """
    tx_hash = keccak(raw)
    try:
        return bytes(w3.eth.send_raw_transaction(raw))
    except reverts.NODE_REFUSALS as exc:
        msg = str(exc)
        if KNOWN_TX.search(msg):
            return tx_hash
        if reverts.from_eth_tester(exc) and tx_known(w3, tx_hash):
            return tx_hash  # eth-tester mined it and it reverted: the receipt says why
        low = NONCE_LOW.search(msg)
        if low and (low.group(1) is None or int(low.group(2)) < int(low.group(1))):
            if tx_known(w3, tx_hash):
                return tx_hash
            raise NonceConsumed(
                f"nonce of tx 0x{tx_hash.hex()} already used by another transaction ({msg})"
            ) from exc
        if UNDERPRICED.search(msg):
            raise Underpriced(f"node refused tx 0x{tx_hash.hex()} at its fee: {msg}") from exc
        if decoder is not None:
            decoder.reraise(exc)
        raise ChainError(f"node refused tx 0x{tx_hash.hex()}: {msg}") from exc


def send_call(w3: Web3, fn: Any, sender: Sender, *, gas_price: int | None = None,
              timeout: float = 120) -> TxReceipt:
    """Send a contract call/constructor from an unlocked account or a local key; wait for it.
    `gas_price` forces a legacy tx at that price (0 on free-gas networks)."""
    params: dict[str, Any] = {"from": address_of(sender)}
    if gas_price is not None:
        params["gasPrice"] = gas_price
    if isinstance(sender, LocalAccount):
        params["nonce"] = w3.eth.get_transaction_count(sender.address, "pending")
        tx = fn.build_transaction(params)
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    else:
        tx_hash = fn.transact(params)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)


def wait_confirmations(w3: Web3, receipt: TxReceipt, confirmations: int, *,
                       timeout: float = 120, poll_s: float = 0.5) -> TxReceipt:
    """Wait until `confirmations` blocks sit on top of the tx's block, following it if a reorg
    moves it; ChainError if it leaves the chain or the wait times out."""
    deadline = time.monotonic() + timeout
    tx_hash = receipt["transactionHash"]
    while True:
        try:
            current = w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound as exc:
            raise ChainError(f"tx 0x{bytes(tx_hash).hex()} left the chain (reorg)") from exc
        if w3.eth.block_number - current["blockNumber"] >= confirmations:
            return current
        if time.monotonic() > deadline:
            raise ChainError(f"tx 0x{bytes(tx_hash).hex()}: no {confirmations} confirmations "
                             f"within {timeout:.0f}s")
        time.sleep(poll_s)


def address_of(sender: Sender) -> str:
    return sender.address if isinstance(sender, LocalAccount) else Web3.to_checksum_address(sender)


def fund(w3: Web3, from_addr: str, to_addr: str, wei: int) -> None:
    """Move test ether from an unlocked, rich node account (eth-tester, anvil) to a fresh key."""
    tx: TxParams = {"from": address_of(from_addr), "to": address_of(to_addr), "value": wei}  # type: ignore[typeddict-item]
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx), timeout=120)
    if receipt["status"] != 1:
        raise ChainError(f"funding {to_addr} failed")

