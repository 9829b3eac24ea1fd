"""A small JSON-RPC 2.0 client over HTTP(S) with batch requests: what a read-only verifier needs.

`sealtrail verify` asks a node a handful of things per evidence file (chain id, head block, the
gateway's registration, the root of each batch, the Anchored logs of a block range). Sent one by
one through web3 that was four round trips per record plus 1.5 s of imports; as one JSON-RPC
batch it is one round trip per file. Nodes may refuse batches (Besu can be configured so, proxies
sometimes do): the first refusal switches this client to single requests for good, so a batch is
an optimisation and never a requirement.

Every reply is bounded (size and nesting) before it is parsed, like anything else read from the
network. Failures become the project's errors: `Unreachable` (exit 3) when no JSON-RPC node
answers at the URL, `ChainError` (exit 1) when the node answers with an error.
"""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from ledger_client.errors import ChainError
from sealtrail import boundedjson
from sealtrail.errors import Unreachable, UsageError

MAX_REPLY_BYTES = 64 * 1024 * 1024
"""The largest reply read: eth_getLogs over a thousand batches is under 1 MB."""
MAX_BATCH = 200
"""Requests per HTTP batch: below the defaults of Besu (1024) and geth (1000)."""

Call = tuple[str, Sequence[Any]]


class HttpStatus(Unreachable):
    """The URL answers HTTP, but with an error status: not a JSON-RPC node we can use there."""


class RpcError(ChainError):
    """The node answered a request with a JSON-RPC error. `code`, `reason` (the node's
    message) and `data` (revert bytes of a failed eth_call, as the node sent them) let a
    caller tell a revert from a refused transaction without parsing our message."""

    def __init__(self, message: str, *, code: Any = None, reason: str = "",
                 data: Any = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.data = code, reason, data


class JsonRpc:
    """JSON-RPC over HTTP(S) to one node. `call` sends one request, `batch` many in one round
    trip (or one by one if the node refuses batches)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"unsupported ledger RPC URL {url!r}: use http(s)://host:port")
        self.url = url
        self.timeout = timeout
        self.batching = True  # False once the node refused a batch
        self.requests = 0  # HTTP round trips made (for the benchmark and the tests)
        self._ids = itertools.count(1)

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        request = self._request(method, params)
        return self._result(self._post(request), request)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Results of `calls`, in order; the first error reply raises ChainError."""
        results: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            chunk = [self._request(m, p) for m, p in calls[start:start + MAX_BATCH]]
            results += self._send_batch(chunk)
        return results

    def _send_batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        if len(requests) == 1 or not self.batching:
            return [self._result(self._post(r), r) for r in requests]
        try:
            replies = self._post(requests)
        except HttpStatus:
            replies = None  # some proxies and nodes answer a batch with 400 or 413
        if not isinstance(replies, list):  # one error object, or an HTTP error: no batches here
            self.batching = False
            return [self._result(self._post(r), r) for r in requests]
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        return [self._result(by_id.get(r["id"]), r) for r in requests]

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    def _post(self, payload: dict[str, Any] | list[dict[str, Any]]) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                raw = reply.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise HttpStatus(f"no JSON-RPC ledger node usable at {self.url}: it answered "
                             f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise Unreachable(f"cannot reach the ledger at {self.url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets
            raise Unreachable(f"cannot reach the ledger at {self.url}: "
                              f"{exc.__class__.__name__}: {exc}") from None
        try:
            return boundedjson.loads(raw, max_bytes=MAX_REPLY_BYTES)
        except boundedjson.JsonBoundError as exc:
            raise Unreachable(f"{self.url} does not answer as a JSON-RPC node: {exc}") from None

    def _result(self, reply: Any, request: dict[str, Any]) -> Any:
        method = request["method"]
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise ChainError(f"the ledger at {self.url} gave no answer to {method}")
        error = reply.get("error")
        if error is not None:
            message = error.get("message", error) if isinstance(error, dict) else error
            code = f" (code {error.get('code')})" if isinstance(error, dict) else ""
            raise RpcError(f"the ledger at {self.url} refused {method}: {message}{code}",
                           code=error.get("code") if isinstance(error, dict) else None,
                           reason=str(message),
                           data=error.get("data") if isinstance(error, dict) else None)
        return reply["result"]
