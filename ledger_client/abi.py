"""SealTrailAnchor's on-chain vocabulary, without web3: ids, selectors, and the decoding of what
the contract returns.

A verifier reads three things from the contract (a gateway's registration, a batch root, the
Anchored log of a batch) and every one of them is a row of 32-byte words, so decoding them by
hand is a few slices. Doing it here keeps `sealtrail verify` off web3 (1.5 s of imports on a
Raspberry Pi-class machine, longer than verifying a thousand records), and gives the web3 client
(`chain`) and the raw JSON-RPC reader (`reader`) one definition of each id and record.
`tests/test_ledger_reader.py` holds the selectors and decoders equal to web3's ABI codec.
"""

from __future__ import annotations

from dataclasses import dataclass

from Crypto.Hash import keccak as _keccak  # pycryptodome: a dependency of its own (README)

from sealtrail.errors import UsageError


def keccak(data: bytes) -> bytes:
    """Ethereum's keccak-256 (not NIST SHA3-256: the padding differs)."""
    return bytes(_keccak.new(digest_bits=256, data=data).digest())


ANCHORED_SIG = "Anchored(bytes32,uint64,bytes32,uint64,uint64,bytes32)"
ANCHORED_TOPIC = keccak(ANCHORED_SIG.encode())
GATEWAY_INFO = keccak(b"gatewayInfo(bytes32)")[:4]
ROOTS = keccak(b"roots(bytes32,uint64)")[:4]
CHAIN_DOMAIN = b"sealtrail/v1"
LOG_WINDOW = 1000
"""Blocks per eth_getLogs request: Besu's default --rpc-max-logs-range."""
TRUST_ALL = 2**64 - 1
"""`last_trusted_batch` meaning "every batch anchored before the revocation"."""
_HEX = frozenset("0123456789abcdefABCDEF")


def gateway_key(gateway_id: str) -> bytes:
    """On-chain gateway id: keccak256 of the UTF-8 gateway id (fixed 32 bytes, any id length)."""
    return keccak(gateway_id.encode("utf-8"))


def is_address(text: object) -> bool:
    """0x and 40 hex digits; in mixed case, only with a correct EIP-55 checksum, so a typo in
    a checksummed address is caught (web3 7's `is_address` accepts any case)."""
    if not isinstance(text, str) or len(text) != 42 or not text.startswith("0x"):
        return False
    digits = text[2:]
    if not _HEX.issuperset(digits):
        return False
    return digits in (digits.lower(), digits.upper()) or to_checksum(text) == text


def to_checksum(address: str) -> str:
    """EIP-55 form of a 0x-prefixed 40-hex-digit address (UsageError for anything else)."""
    digits = address.removeprefix("0x").lower()
    if len(digits) != 40 or not _HEX.issuperset(digits):
        raise UsageError(f"{address!r} is not an EVM address (0x and 40 hex digits)")
    mask = keccak(digits.encode("ascii")).hex()[:40]
    return "0x" + "".join(c.upper() if m in "89abcdef" else c
                          for c, m in zip(digits, mask, strict=True))


def word(value: int) -> str:
    """One ABI word (uint256, big-endian) as 64 hex digits."""
    return value.to_bytes(32, "big").hex()


def call_gateway_info(gateway_id: str) -> str:
    """Calldata of `gatewayInfo(bytes32)`."""
    return "0x" + GATEWAY_INFO.hex() + gateway_key(gateway_id).hex()


def call_roots(gateway_id: str, batch_seq: int) -> str:
    """Calldata of `roots(bytes32, uint64)`."""
    return "0x" + ROOTS.hex() + gateway_key(gateway_id).hex() + word(batch_seq)


@dataclass(frozen=True)
class GatewayInfo:
    pubkey: bytes
    submitter: str
    registered_at: int
    revoked_at: int  # block of the revocation, 0 while active
    last_batch: int
    next_seq: int
    chain_hash: bytes
    last_trusted_batch: int = 0  # after a revocation: batches 1..this are still trusted

    @property
    def revoked(self) -> bool:
        return self.revoked_at != 0

    def trusts_batch(self, batch_seq: int) -> bool:
        """Whether customs still trusts records anchored in `batch_seq` (see revokeGateway)."""
        return not self.revoked or batch_seq <= self.last_trusted_batch


@dataclass(frozen=True)
class AnchorEvent:
    batch_seq: int
    root: bytes
    first_seq: int
    tree_size: int
    chain_hash: bytes
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    log_index: int


class AbiError(ValueError):
    """A reply that is not what the contract returns (wrong length, not hex)."""


def _words(data: object, count: int, what: str) -> list[bytes]:
    if not isinstance(data, str) or not data.startswith("0x"):
        raise AbiError(f"{what}: expected 0x-hex data, got {str(data)[:80]!r}")
    try:
        raw = bytes.fromhex(data[2:])
    except ValueError:
        raise AbiError(f"{what}: not hex: {data[:80]!r}") from None
    if len(raw) != 32 * count:
        raise AbiError(f"{what}: expected {count} words, got {len(raw)} bytes")
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


def decode_gateway_info(data: object) -> GatewayInfo | None:
    """The reply of `gatewayInfo`; None for a gateway that was never registered."""
    pk, sub, reg, rev, last, nxt, ch, trusted = _words(data, 8, "gatewayInfo")
    if not int.from_bytes(reg, "big"):
        return None
    return GatewayInfo(pk, to_checksum("0x" + sub[12:].hex()), int.from_bytes(reg, "big"),
                       int.from_bytes(rev, "big"), int.from_bytes(last, "big"),
                       int.from_bytes(nxt, "big"), ch, int.from_bytes(trusted, "big"))


def decode_root(data: object) -> bytes | None:
    """The reply of `roots`; None for a batch that is not anchored (the zero word)."""
    (root,) = _words(data, 1, "roots")
    return root if any(root) else None


def decode_anchored(log: object) -> AnchorEvent:
    """An `Anchored` log object of eth_getLogs (JSON-RPC shape: hex strings)."""
    if not isinstance(log, dict):
        raise AbiError(f"Anchored log: expected an object, got {type(log).__name__}")
    topics = log.get("topics")
    if not isinstance(topics, list) or len(topics) != 3:
        raise AbiError("Anchored log: expected 3 topics")
    root, first_seq, tree_size, chain_hash = _words(log.get("data"), 4, "Anchored data")
    (batch_seq,) = _words(topics[2], 1, "Anchored batchSeq")
    try:
        return AnchorEvent(int.from_bytes(batch_seq, "big"), root,
                           int.from_bytes(first_seq, "big"), int.from_bytes(tree_size, "big"),
                           chain_hash, _hash(log["transactionHash"]), int(log["blockNumber"], 16),
                           _hash(log["blockHash"]), int(log["logIndex"], 16))
    except (KeyError, TypeError, ValueError) as exc:
        raise AbiError(f"Anchored log: {exc!r}") from None


def _hash(value: object) -> bytes:
    (raw,) = _words(value, 1, "hash")
    return raw
