"""The gateway's EVM account without eth-account: secp256k1 signing with `cryptography`.

eth-account (with eth_keys, eth_utils and friends) costs a gateway ~30 MB of RSS to sign one
kind of transaction. `cryptography` is already loaded (Ed25519 record signatures, TLS) and does
ECDSA on SECP256K1 in OpenSSL; what Ethereum adds is small: the address (keccak of the public
key), low-s signatures (EIP-2), the recovery id (which of the two curve points with x = r was
the nonce point, so nodes can recover the sender), and RLP. The recovery id is found with a
few lines of affine secp256k1 arithmetic (a few ms per signature, once per batch).
tests/test_signer.py holds the transactions to eth-account's decoding and recovery.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from ledger_client.abi import keccak, to_checksum
from ledger_client.evmkey import EvmKeyError, read_private_key
from ledger_client.evmtx import Fees, RlpInput, rlp_encode

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)
Point = tuple[int, int] | None  # None: the point at infinity


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % P == 0:
            return None
        slope = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (slope * slope - a[0] - b[0]) % P
    return x, (slope * (a[0] - x) - a[1]) % P


def _mul(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def recover(z: bytes, r: int, s: int, recid: int) -> tuple[int, int] | None:
    """The public key that signed digest `z` as (r, s) with nonce point R = (r, y of parity
    recid): Q = r^-1 (sR - zG). None when no such R is on the curve."""
    x = r
    y_squared = (pow(x, 3, P) + 7) % P
    y = pow(y_squared, (P + 1) // 4, P)
    if y * y % P != y_squared:
        return None
    if y & 1 != recid:
        y = P - y
    e = int.from_bytes(z, "big") % N
    r_inv = pow(r, -1, N)
    point = _add(_mul(s * r_inv % N, (x, y)), _mul((-e * r_inv) % N, G))
    return point


class Signer:
    """A secp256k1 account: `address` (EIP-55) and `sign_transaction`."""

    def __init__(self, private_key: bytes) -> None:
        number = int.from_bytes(private_key, "big")
        if len(private_key) != 32 or not 0 < number < N:
            raise EvmKeyError("not a secp256k1 private key (32 bytes, 1..N-1)")
        self._key = ec.derive_private_key(number, ec.SECP256K1())
        public = self._key.public_key().public_numbers()
        self.public_point = (public.x, public.y)
        raw_public = public.x.to_bytes(32, "big") + public.y.to_bytes(32, "big")
        self.address = to_checksum("0x" + keccak(raw_public)[12:].hex())

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """The account whose key file `evmkey.read_private_key` checks and reads."""
        return cls(read_private_key(path))

    def sign_digest(self, z: bytes) -> tuple[int, int, int]:
        """(recid, r, s) over the 32-byte digest `z`, s in the low half (EIP-2)."""
        der = self._key.sign(z, ec.ECDSA(Prehashed(hashes.SHA256())))  # SHA256: only its size
        r, s = decode_dss_signature(der)
        if s > N // 2:
            s = N - s
        for recid in (0, 1):
            if recover(z, r, s, recid) == self.public_point:
                return recid, r, s
        raise ValueError("no recovery id reproduces this key (r >= N - P, odds 2**-128)")

    def sign_transaction(self, *, nonce: int, gas: int, to: str, value: int, data: bytes,
                         chain_id: int, fees: Fees) -> tuple[bytes, bytes]:
        """(raw signed tx, tx hash). EIP-1559 (type 2, empty access list) for `fees` with a
        max fee; legacy with EIP-155 replay protection (v = recid + 35 + 2 chain_id) for a
        gas price: the two kinds `tx.sign` gives eth-account."""
        to_bytes = bytes.fromhex(to.removeprefix("0x"))
        if fees.gas_price is None:
            assert fees.max_fee is not None and fees.tip is not None
            body: list[RlpInput] = [chain_id, nonce, fees.tip, fees.max_fee, gas,
                                         to_bytes, value, data, []]
            recid, r, s = self.sign_digest(keccak(b"\x02" + rlp_encode(body)))
            raw = b"\x02" + rlp_encode([*body, recid, r, s])
        else:
            body = [nonce, fees.gas_price, gas, to_bytes, value, data]
            recid, r, s = self.sign_digest(keccak(rlp_encode([*body, chain_id, 0, 0])))
            raw = rlp_encode([*body, recid + 35 + 2 * chain_id, r, s])
        return raw, keccak(raw)
