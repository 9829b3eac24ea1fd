"""E-seal authentication: MAC with the seal's key, a counter that must go up, across restarts.

A seal message is only a reading once it proves two things: it was made with the seal's key
(HMAC), and it is new (its counter beats the last one this gateway accepted from that seal).
The counter lives in the journal and moves in the same transaction as the reading that moved
it, so a power cut can neither forget it (a replay after restart would pass) nor advance it
past a reading that was lost.

A forged or replayed message is never stored as a reading. It is counted and raised as a
sensorAuthFailure alert, at a bounded rate per seal so that an attacker flooding forgeries
fills neither the journal nor customs' screen. A message from a seal we hold no key for is
reported as a status record, never trusted.

MQTT brings one benign repeat: a QoS 1 message the broker sends again because our
acknowledgement never reached it (we ack only after commit, so a crash or a dropped link in
between causes it). The broker marks such a copy DUP and, by MQTT 3.1.1 section 4.4, re-sends
it with its original packet id. So a duplicate is a DUP copy whose content *and* packet id are
those of a message we accepted; a third party republishing an old message gets a packet id of
its own, even when a crash makes the broker redeliver that copy too. The recent accepted
messages per seal are kept in the journal with the counter, so this holds across a crash.
On a serial line, where nothing is ever resent, any old counter is a replay.
"""

from __future__ import annotations

import hmac
import json
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.journal import Draft, Journal
from edge_agent.sources.seal_codec import SEAL_ID_RE, SealMessage

ALERT_NAMESPACE = uuid.UUID("6f1d3c2e-5a1b-5c7d-9e8f-5ea17a11e002")
RECENT = 32
"""Accepted messages remembered per seal for recognising a redelivery: more than a broker holds
unacknowledged per client (Mosquitto's max_inflight_messages defaults to 20)."""


class KeystoreError(Exception):
    """The seal keystore file is missing, unreadable, too open, or malformed."""


def load_keystore(path: str | Path) -> dict[str, bytes]:
    """``{"version": 1, "seals": {"<seal_id>": "<64 hex>"}}``; must not be group/other readable."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"{path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeystoreError(f"{path}: permissions {stat.filemode(mode)} are too open; seal keys "
                            "are secrets (chmod 600)")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise KeystoreError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("seals"),
                                                                             dict):
        raise KeystoreError(f'{path}: expected {{"version": 1, "seals": {{...}}}}')
    keys: dict[str, bytes] = {}
    for seal_id, key_hex in doc["seals"].items():
        if SEAL_ID_RE.fullmatch(seal_id) is None:
            raise KeystoreError(f"{path}: seals.{seal_id}: not a valid seal id")
        try:
            key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise KeystoreError(f"{path}: seals.{seal_id}: key must be 64 hex digits (32 bytes)")
        keys[seal_id] = key
    return keys


@dataclass(slots=True)
class _SealState:
    ctr: int = 0
    recent: dict[int, str] = field(default_factory=dict)  # ctr -> "<packet id>:<mac prefix>"
    last_alert: float = float("-inf")
    suppressed: int = 0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SealAuthenticator:
    """Shared by every seal source of one agent (a seal may move from a reader to MQTT)."""

    def __init__(self, journal: Journal, keys: dict[str, bytes], *,
                 alert_interval_s: float = 60.0, unknown_report_s: float = 3600.0,
                 clock: Callable[[], int] = _wall_ms,
                 monotonic: Callable[[], float] = time.monotonic):
        self.journal = journal
        self.keys = keys
        self.alert_interval_s = alert_interval_s
        self.unknown_report_s = unknown_report_s
        self.clock = clock
        self.monotonic = monotonic
        self.counts: Counter[str] = Counter()
        self._seals: dict[str, _SealState] = {}
        self._unknown_reported: dict[str, float] = {}

    def _state(self, seal_id: str) -> _SealState:
        st = self._seals.get(seal_id)
        if st is None:
            saved = self.journal.state(state_key(seal_id))
            st = _SealState()
            if saved is not None:
                doc = json.loads(saved)
                st.ctr = int(doc["ctr"])
                for entry in filter(None, doc.get("recent", "").split(";")):
                    ctr, _, ident = entry.partition(",")
                    st.recent[int(ctr)] = ident
            self._seals[seal_id] = st
        return st

    def last_counter(self, seal_id: str) -> int:
        return self._state(seal_id).ctr

    def check(self, msg: SealMessage, via: str, *, packet_id: int | None = None,
              redelivered: bool = False) -> list[Draft]:
        """The drafts one decoded message turns into: a reading, an alert, a report, or none.

        ``packet_id`` is the MQTT packet id (None on serial); ``redelivered`` is the broker's
        DUP flag, saying this may be a resend of something we received before."""
        key = self.keys.get(msg.seal_id)
        if key is None:
            return self._unknown(msg, via)
        if not hmac.compare_digest(msg.expected_mac(key), msg.mac):
            return self._failure(msg, via, "bad_mac")
        st = self._state(msg.seal_id)
        if msg.ctr <= st.ctr:
            if redelivered and st.recent.get(msg.ctr) == _ident(msg, packet_id):
                self.counts["duplicate"] += 1
                return []
            return self._failure(msg, via, "replay")
        st.ctr = msg.ctr
        if packet_id is not None:  # only what can be redelivered needs remembering
            st.recent[msg.ctr] = _ident(msg, packet_id)
            if len(st.recent) > RECENT:
                del st.recent[min(st.recent)]
        self.counts["accepted"] += 1
        # built by hand: this runs for every reading and is committed with it
        recent = ";".join([f"{c},{i}" for c, i in st.recent.items()]) if st.recent else ""
        saved = f'{{"ctr":{st.ctr},"recent":"{recent}"}}'
        return [Draft(self.clock(), "seal", msg.seal_id, msg.body(via),
                      state={state_key(msg.seal_id): saved})]

    def _unknown(self, msg: SealMessage, via: str) -> list[Draft]:
        self.counts["unknown_seal"] += 1
        now = self.monotonic()
        if now - self._unknown_reported.get(msg.seal_id, float("-inf")) < self.unknown_report_s:
            return []
        if len(self._unknown_reported) > 10_000:  # bounded, even under a flood of made-up ids
            self._unknown_reported.clear()
        self._unknown_reported[msg.seal_id] = now
        return [Draft(self.clock(), "status", msg.seal_id, {
            "event": "unknownSeal", "seal_id": msg.seal_id, "via": via,
            "message": msg.wire_text(), "trusted": False})]

    def _failure(self, msg: SealMessage, via: str, reason: str) -> list[Draft]:
        self.counts[reason] += 1
        st = self._state(msg.seal_id)
        now = self.monotonic()
        if now - st.last_alert < self.alert_interval_s:
            st.suppressed += 1
            return []
        alert = _auth_alert(self.journal.gateway_id, msg, via, reason, st, self.clock())
        if self.journal.alert_seq(alert.body["alert_id"]) is not None:
            return []  # the same message raised it before a restart: once is enough
        st.last_alert, st.suppressed = now, 0
        return [alert]


def _ident(msg: SealMessage, packet_id: int | None) -> str:
    """What identifies one delivery: the packet id and (enough of) the MAC of its content."""
    return f"{packet_id}:{msg.mac[:8].hex()}"


def state_key(seal_id: str) -> str:
    return f"seal/{seal_id}"


def _auth_alert(gateway_id: str, msg: SealMessage, via: str, reason: str, st: _SealState,
                t_ms: int) -> Draft:
    identity = f"{gateway_id}/sensorAuthFailure/{msg.seal_id}/{reason}/{msg.ctr}/{msg.mac.hex()}"
    details: dict[str, Any] = {
        "reason": reason,
        "via": via,
        "message": msg.wire_text(),
        "last_accepted_ctr": st.ctr,
        "suppressed_since_last_alert": st.suppressed,
    }
    body = {
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, identity)),
        "type": "sensorAuthFailure",
        "severity": "critical",
        "asset": {"seal": msg.seal_id},
        "plan_id": None,
        "evidence": [],  # the message is untrusted, so it is quoted in details, not stored
        "details": details,
    }
    return Draft(t_ms, "alert", "seal-auth", body)
