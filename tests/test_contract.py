"""SealTrailAnchor on the in-process eth-tester chain, through ledger_client.chain.

Keys (EVM submitter keys and Ed25519 gateway keys) are made at run time, never committed.
Expected chain hashes are recomputed here from the DESIGN rules, independently of chain.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from ledger_client import chain, tx
from ledger_client.chain import AnchorEvent, AnchorRegistry, ContractRevert, NonceConsumed
from ledger_client.errors import revert_data

GAS_BUDGET = 60_000
GW = "PA-BALBOA-GW-01"


def ed25519_pubkey() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def chain0(gateway_id: str) -> bytes:
    """chainHash_0 = keccak256("sealtrail/v1" || keccak256(utf8 gateway id))."""
    return keccak(b"sealtrail/v1" + keccak(gateway_id.encode("utf-8")))


def expected_chain(gateway_id: str, batches: list[tuple[bytes, int, int]]) -> list[bytes]:
    """[chainHash_1, ...] from the DESIGN rule, written out here on purpose."""
    h = chain0(gateway_id)
    out = []
    for root, first, size in batches:
        h = keccak(h + root + first.to_bytes(8, "big") + size.to_bytes(8, "big"))
        out.append(h)
    return out


@dataclass
class Env:
    w3: Web3
    customs: str
    reg: AnchorRegistry
    submitter: LocalAccount
    pubkey: bytes
    nonce: int = 0

    def anchor(
        self,
        batch_seq: int,
        root: bytes,
        first_seq: int,
        tree_size: int,
        account: LocalAccount | None = None,
    ) -> AnchorEvent:
        """Build, send, and read back one anchor tx the way the agent does."""
        acct = account or self.submitter
        nonce = self.w3.eth.get_transaction_count(acct.address)
        raw, tx_hash = self.reg.build_anchor_tx(
            acct, batch_seq, root, first_seq, tree_size, nonce=nonce
        )
        assert self.reg.send_raw(raw) == tx_hash
        self.w3.eth.wait_for_transaction_receipt(tx_hash)
        event = self.reg.receipt_event(tx_hash)
        assert event is not None
        return event

    def gas(self, event: AnchorEvent) -> int:
        return int(self.w3.eth.get_transaction_receipt(event.tx_hash)["gasUsed"])

    def new_key(self) -> LocalAccount:
        acct: LocalAccount = Account.create()
        chain.fund(self.w3, self.customs, acct.address, 10**18)
        return acct


@pytest.fixture
def env() -> Iterator[Env]:
    w3 = chain.connect(None)
    customs = w3.eth.accounts[0]
    reg = AnchorRegistry.deploy(w3, customs)
    e = Env(w3, customs, reg, submitter=Account.create(), pubkey=ed25519_pubkey())
    chain.fund(w3, customs, e.submitter.address, 10**18)
    reg.register_gateway(GW, e.pubkey, e.submitter.address, customs)
    yield e


def rnd_root() -> bytes:
    return os.urandom(32)


def test_gateway_key_is_keccak_of_utf8() -> None:
    assert chain.gateway_key("gw-ñ") == Web3.keccak(text="gw-ñ")
    assert len(chain.gateway_key("x" * 500)) == 32


def test_register_anchor_three_batches(env: Env) -> None:
    info = env.reg.gateway(GW)
    assert info is not None
    assert info.pubkey == env.pubkey and info.submitter == env.submitter.address
    assert (info.revoked_at, info.last_batch, info.next_seq) == (0, 0, 1)
    assert info.chain_hash == chain0(GW)
    assert env.reg.gateway_of(env.submitter.address) == keccak(GW.encode())
    assert env.reg.customs() == env.customs

    batches = [(rnd_root(), 1, 4), (rnd_root(), 5, 1), (rnd_root(), 6, 7)]
    chained = expected_chain(GW, batches)
    events = [env.anchor(i + 1, *b) for i, b in enumerate(batches)]

    for i, ((root, first, size), ev) in enumerate(zip(batches, events, strict=True)):
        assert (ev.batch_seq, ev.root, ev.first_seq, ev.tree_size) == (i + 1, root, first, size)
        assert ev.chain_hash == chained[i]
        assert env.reg.root(GW, i + 1) == root
        from_logs = env.reg.anchor_event(GW, i + 1)
        assert from_logs == ev
        block = env.w3.eth.get_block(ev.block_number)
        assert bytes(block["hash"]) == ev.block_hash
        assert bytes(block["transactions"][0]) == ev.tx_hash
        assert ev.log_index == 0
    info = env.reg.gateway(GW)
    assert info is not None
    assert (info.last_batch, info.next_seq, info.chain_hash) == (3, 13, chained[-1])
    assert env.reg.root(GW, 0) is None and env.reg.root(GW, 4) is None
    assert env.reg.anchor_event(GW, 4) is None
    assert env.reg.gateway("never-registered") is None
    assert env.reg.root("never-registered", 1) is None


def test_anchor_gas_under_budget(env: Env) -> None:
    first = env.anchor(1, rnd_root(), 1, 2**40 - 1)  # large treeSize: more non-zero calldata
    later = env.anchor(2, rnd_root(), 2**40, 65_535)  # 6-byte firstSeq
    third = env.anchor(3, rnd_root(), 2**40 + 65_535, 1)
    gases = [env.gas(first), env.gas(later), env.gas(third)]
    print(f"anchor gas: first={gases[0]} later={gases[1:]}")
    assert all(g < GAS_BUDGET for g in gases), gases


def revert_name(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error


@pytest.mark.parametrize(
    ("batch_seq", "first_seq", "tree_size", "root", "error"),
    [
        (2, 1, 1, b"\x01" * 32, "BadBatchSeq"),  # first batch must be 1
        (0, 1, 1, b"\x01" * 32, "BadBatchSeq"),
        (1, 2, 1, b"\x01" * 32, "SeqGap"),  # first batch starts at seq 1
        (1, 0, 1, b"\x01" * 32, "SeqGap"),
        (1, 1, 1, b"\x00" * 32, "ZeroRoot"),
        (1, 1, 0, b"\x01" * 32, "EmptyBatch"),
        (1, 1, 2**64 - 1, b"\x01" * 32, "SeqOverflow"),
    ],
)
def test_first_anchor_rejected(
    env: Env, batch_seq: int, first_seq: int, tree_size: int, root: bytes, error: str
) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        env.anchor(batch_seq, root, first_seq, tree_size)
    assert revert_name(excinfo) == error
    info = env.reg.gateway(GW)
    assert info is not None and (info.last_batch, info.next_seq) == (0, 1)


def test_later_anchor_rejected_and_args_decoded(env: Env) -> None:
    env.anchor(1, rnd_root(), 1, 10)
    with pytest.raises(ContractRevert) as excinfo:  # replay of batch 1
        env.anchor(1, rnd_root(), 11, 5)
    assert revert_name(excinfo) == "BadBatchSeq" and excinfo.value.values == (2, 1)
    with pytest.raises(ContractRevert) as excinfo:  # skipped batch
        env.anchor(3, rnd_root(), 11, 5)
    assert revert_name(excinfo) == "BadBatchSeq"
    with pytest.raises(ContractRevert) as excinfo:  # gap: seq 11 missing
        env.anchor(2, rnd_root(), 12, 5)
    assert revert_name(excinfo) == "SeqGap" and excinfo.value.values == (11, 12)
    with pytest.raises(ContractRevert) as excinfo:  # overlap
        env.anchor(2, rnd_root(), 10, 5)
    assert revert_name(excinfo) == "SeqGap"
    assert "SeqGap(11, 10)" in str(excinfo.value)
    with pytest.raises(ContractRevert, match=r"ZeroRoot\(\)"):
        env.anchor(2, b"\x00" * 32, 11, 5)
    env.anchor(2, rnd_root(), 11, 5)


def test_unregistered_sender_rejected(env: Env) -> None:
    stranger = env.new_key()
    with pytest.raises(ContractRevert) as excinfo:
        env.anchor(1, rnd_root(), 1, 1, account=stranger)
    assert revert_name(excinfo) == "NotSubmitter"
    assert excinfo.value.values == (stranger.address,)


def test_eth_call_revert_is_decoded(env: Env) -> None:
    fn = env.reg.contract.functions.anchor(5, rnd_root(), 1, 1)
    with pytest.raises(Exception) as excinfo:
        fn.call({"from": env.submitter.address})
    data = revert_data(excinfo.value)
    assert data is not None and env.reg.decode_revert(data).error == "BadBatchSeq"


def test_registry_admin_rules(env: Env) -> None:
    other = env.new_key()
    with pytest.raises(ContractRevert) as excinfo:  # not customs, unlocked account
        env.reg.register_gateway("gw-2", ed25519_pubkey(), other.address, env.w3.eth.accounts[1])
    assert revert_name(excinfo) == "NotCustoms"
    with pytest.raises(ContractRevert) as excinfo:  # not customs, local key
        env.reg.register_gateway("gw-2", ed25519_pubkey(), other.address, other)
    assert revert_name(excinfo) == "NotCustoms"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.revoke_gateway(GW, other)
    assert revert_name(excinfo) == "NotCustoms"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.register_gateway(GW, ed25519_pubkey(), other.address, env.customs)
    assert revert_name(excinfo) == "GatewayExists"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.register_gateway("gw-2", ed25519_pubkey(), env.submitter.address, env.customs)
    assert revert_name(excinfo) == "SubmitterInUse"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.register_gateway("gw-2", b"\x00" * 32, other.address, env.customs)
    assert revert_name(excinfo) == "ZeroPubkey"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.revoke_gateway("gw-unknown", env.customs)
    assert revert_name(excinfo) == "UnknownGateway"
    with pytest.raises(ValueError, match="32 raw bytes"):
        env.reg.register_gateway("gw-2", b"\x01" * 33, other.address, env.customs)

    env.reg.register_gateway("gw-2", ed25519_pubkey(), other.address, env.customs)
    ev = env.anchor(1, rnd_root(), 1, 3, account=other)
    assert ev.chain_hash == expected_chain("gw-2", [(ev.root, 1, 3)])[0]
    assert env.reg.gateway(GW) is not None and env.reg.gateway(GW).last_batch == 0  # type: ignore[union-attr]


def test_revoked_gateway_rejected_history_readable(env: Env) -> None:
    root = rnd_root()
    env.anchor(1, root, 1, 5)
    receipt = env.reg.revoke_gateway(GW, env.customs)
    info = env.reg.gateway(GW)
    assert info is not None and info.revoked_at == receipt["blockNumber"]
    assert (info.last_batch, info.next_seq) == (1, 6)
    with pytest.raises(ContractRevert) as excinfo:
        env.anchor(2, rnd_root(), 6, 1)
    assert revert_name(excinfo) == "RevokedGateway"
    with pytest.raises(ContractRevert) as excinfo:
        env.reg.revoke_gateway(GW, env.customs)
    assert revert_name(excinfo) == "AlreadyRevoked"
    assert env.reg.root(GW, 1) == root
    ev = env.reg.anchor_event(GW, 1)
    assert ev is not None and ev.root == root
    assert env.reg.gateway_of(env.submitter.address) == keccak(GW.encode())
    assert info.last_trusted_batch == 1  # default: every batch anchored before revocation
    assert info.trusts_batch(1) and not info.trusts_batch(2)


@pytest.mark.parametrize(("asked", "trusted"), [(0, 0), (2, 2), (3, 3), (7, 3), (2**64 - 1, 3)])
def test_revocation_says_which_batches_stay_trusted(env: Env, asked: int, trusted: int) -> None:
    for batch in range(1, 4):
        env.anchor(batch, rnd_root(), 1 + (batch - 1) * 2, 2)
    receipt = env.reg.revoke_gateway(GW, env.customs, last_trusted_batch=asked)
    info = env.reg.gateway(GW)
    assert info is not None and info.revoked and info.last_trusted_batch == trusted
    assert (info.last_batch, info.next_seq) == (3, 7)  # the packed state is intact
    assert [info.trusts_batch(b) for b in range(1, 5)] == [b <= trusted for b in range(1, 5)]
    event = env.reg.contract.events.GatewayRevoked().process_receipt(receipt)[0]["args"]
    assert (event["revokedAt"], event["lastTrustedBatch"]) == (receipt["blockNumber"], trusted)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        env.reg.revoke_gateway(GW, env.customs, last_trusted_batch=-1)


def test_raw_tx_fields_and_replacement_fees(env: Env) -> None:
    raw, tx_hash = env.reg.build_anchor_tx(env.submitter, 1, rnd_root(), 1, 1, nonce=7)
    decoded = tx.decode_raw(raw)
    assert (decoded.nonce, decoded.hash, decoded.fees.legacy) == (7, tx_hash, False)
    legacy, _ = env.reg.build_anchor_tx(env.submitter, 1, rnd_root(), 1, 1, nonce=3,
                                        gas_price=1_000)
    assert (tx.decode_raw(legacy).fees, tx.decode_raw(legacy).nonce) == (tx.Fees(1_000), 3)
    bumped = decoded.fees.bumped()
    assert bumped.max_fee >= decoded.fees.max_fee * 1.1 and bumped.tip >= decoded.fees.tip * 1.1  # type: ignore[operator]
    assert tx.Fees(gas_price=100).bumped(tx.Fees(gas_price=500)) == tx.Fees(gas_price=500)
    assert tx.Fees(gas_price=0).bumped().gas_price == 1
    with pytest.raises(ValueError, match=r"unsupported transaction type"):
        tx.decode_raw(b"\x01\x02")


def test_send_raw_is_idempotent_and_detects_stolen_nonce(env: Env) -> None:
    raw, tx_hash = env.reg.build_anchor_tx(env.submitter, 1, rnd_root(), 1, 2, nonce=0)
    assert env.reg.send_raw(raw) == tx_hash
    assert env.reg.send_raw(raw) == tx_hash  # re-broadcast after a crash: same hash, no error
    ev = env.reg.receipt_event(tx_hash)
    assert ev is not None and ev.batch_seq == 1
    other, _ = env.reg.build_anchor_tx(env.submitter, 2, rnd_root(), 3, 2, nonce=0)
    with pytest.raises(NonceConsumed):
        env.reg.send_raw(other)
    assert env.reg.receipt_event(b"\x12" * 32) is None  # unknown/pending


def test_legacy_tx_with_explicit_gas_price(env: Env) -> None:
    base_fee = env.w3.eth.get_block("latest")["baseFeePerGas"]
    raw, tx_hash = env.reg.build_anchor_tx(
        env.submitter, 1, rnd_root(), 1, 1, nonce=0, gas_price=2 * base_fee + 1
    )
    env.reg.send_raw(raw)
    receipt = env.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["type"] == 0 and receipt["status"] == 1
    with pytest.raises(ValueError, match="32 bytes"):
        env.reg.build_anchor_tx(env.submitter, 2, b"\x01", 2, 1, nonce=1)


def test_artifact_matches_fresh_solcjs_build() -> None:
    from ledger_client.contracts import build

    if shutil.which(build.SOLCJS) is None:
        if os.environ.get("CI"):  # CI installs solcjs: a skip there would hide a stale artifact
            pytest.fail(f"solcjs not installed ({build.INSTALL_HINT})")
        pytest.skip(f"solcjs not installed ({build.INSTALL_HINT})")
    fresh = build.build()
    assert build.check(fresh) == [], "run: python -m ledger_client.contracts.build"
    art = chain.load_artifact()
    assert art["settings"]["evmVersion"] == "paris"
    assert art["compiler"].startswith(build.SOLC_VERSION + "+")
