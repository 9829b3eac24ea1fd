"""The web3-free signer against eth-account as the oracle: every transaction it signs decodes
to the fields it was given and recovers to its address, legacy and EIP-1559, for many keys,
including the half of signatures OpenSSL returns with a high s (normalised per EIP-2)."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_client import evmtx, signer
from ledger_client.evmkey import EvmKeyError
from ledger_client.evmtx import Fees, decode_raw, rlp_decode, rlp_encode

TO = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
keys = st.integers(min_value=1, max_value=signer.N - 1).map(lambda k: k.to_bytes(32, "big"))
fee_values = st.integers(min_value=0, max_value=10**12)


def test_the_address_is_eth_accounts_for_random_keys() -> None:
    for _ in range(20):
        key = os.urandom(32)
        assert signer.Signer(key).address == Account.from_key(key).address


@settings(max_examples=25, deadline=None)
@given(key=keys, nonce=st.integers(0, 2**40), tip=fee_values, extra=fee_values,
       chain_id=st.sampled_from([1, 1337, 31337, 2**31 - 1]), data=st.binary(max_size=200))
def test_eip1559_transactions_recover_to_the_signer_with_their_fields(
        key: bytes, nonce: int, tip: int, extra: int, chain_id: int, data: bytes) -> None:
    account = signer.Signer(key)
    fees = Fees(max_fee=tip + extra, tip=tip)
    raw, tx_hash = account.sign_transaction(nonce=nonce, gas=90_000, to=TO, value=0, data=data,
                                            chain_id=chain_id, fees=fees)
    assert Account.recover_transaction(raw) == account.address
    fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert (fields["chainId"], fields["nonce"], fields["gas"], fields["to"], fields["value"],
            bytes(fields["data"]), fields["maxFeePerGas"], fields["maxPriorityFeePerGas"]) == (
        chain_id, nonce, 90_000, bytes.fromhex(TO[2:]), 0, data, tip + extra, tip)
    assert fields["s"] <= signer.N // 2
    assert decode_raw(raw) == evmtx.RawTx(nonce, fees, tx_hash)
    # eth-account signing the same fields gives the same signed payload (its k differs)
    theirs = Account.sign_transaction({"type": 2, "chainId": chain_id, "nonce": nonce,
                                       "gas": 90_000, "to": TO, "value": 0, "data": data,
                                       "maxFeePerGas": tip + extra,
                                       "maxPriorityFeePerGas": tip}, key)
    assert rlp_decode(bytes(theirs.raw_transaction)[1:])[:9] == rlp_decode(raw[1:])[:9]  # type: ignore[index]


@settings(max_examples=25, deadline=None)
@given(key=keys, nonce=st.integers(0, 2**40), gas_price=fee_values,
       chain_id=st.sampled_from([1, 1337, 31337, 2**31 - 1]), data=st.binary(max_size=200))
def test_legacy_eip155_transactions_recover_to_the_signer(
        key: bytes, nonce: int, gas_price: int, chain_id: int, data: bytes) -> None:
    account = signer.Signer(key)
    raw, tx_hash = account.sign_transaction(nonce=nonce, gas=90_000, to=TO, value=0, data=data,
                                            chain_id=chain_id, fees=Fees(gas_price=gas_price))
    assert Account.recover_transaction(raw) == account.address
    theirs = Account.sign_transaction({"chainId": chain_id, "nonce": nonce, "gas": 90_000,
                                       "to": TO, "value": 0, "data": data,
                                       "gasPrice": gas_price}, key)
    mine, reference = rlp_decode(raw), rlp_decode(bytes(theirs.raw_transaction))
    assert mine[:6] == reference[:6]  # type: ignore[index]
    v = int.from_bytes(mine[6], "big")  # type: ignore[index,arg-type]
    assert v in (35 + 2 * chain_id, 36 + 2 * chain_id)
    assert int.from_bytes(mine[8], "big") <= signer.N // 2  # type: ignore[index,arg-type]
    assert decode_raw(raw) == evmtx.RawTx(nonce, Fees(gas_price=gas_price), tx_hash)


def test_high_s_signatures_are_normalised_and_both_recovery_ids_occur(monkeypatch) -> None:
    """OpenSSL returns s > N/2 about half of the time: count that it happened, and that the
    flipped signatures still recover (each recovery id seen)."""
    from cryptography.hazmat.primitives.asymmetric import utils

    high, recids = 0, set()
    original = utils.decode_dss_signature

    def spy(der: bytes) -> tuple[int, int]:
        nonlocal high
        r, s = original(der)
        high += s > signer.N // 2
        return r, s

    monkeypatch.setattr(signer, "decode_dss_signature", spy)
    account = signer.Signer(os.urandom(32))
    for nonce in range(40):
        raw, _ = account.sign_transaction(nonce=nonce, gas=21_000, to=TO, value=0, data=b"",
                                          chain_id=31337, fees=Fees(max_fee=10, tip=1))
        assert Account.recover_transaction(raw) == account.address
        recids.add(rlp_decode(raw[1:])[9])  # type: ignore[index]
    assert high > 0 and recids == {b"", b"\x01"}


def test_rlp_round_trips_and_refuses_garbage() -> None:
    item = [b"", b"\x7f", b"\x80", b"x" * 60, [b"a", [b"" * 3, b"y" * 70]], 0, 1024]
    decoded = rlp_decode(rlp_encode(item))  # type: ignore[arg-type]
    assert decoded == [b"", b"\x7f", b"\x80", b"x" * 60, [b"a", [b"", b"y" * 70]], b"",
                       b"\x04\x00"]
    for bad in (b"", b"\x83ab", b"\xc2\x01", b"\x01\x02", b"\xb9\x01"):
        with pytest.raises(ValueError):
            rlp_decode(bad)


def test_a_key_outside_the_curve_order_is_refused(tmp_path) -> None:
    with pytest.raises(EvmKeyError):
        signer.Signer(signer.N.to_bytes(32, "big"))
    with pytest.raises(EvmKeyError):
        signer.Signer(b"\x00" * 32)
    path = tmp_path / "evm.key"
    key = os.urandom(32)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    assert signer.Signer.from_file(path).address == Account.from_key(key).address
