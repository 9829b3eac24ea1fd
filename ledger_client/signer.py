"""The gateway's EVM account without eth-account: secp256k1 signing with `cryptography`.

eth-account (with eth_keys, eth_utils and friends) costs a gateway ~30 MB of RSS to sign one
kind of transaction. `cryptography` is already loaded (Ed25519 record signatures, TLS) and does
ECDSA on SECP256K1 in OpenSSL; what Ethereum adds is small: the address (keccak of the public
key), low-s signatures (EIP-2), the recovery id (which of the two curve points with x = r was
the nonce point, so nodes can recover the sender), and RLP. The recovery id comes from the
nonce point itself, recomputed from the signature and our key (see `Signer.sign_digest`).
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

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order of secp256k1's group."""


class Signer:
    """A secp256k1 account: `address` (EIP-55) and `sign_transaction`."""

    def __init__(self, private_key: bytes) -> None:
        number = int.from_bytes(private_key, "big")
        if len(private_key) != 32 or not 0 < number < N:
            raise EvmKeyError("not a secp256k1 private key (32 bytes, 1..N-1)")
        self._d = number
        self._key = ec.derive_private_key(number, ec.SECP256K1())
        public = self._key.public_key().public_numbers()
        raw_public = public.x.to_bytes(32, "big") + public.y.to_bytes(32, "big")
        self.address = to_checksum("0x" + keccak(raw_public)[12:].hex())

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """The account whose key file `evmkey.read_private_key` checks and reads."""
        return cls(read_private_key(path))

    def sign_digest(self, z: bytes) -> tuple[int, int, int]:
        """(recid, r, s) over the 32-byte digest `z`, s in the low half (EIP-2).

        The recovery id is the parity of y of the nonce point R. We hold the private key d, so
        the nonce is k = s^-1 (z + r d) mod N and R = kG, which OpenSSL computes (one scalar
        multiplication in C, microseconds; for s flipped to N - s this gives -R, whose parity
        is the flipped signature's recovery id)."""
        der = self._key.sign(z, ec.ECDSA(Prehashed(hashes.SHA256())))  # SHA256: only its size
        r, s = decode_dss_signature(der)
        if s > N // 2:
            s = N - s
        k = pow(s, -1, N) * (int.from_bytes(z, "big") % N + r * self._d) % N
        nonce_point = ec.derive_private_key(k, ec.SECP256K1()).public_key().public_numbers()
        if nonce_point.x != r:  # r = R.x mod N with R.x >= N: odds 2**-128
            raise ValueError("the nonce point's x is not r; sign again")
        return nonce_point.y & 1, r, s

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
