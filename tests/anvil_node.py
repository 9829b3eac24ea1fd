"""A real anvil node (npm @foundry-rs/anvil) on a free loopback port, driven the way the ledger
integration tests need: stop and restart it with its state, kill it, mine, turn automine off,
drop a pending transaction, reorganise the chain.

Every wait here polls for a condition with a deadline; nothing sleeps a fixed time to "let it
settle". Keys are made at run time and funded with anvil_setBalance: no key is committed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger_client import chain

T = TypeVar("T")
ANVIL = os.environ.get("SEALTRAIL_ANVIL") or shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class AnvilNode:
    """One anvil process; `stop`/`start` keep the chain (via --state), `kill` loses nothing
    already dumped and models a node that vanished."""

    def __init__(self, workdir: Path, *, chain_id: int = 31337,
                 extra_args: tuple[str, ...] = ()) -> None:
        if ANVIL is None:
            raise RuntimeError("anvil not found: npm install -g @foundry-rs/anvil")
        self.workdir = workdir
        self.chain_id = chain_id
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = workdir / f"anvil-{self.port}.json"
        self.log = workdir / f"anvil-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._w3: Web3 | None = None

    # -- process ---------------------------------------------------------------------------
    def start(self) -> AnvilNode:
        assert ANVIL is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [ANVIL, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id",
                 str(self.chain_id), "--accounts", "1", "--state", str(self.state),
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, 20, f"anvil on {self.url}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"anvil exited ({self.proc.returncode}): "
                               f"{self.log.read_text(errors='replace')[-2000:]}")
        try:
            return self.rpc("eth_chainId") == hex(self.chain_id)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Graceful: anvil writes its --state file and exits (the wrapper forwards SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def kill(self) -> None:
        """The node vanishes at once (SIGKILL to the process group this node started)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None

    # -- RPC ---------------------------------------------------------------------------------
    def rpc(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            answer = json.loads(reply.read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            self._w3 = chain.connect(self.url)
        return self._w3

    def account(self, wei: int = 10**20) -> LocalAccount:
        """A key made now, funded by the node: tests never hold a committed key."""
        account: LocalAccount = Account.create()
        self.rpc("anvil_setBalance", account.address, hex(wei))
        return account

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def automine(self, on: bool) -> None:
        self.rpc("evm_setAutomine", on)

    def pending(self, address: str | None = None) -> list[dict[str, Any]]:
        """Transactions in the node's pool (optionally of one sender)."""
        content = self.rpc("txpool_content")["pending"]
        txs = [t for by_nonce in content.values() for t in by_nonce.values()]
        if address is not None:
            txs = [t for t in txs if t["from"].lower() == address.lower()]
        return txs

    def drop(self, tx_hash: str) -> None:
        self.rpc("anvil_dropTransaction", tx_hash)

    def reorg(self, depth: int, txs: list[tuple[str, int]] | None = None) -> None:
        """Replace the last `depth` blocks; `txs` are (raw tx hex, new block index) pairs."""
        self.rpc("anvil_reorg", depth, [[raw, index] for raw, index in txs or []])

    @property
    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)


@contextmanager
def running(workdir: Path, *, chain_id: int = 31337,
            extra_args: tuple[str, ...] = ()) -> Iterator[AnvilNode]:
    """An anvil node for the duration of a test; killed (by its own process group) after."""
    node = AnvilNode(workdir, chain_id=chain_id, extra_args=extra_args)
    try:
        yield node.start()
    finally:
        node.kill()


def write_key(path: Path, account: LocalAccount) -> Path:
    """An EVM key file as `sealtrail ledger account --create` writes it (hex, mode 0600)."""
    path.write_text(account.key.hex().removeprefix("0x") + "\n")
    path.chmod(0o600)
    return path


def deploy_and_register(node: AnvilNode, gateway_id: str,
                        pubkey: bytes) -> tuple[chain.AnchorRegistry, LocalAccount, LocalAccount]:
    """A fresh registry (admin: a new customs key) with `gateway_id` registered to a new,
    funded submitter key. Returns (registry, customs, submitter)."""
    customs, submitter = node.account(), node.account()
    registry = chain.AnchorRegistry.deploy(node.w3, customs)
    registry.register_gateway(gateway_id, pubkey, submitter.address, customs)
    return registry, customs, submitter
