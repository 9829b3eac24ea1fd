"""The raw JSON-RPC reader `sealtrail verify` uses, held equal to the web3 client on a real anvil
node: the same registration, roots and Anchored logs, one round trip for a whole file's
lookups, windows no wider than the node allows, a log found where a reorg moved it, a node that
refuses batch requests, and endpoints that are not JSON-RPC nodes at all.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from anvil_node import AnvilNode, free_port, running
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger_client import abi, chain
from ledger_client.errors import ChainError
from ledger_client.keys import public_hex
from ledger_client.merkle import MerkleTree
from ledger_client.reader import RegistryReader
from ledger_client.rpc import JsonRpc
from sealtrail.errors import Unreachable, UsageError

pytestmark = pytest.mark.integration
GW = "gw-reader"


@dataclass
class Ledger:
    node: AnvilNode
    registry: chain.AnchorRegistry
    blocks: dict[int, int]  # batch_seq -> block of its anchor


def _anchor(registry: chain.AnchorRegistry, submitter: LocalAccount, batch_seq: int,
            first_seq: int, size: int) -> int:
    leaves = [b'{"seq":%d}' % s for s in range(first_seq, first_seq + size)]
    nonce = registry.w3.eth.get_transaction_count(submitter.address)
    raw, tx_hash = registry.build_anchor_tx(submitter, batch_seq,
                                            MerkleTree.from_leaves(leaves).root, first_seq,
                                            size, nonce=nonce)
    registry.send_raw(raw)
    event = registry.event_from_receipt(registry.w3.eth.wait_for_transaction_receipt(tx_hash))
    return event.block_number


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Five batches of one gateway, anchored with empty blocks between them (so that they
    sit in different windows of a small log window), and a second gateway never anchored."""
    with running(tmp_path_factory.mktemp("reader")) as node:
        customs, submitter = node.account(), node.account()
        registry = chain.AnchorRegistry.deploy(node.w3, customs)
        registry.register_gateway(GW, bytes.fromhex(public_hex(Ed25519PrivateKey.generate())),
                                  submitter.address, customs)
        registry.register_gateway("gw-idle", bytes.fromhex(public_hex(
            Ed25519PrivateKey.generate())), node.account().address, customs)
        blocks = {}
        for batch in range(1, 6):
            blocks[batch] = _anchor(registry, submitter, batch, 1 + (batch - 1) * 4, 4)
            node.mine(3)
        yield Ledger(node, registry, blocks)


def reader(ledger: Ledger, **kwargs: int) -> RegistryReader:
    return RegistryReader(JsonRpc(ledger.node.url), ledger.registry.address, **kwargs)


def test_the_reader_reads_what_web3_reads(ledger: Ledger) -> None:
    r = reader(ledger)
    assert r.chain_id == ledger.registry.chain_id == 31337
    r.check_deployed()
    for gw in (GW, "gw-idle", "gw-never-registered"):
        assert r.gateway(gw) == ledger.registry.gateway(gw)
    assert r.gateway("gw-never-registered") is None
    for batch in range(1, 7):
        assert r.root(GW, batch) == ledger.registry.root(GW, batch)
        assert r.anchor_event(GW, batch) == ledger.registry.anchor_event(GW, batch)
    assert r.root(GW, 6) is None and r.anchor_event(GW, 6) is None
    assert r.head_block() == ledger.node.head


def test_one_round_trip_for_everything_a_file_needs(ledger: Ledger) -> None:
    r = reader(ledger)
    anchors = {(GW, b, n) for b, n in ledger.blocks.items()}
    r.prefetch([GW, "gw-idle"], anchors)
    assert r.rpc.requests == 1
    for batch, block in ledger.blocks.items():
        event = r.anchor_event(GW, batch, block_number=block)
        assert event == ledger.registry.anchor_event(GW, batch) and event is not None
        assert r.root(GW, batch) == event.root
    assert r.gateway(GW) is not None and r.gateway("gw-idle") is not None
    r.head_block()
    assert r.rpc.requests == 1  # every lookup above came from the cache


def test_log_windows_are_never_wider_than_the_node_allows(ledger: Ledger) -> None:
    """With a window of 2 blocks, anchors 4 blocks apart each need their own eth_getLogs;
    all of them still go out in the one batch."""
    r = reader(ledger, log_window=2)
    blocks = sorted(ledger.blocks.values())
    assert r._windows(blocks) == [(n, n) for n in blocks]
    assert reader(ledger, log_window=5)._windows(blocks) == [
        (blocks[0], blocks[1]), (blocks[2], blocks[3]), (blocks[4], blocks[4])]
    r.prefetch([GW], {(GW, b, n) for b, n in ledger.blocks.items()})
    assert r.rpc.requests == 1
    assert all(r.anchor_event(GW, b) is not None for b in ledger.blocks)
    assert r.rpc.requests == 1


def test_a_log_that_is_not_where_the_proof_says_is_searched_for(ledger: Ledger) -> None:
    """A reorg moves an anchor to another block; the proof still names the old one."""
    r = reader(ledger, log_window=2)
    wrong = ledger.blocks[2] + 1  # an empty block
    r.prefetch([GW], {(GW, 2, wrong)})
    event = r.anchor_event(GW, 2, block_number=wrong)
    assert event is not None and event.block_number == ledger.blocks[2]
    assert r.anchor_event(GW, 99, block_number=wrong) is None  # searched back to block 0


class _NoBatchProxy(http.server.BaseHTTPRequestHandler):
    """A node configured to refuse batch requests (as Besu can be, or a proxy in front of
    one): a JSON array gets a JSON-RPC error; single requests are passed to anvil."""

    upstream = ""
    batches_refused = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if body.startswith(b"["):
            type(self).batches_refused += 1
            reply = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "batch requests are disabled"}}).encode()
        else:
            request = urllib.request.Request(self.upstream, body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as upstream:
                reply = upstream.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[list[http.server.HTTPServer]]:
    servers: list[http.server.HTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _start(servers: list[http.server.HTTPServer],
           handler: type[http.server.BaseHTTPRequestHandler]) -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_node_that_refuses_batches_is_asked_one_request_at_a_time(
        ledger: Ledger, serve: list[http.server.HTTPServer]) -> None:
    proxy = type("Proxy", (_NoBatchProxy,), {"upstream": ledger.node.url})
    r = RegistryReader(JsonRpc(_start(serve, proxy)), ledger.registry.address)
    r.prefetch([GW], {(GW, b, n) for b, n in ledger.blocks.items()})
    assert proxy.batches_refused == 1 and not r.rpc.batching
    for batch in ledger.blocks:
        assert r.anchor_event(GW, batch) == ledger.registry.anchor_event(GW, batch)
    assert r.gateway(GW) == ledger.registry.gateway(GW)
    requests = r.rpc.requests
    r.prefetch([GW], {(GW, 1, ledger.blocks[1])})  # all cached: nothing asked
    assert r.rpc.requests == requests and proxy.batches_refused == 1


def test_endpoints_that_are_no_json_rpc_node(ledger: Ledger,
                                             serve: list[http.server.HTTPServer]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable, match=f"cannot reach the ledger at {closed}"):
        JsonRpc(closed).call("eth_chainId")
    web_page = _start(serve, http.server.SimpleHTTPRequestHandler)  # answers POST with 501
    with pytest.raises(Unreachable, match=f"{web_page}.*HTTP 501"):
        JsonRpc(web_page).call("eth_chainId")
    with pytest.raises(UsageError, match="use http"):
        JsonRpc("ws://127.0.0.1:8546")
    with pytest.raises(ChainError, match="refused eth_noSuchMethod"):
        JsonRpc(ledger.node.url).call("eth_noSuchMethod")
    empty = RegistryReader(JsonRpc(ledger.node.url), "0x" + "11" * 20)
    with pytest.raises(ChainError, match="no contract at 0x1111"):
        empty.check_deployed()


def test_ids_selectors_and_addresses_match_web3() -> None:
    contract = Web3().eth.contract(abi=chain.load_artifact()["abi"])
    key = abi.gateway_key(GW)
    assert key == Web3.keccak(text=GW)
    assert abi.call_gateway_info(GW) == contract.encode_abi("gatewayInfo", args=[key])
    assert abi.call_roots(GW, 7) == contract.encode_abi("roots", args=[key, 7])
    assert Web3.keccak(text=abi.ANCHORED_SIG) == abi.ANCHORED_TOPIC
    for _ in range(20):
        address = Account.create().address
        assert abi.to_checksum(address.lower()) == address == Web3.to_checksum_address(address)
        assert abi.is_address(address) and abi.is_address(address.lower())
        letter = next(i for i in range(41, 1, -1) if address[i].isalpha())
        mangled = address[:letter] + address[letter].swapcase() + address[letter + 1:]
        assert not abi.is_address(mangled) and not Web3.is_checksum_address(mangled)
    assert not abi.is_address("0x1234") and not abi.is_address(None)


def test_replies_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(abi.AbiError, match="expected 8 words"):
        abi.decode_gateway_info("0x" + "00" * 32)
    with pytest.raises(abi.AbiError, match="not hex"):
        abi.decode_root("0xzz")
    with pytest.raises(abi.AbiError, match="3 topics"):
        abi.decode_anchored({"topics": [], "data": "0x"})
