"""Which gateway keys the customs receiver trusts: a trust file, or the ledger's registry.

The receiver never takes a key from the message it is checking (a forger would bring his own);
the key comes from something customs controls. Two sources:

* a trust file, JSON ``{"gateways": {"<gw id>": "<Ed25519 public key hex>"}}``, for a site
  without a ledger node. It is re-read when it changes (mtime and size), so a gateway can be
  added without restarting the receiver; a file that fails to parse on re-read is logged and the
  previous contents are kept (an editor's half-written file must not untrust every gateway).
* the anchor registry on the ledger (``AnchorRegistry.gateway``): the registered key and its
  revocation. Answers are cached for ``ttl_s`` seconds, because one JSON-RPC round trip per
  alert would tie the receiver's rate to the node's latency; so a revocation takes effect within
  ``ttl_s``. When the node cannot be reached, the last answer is used (logged), and a gateway
  never looked up before is "trust unavailable": the message is quarantined and re-checked once
  the node answers (``Receiver.recheck``), never silently accepted.

A revoked gateway is untrusted for live alerts outright: the contract refuses its anchors from
the revocation on, so nothing it sends now can ever be proven; alerts already received from it
before the revocation keep the verification they had when they arrived.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealtrail.errors import UsageError
from sealtrail.ratelog import RateLimitedLog

if TYPE_CHECKING:  # web3: loaded by whoever builds the registry, not by every receiver
    from ledger_client.chain import AnchorRegistry, GatewayInfo

log = logging.getLogger(__name__)

UNKNOWN_GATEWAY = "unknown_gateway"
REVOKED_GATEWAY = "revoked_gateway"
TRUST_UNAVAILABLE = "trust_unavailable"


class TrustError(UsageError):
    """A trust file or ledger setting that cannot be used; the message names it and why."""


class Untrusted(Exception):
    """No key to verify this gateway's records with; ``reason`` is a quarantine reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TrustedKey:
    gateway_id: str
    public_key: Ed25519PublicKey
    public_hex: str
    source: str  # where the key came from, stored with each verified alert


class Trust(Protocol):
    """A source of gateway keys; ``key_for`` raises Untrusted rather than returning None."""

    def key_for(self, gateway_id: str) -> TrustedKey: ...

    def describe(self) -> str: ...


def parse_trust(text: str, source: str) -> dict[str, str]:
    """Validate a trust document; returns {gateway id: lowercase public key hex}."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrustError(f"{source}: not JSON ({exc})") from None
    gateways = doc.get("gateways") if isinstance(doc, dict) else None
    if not isinstance(gateways, dict):
        raise TrustError(f'{source}: expected {{"gateways": {{"<gateway id>": "<public key '
                         'hex>"}}}}')
    out: dict[str, str] = {}
    for gw, pub in gateways.items():
        if not gw:
            raise TrustError(f"{source}: empty gateway id")
        if not isinstance(pub, str):
            raise TrustError(f"{source}: gateway {gw!r}: public key must be a hex string")
        pub_hex = pub.lower().removeprefix("0x")
        try:
            raw = bytes.fromhex(pub_hex)
        except ValueError:
            raise TrustError(f"{source}: gateway {gw!r}: public key is not hex") from None
        if len(raw) != 32:
            raise TrustError(f"{source}: gateway {gw!r}: public key must be 32 bytes "
                             f"(64 hex digits, `sealtrail keys show`), got {len(raw)} bytes")
        out[gw] = pub_hex
    return out


def _key(gateway_id: str, pub_hex: str, source: str) -> TrustedKey:
    return TrustedKey(gateway_id, Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub_hex)),
                      pub_hex, source)


class StaticTrust:
    """A fixed {gateway: pubkey hex} map (tests, and the parsed contents of a trust file)."""

    def __init__(self, gateways: Mapping[str, str], source: str = "static trust"):
        self.source = source
        self._keys = {gw: _key(gw, pub, source) for gw, pub in gateways.items()}

    def key_for(self, gateway_id: str) -> TrustedKey:
        try:
            return self._keys[gateway_id]
        except KeyError:
            raise Untrusted(UNKNOWN_GATEWAY, f"gateway {gateway_id!r} is not in "
                                             f"{self.source}") from None

    def describe(self) -> str:
        return f"{self.source} ({len(self._keys)} gateways)"


class TrustFile:
    """The trust file, re-read when it changes; see the module docstring."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._trust = StaticTrust({}, f"trust file {self.path}")
        self._lock = threading.Lock()
        self._ratelog = RateLimitedLog(log)
        self._load(initial=True)

    def _load(self, *, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            text = self.path.read_text(encoding="utf-8")
            trust = StaticTrust(parse_trust(text, str(self.path)), f"trust file {self.path}")
        except (OSError, UnicodeDecodeError, TrustError) as exc:
            message = exc if isinstance(exc, TrustError) else f"{self.path}: {exc}"
            if initial:
                raise TrustError(str(message)) from None
            self._ratelog.warning(f"trust file {self.path}",
                                  "%s; keeping the %s", message, self._trust.describe())
            return
        if not initial:
            log.info("reloaded %s", trust.describe())
        self._trust, self._stamp = trust, stamp

    def key_for(self, gateway_id: str) -> TrustedKey:
        with self._lock:
            self._load()
            trust = self._trust
        return trust.key_for(gateway_id)

    def describe(self) -> str:
        return self._trust.describe()


@dataclass(slots=True)
class _Cached:
    info: GatewayInfo | None
    fetched: float
    key: TrustedKey | None = None  # built once per answer: key objects cost a curve decode


class LedgerTrust:
    """Keys and revocations from the anchor registry, cached; see the module docstring."""

    def __init__(self, registry: AnchorRegistry, *, ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if ttl_s < 0:
            raise TrustError(f"ledger cache ttl must be >= 0 seconds, got {ttl_s}")
        self.registry = registry
        self.ttl_s = ttl_s
        self.clock = clock
        self.source = f"ledger chain {registry.chain_id} contract {registry.address}"
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._ratelog = RateLimitedLog(log)

    def _info(self, gateway_id: str) -> tuple[_Cached, bool]:
        """(registration, stale?) from the cache or the node."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(gateway_id)
        if cached is not None and now - cached.fetched < self.ttl_s:
            return cached, False
        try:
            info = self.registry.gateway(gateway_id)
        except Exception as exc:  # web3 raises many types for a node that is down or odd
            self._ratelog.warning("ledger unreachable", "ledger: cannot look up gateway %r on "
                                  "%s: %s", gateway_id, self.source, exc)
            if cached is None:
                raise Untrusted(TRUST_UNAVAILABLE, f"gateway {gateway_id!r}: the ledger node "
                                f"cannot be reached ({type(exc).__name__}) and its key was "
                                "never looked up before") from None
            return cached, True
        entry = _Cached(info, now)
        with self._lock:
            self._cache[gateway_id] = entry
        return entry, False

    def key_for(self, gateway_id: str) -> TrustedKey:
        entry, stale = self._info(gateway_id)
        info = entry.info
        if info is None:
            raise Untrusted(UNKNOWN_GATEWAY, f"gateway {gateway_id!r} is not registered on "
                                             f"{self.source}")
        if info.revoked:
            raise Untrusted(REVOKED_GATEWAY, f"gateway {gateway_id!r} was revoked at block "
                                             f"{info.revoked_at} on {self.source}")
        if stale:
            return _key(gateway_id, info.pubkey.hex(),
                        self.source + " (cached answer: node unreachable)")
        if entry.key is None:
            entry.key = _key(gateway_id, info.pubkey.hex(), self.source)
        return entry.key

    def describe(self) -> str:
        return f"{self.source} (answers cached {self.ttl_s:g}s)"
