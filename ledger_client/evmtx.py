"""Transactions as bytes, without web3: RLP, fees, the fields of a journaled raw tx.

The agent journals every signed anchor transaction before it broadcasts it, and later reads
back its nonce and fees (to replace it at the same nonce with higher fees). Neither needs web3
(~50 MB of RSS on a gateway): RLP is a page of code, and the node refusals are recognised by
their wording. `tx` (web3) and `rpc_registry` (raw JSON-RPC) share these definitions, so both
clients of the ledger treat a transaction the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ledger_client.abi import keccak

# How geth/anvil/Besu/eth-tester word "I already have this tx", "nonce already used" and
# "your fee is too low" (including Besu's "below configured minimum gas price").
KNOWN_TX = re.compile(r"already known|known transaction|already imported|already in pool", re.I)
NONCE_LOW = re.compile(r"nonce too low|nonce_too_low|expected (\d+), but got (\d+)", re.I)
UNDERPRICED = re.compile(
    r"underpriced|fee cap less than|fee per gas less than|below (the )?(configured )?min"
    r"|gas price (is )?too low|less than block base fee|fee cap below", re.I)

RlpItem = bytes | list["RlpItem"]
RlpInput = bytes | int | list["RlpInput"]
"""What `rlp_encode` takes: RlpItem, plus non-negative ints anywhere."""


def rlp_encode(item: RlpInput) -> bytes:
    """RLP of bytes, non-negative ints (minimal big-endian, 0 is empty) and lists of them."""
    if isinstance(item, int):
        if item < 0:
            raise ValueError(f"RLP has no negative integers: {item}")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _length(len(item), 0x80) + item
    payload = b"".join(rlp_encode(x) for x in item)
    return _length(len(payload), 0xC0) + payload


def _length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def rlp_decode(data: bytes) -> RlpItem:
    """The item `data` encodes; ValueError for anything but exactly one well-formed item."""
    item, end = _decode_at(data, 0)
    if end != len(data):
        raise ValueError(f"RLP: {len(data) - end} trailing bytes")
    return item


def _decode_at(data: bytes, pos: int) -> tuple[RlpItem, int]:
    if pos >= len(data):
        raise ValueError("RLP: truncated")
    first = data[pos]
    if first < 0x80:
        return data[pos:pos + 1], pos + 1
    is_list = first >= 0xC0
    short = first - (0xC0 if is_list else 0x80)
    if short < 56:
        start, length = pos + 1, short
    else:
        size = short - 55
        start = pos + 1 + size
        if start > len(data):
            raise ValueError("RLP: truncated length")
        length = int.from_bytes(data[pos + 1:start], "big")
    end = start + length
    if end > len(data):
        raise ValueError("RLP: truncated payload")
    if not is_list:
        return data[start:end], end
    items: list[RlpItem] = []
    cursor = start
    while cursor < end:
        item, cursor = _decode_at(data, cursor)
        items.append(item)
    if cursor != end:
        raise ValueError("RLP: list payload overruns its length")
    return items, end


@dataclass(frozen=True, slots=True)
class Fees:
    """Either a legacy gas price, or EIP-1559 max fee + priority fee (wei)."""

    gas_price: int | None = None
    max_fee: int | None = None
    tip: int | None = None

    @property
    def legacy(self) -> bool:
        return self.gas_price is not None

    def fields(self) -> dict[str, int]:
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        assert self.max_fee is not None and self.tip is not None
        return {"type": 2, "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip}

    def bumped(self, floor: Fees | None = None) -> Fees:
        """Fees a node accepts as a replacement (geth and Besu want >= 10% more on every
        field; 12.5% + 1 wei clears that), and at least `floor` (what the chain asks now)."""

        def up(value: int | None, minimum: int | None) -> int:
            v = value or 0
            return max(v + v // 8 + 1, minimum or 0)

        if self.legacy:
            return Fees(gas_price=up(self.gas_price, floor.gas_price if floor else None))
        tip = up(self.tip, floor.tip if floor else None)
        max_fee = max(up(self.max_fee, floor.max_fee if floor else None), tip)
        return Fees(max_fee=max_fee, tip=tip)

    def cost_cap(self) -> int:
        """The most this pays per gas."""
        return self.gas_price if self.gas_price is not None else (self.max_fee or 0)


def fees_from(gas_price: int | None, base_fee: int | None, node_gas_price: int,
              node_tip: int) -> Fees:
    """The rule of `suggest_fees`, for either client: an explicit gas_price (0 on Besu
    free-gas networks) gives a legacy tx; otherwise EIP-1559 where the latest block has a base
    fee (max fee 2 x base fee + tip), legacy at the node's gas price where it does not."""
    if gas_price is not None:
        return Fees(gas_price=gas_price)
    if base_fee is None:
        return Fees(gas_price=node_gas_price)
    tip = node_tip if base_fee else 0
    return Fees(max_fee=2 * base_fee + tip, tip=tip)


@dataclass(frozen=True, slots=True)
class RawTx:
    """The fields of a signed tx that the agent needs back from journaled bytes."""

    nonce: int
    fees: Fees
    hash: bytes


def decode_raw(raw: bytes) -> RawTx:
    """Nonce and fees of a signed legacy (RLP list) or EIP-1559 (0x02 || RLP) transaction."""
    if raw[:1] != b"\x02" and not (raw[:1] and raw[0] >= 0xC0):
        raise ValueError(f"unsupported transaction type 0x{raw[:1].hex()}")
    try:
        if raw[:1] == b"\x02":
            f = rlp_decode(raw[1:])
            fees, nonce = Fees(max_fee=_int(f[3]), tip=_int(f[2])), _int(f[1])
        else:
            f = rlp_decode(raw)
            fees, nonce = Fees(gas_price=_int(f[1])), _int(f[0])
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not a signed transaction: {exc}") from exc
    return RawTx(nonce, fees, keccak(raw))


def _int(field: RlpItem) -> int:
    if not isinstance(field, bytes):
        raise TypeError("expected an RLP string, got a list")
    return int.from_bytes(field, "big")


class TxState(Enum):
    MINED = "mined"  # a receipt exists (successful or reverted)
    PENDING = "pending"  # the node has it in its pool
    UNKNOWN = "unknown"  # the node has never seen it, or dropped it
