"""E-seal authentication: MAC with the seal's key, a counter that must go up, across restarts.

A seal message is only a reading once it proves two things: it was made with the seal's key
(HMAC), and it is new (its counter beats the last one this gateway accepted from that seal).
The counter lives in the journal and moves in the same transaction as the reading that moved
it, so a power cut can neither forget it (a replay after restart would pass) nor advance it
past a reading that was lost.

A forged or replayed message is never stored as a reading. It is counted and raised as a
sensorAuthFailure alert, at a bounded rate per seal so that an attacker flooding forgeries
fills neither the journal nor customs' screen (with ``alert_interval_s = 0``, every distinct
message; copies of one message raise one alert, whenever they come). A message from a seal we
hold no key for is reported as a status record, never trusted.

MQTT brings one benign repeat: a QoS 1 message the broker sends again because our
acknowledgement never reached it (we ack only after commit, so a crash or a dropped link in
between causes it). The broker marks such a copy DUP and, by MQTT section 4.4, re-sends it with
its original packet id. So a duplicate is a DUP copy whose content *and* packet id are those of
a message we accepted; a third party republishing an old message gets a packet id of its own,
even when a crash makes the broker redeliver that copy too.

Which accepted messages can come back so? Only those whose acknowledgement the broker may not
have processed. That is not bounded by the broker's send window (Mosquitto 2.0.11 sends a
whole backlog at once after the first acknowledgements, Receive Maximum or not), so the MQTT
source learns which acknowledgements arrived: it sends a PINGREQ after each batch of PUBACKs,
and the broker answers packets in order, so its PINGRESP confirms them (`confirm()`). In
memory the authenticator keeps the accepted deliveries not confirmed yet (at most ``recent``).

They must also survive a crash, and what is written per reading is what an SD card pays for:
the MQTT source asks `remember()` once per batch it received and commits the row it gets
(``seal-recent/<slot>`` = batch number and, per accepted delivery, its packet id and the first
6 bytes of its MAC: 16 hex digits) with that batch's first reading; the last ``RING_ROWS``
batches are kept. After a restart the newest ``recent`` deliveries of those rows are matched,
by MAC, with the seal readings at the end of the journal, which hold the rest (seal, counter,
MAC), and kept until the broker has finished redelivering (its first message without DUP, or
the first confirmation on the new connection). Besides that, a reading updates one small
counter row per seal (``seal/<id>`` = ``{"ctr": N}``), where the per-seal list this replaces
rewrote a kilobyte per reading. On a serial line, where nothing is resent, any old counter is a
replay.
"""

from __future__ import annotations

import hmac
import json
import stat
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.journal import Draft, Journal
from edge_agent.sources.seal_codec import SEAL_ID_RE, MacKey, SealMessage
from edge_agent.stats import ComponentStats, split

ALERT_NAMESPACE = uuid.UUID("6f1d3c2e-5a1b-5c7d-9e8f-5ea17a11e002")
RECENT = 16384
"""At most this many accepted MQTT deliveries are remembered (unconfirmed ones, and after a
restart the newest ones committed): see the module docstring."""
RING = "seal-recent/"
RING_ROWS = 256  # batches whose deliveries are kept in the state table
RAISED_MEMORY = 4096
NOT_DROPPED = frozenset({"duplicate", "unknown_seal"})
"""A redelivery recognised as one, and a seal we hold no key for (reported as an untrusted
``unknownSeal`` status, so it is not lost); a bad MAC or a replay is a drop."""


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
                 monotonic: Callable[[], float] = time.monotonic, recent: int = RECENT):
        self.journal = journal
        self.keys = keys
        self.alert_interval_s = alert_interval_s
        self.unknown_report_s = unknown_report_s
        self.clock = clock
        self.monotonic = monotonic
        self.recent_window = recent
        self.counts: Counter[str] = Counter()
        self.by_via: dict[str, Counter[str]] = {}  # the same, per source (several share us)
        self._macs: dict[str, MacKey] = {}  # keys set up for HMAC, as seals are heard
        self._seals: dict[str, _SealState] = {}
        self._unknown_reported: dict[str, float] = {}
        self._raised: dict[str, None] = {}  # alert ids raised, oldest first (bounded)
        self._ring: deque[tuple[str, int]] = deque()  # (seal, ctr) not confirmed, in order
        self._old: deque[tuple[str, int]] = deque()  # from a previous connection or process
        self._ring_saved: dict[str, dict[int, str]] = {}  # seal -> ctr -> ident, from the ring
        self._unsaved: list[str] = []  # deliveries accepted since the last remember()
        self._batch = self._load_ring()

    def remember(self) -> dict[str, str]:
        """The state row recording the deliveries accepted since the last call, to commit with
        the first reading of that batch (see the module docstring); {} if there were none."""
        if not self._unsaved:
            return {}
        n, self._batch = self._batch, self._batch + 1
        row, self._unsaved = f"{n}:{''.join(self._unsaved)}", []
        return {f"{RING}{n % RING_ROWS:05d}": row}

    def confirm(self, count: int) -> None:
        """The broker has processed the acknowledgements of the oldest `count` accepted
        deliveries not confirmed yet: they cannot come back, forget them."""
        for _ in range(min(count, len(self._ring))):
            self._forget(*self._ring.popleft())

    def new_connection(self) -> None:
        """A new MQTT connection: what is unconfirmed may be redelivered on it, once."""
        self._old.extend(self._ring)
        self._ring.clear()

    def redeliveries_over(self) -> None:
        """The broker has redelivered what it had unacknowledged (a message without DUP, or a
        confirmation on the new connection): deliveries older than it are not needed."""
        while self._old:
            self._forget(*self._old.popleft())

    def _load_ring(self) -> int:
        """The recent deliveries committed before a restart; the next batch number."""
        rows = []
        for value in self.journal.states(RING).values():
            n, _, blob = value.partition(":")
            rows.append((int(n), blob))
        rows.sort(reverse=True)
        wanted: dict[str, int] = {}  # MAC prefix (hex) -> packet id, newest first
        for _n, blob in rows:
            for i in range(len(blob) - 16, -1, -16):
                wanted.setdefault(blob[i + 4:i + 16], int(blob[i:i + 4], 16))
            if len(wanted) >= self.recent_window:
                break
        found: list[tuple[str, int, str]] = []
        before, left = None, 4 * self.recent_window  # read back from the head, 2048 at a time
        while wanted and left > 0:
            chunk = self.journal.last_of_kind("seal", min(2048, left), before)
            for stored in chunk:
                body = stored.body()
                pid = wanted.pop(body["mac"][:12], None) if body.get("via") == "mqtt" else None
                if pid is not None:
                    found.append((body["seal_id"], body["ctr"], f"{pid}:{body['mac'][:16]}"))
            if not chunk:
                break
            before, left = chunk[-1].seq, left - len(chunk)
        for seal_id, ctr, ident in reversed(found[:self.recent_window]):
            self._old.append((seal_id, ctr))
            self._ring_saved.setdefault(seal_id, {})[ctr] = ident
        return rows[0][0] + 1 if rows else 0

    def _state(self, seal_id: str) -> _SealState:
        st = self._seals.get(seal_id)
        if st is None:
            saved = self.journal.state(state_key(seal_id))
            st = _SealState()
            if saved is not None:
                doc = json.loads(saved)
                st.ctr = int(doc["ctr"])
                for entry in filter(None, doc.get("recent", "").split(";")):  # older journals
                    ctr, _, ident = entry.partition(",")
                    st.recent[int(ctr)] = ident
            st.recent.update(self._ring_saved.pop(seal_id, {}))
            self._seals[seal_id] = st
        return st

    def last_counter(self, seal_id: str) -> int:
        return self._state(seal_id).ctr

    def check(self, msg: SealMessage, via: str, *, packet_id: int | None = None,
              redelivered: bool = False) -> list[Draft]:
        """The drafts one decoded message turns into: a reading, an alert, a report, or none.

        ``packet_id`` is the MQTT packet id (None on serial); ``redelivered`` is the broker's
        DUP flag, saying this may be a resend of something we received before."""
        key = self._macs.get(msg.seal_id)
        if key is None:
            raw = self.keys.get(msg.seal_id)
            if raw is None:
                return self._unknown(msg, via)
            key = self._macs[msg.seal_id] = MacKey(raw)
        if not hmac.compare_digest(msg.expected_mac(key), msg.mac):
            return self._failure(msg, via, "bad_mac")
        st = self._state(msg.seal_id)
        if msg.ctr <= st.ctr:
            if redelivered and st.recent.get(msg.ctr) == _ident(msg, packet_id):
                self._count(via, "duplicate")
                return []
            return self._failure(msg, via, "replay")
        st.ctr = msg.ctr
        self._count(via, "accepted")
        # built by hand: this runs for every reading and is committed with it
        state = {state_key(msg.seal_id): f'{{"ctr":{st.ctr}}}'}
        if packet_id is not None:  # only what can be redelivered needs remembering
            st.recent[msg.ctr] = _ident(msg, packet_id)
            self._unsaved.append(f"{packet_id:04x}{msg.mac[:6].hex()}")
            self._ring.append((msg.seal_id, msg.ctr))
            if len(self._ring) + len(self._old) > self.recent_window:  # bounded, whatever
                self._forget(*(self._old or self._ring).popleft())
        return [Draft(self.clock(), "seal", msg.seal_id, msg.body(via), state=state)]

    def _forget(self, seal_id: str, ctr: int) -> None:
        st = self._seals.get(seal_id)
        if st is not None:
            st.recent.pop(ctr, None)
        else:
            self._ring_saved.get(seal_id, {}).pop(ctr, None)

    def _count(self, via: str, outcome: str) -> None:
        self.counts[outcome] += 1
        self.by_via.setdefault(via, Counter())[outcome] += 1

    def stats(self, via: str, *, decoded: int, rejected: Mapping[str, int]) -> ComponentStats:
        """A seal source's figures: the messages it decoded, the readings accepted from it,
        what its decoder rejected (``rejected``) and what failed authentication here."""
        counts = dict(self.by_via.get(via, {}))
        accepted = counts.pop("accepted", 0)
        dropped, events = split(counts, NOT_DROPPED, "auth_")
        return ComponentStats(added=decoded, written=accepted, dropped={**rejected, **dropped},
                              events=events)

    def _unknown(self, msg: SealMessage, via: str) -> list[Draft]:
        self._count(via, "unknown_seal")
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
        self._count(via, reason)
        st = self._state(msg.seal_id)
        now = self.monotonic()
        if now - st.last_alert < self.alert_interval_s:
            st.suppressed += 1
            return []
        alert = _auth_alert(self.journal.gateway_id, msg, via, reason, st, self.clock())
        alert_id = alert.body["alert_id"]
        if alert_id in self._raised or self.journal.alert_seq(alert_id) is not None:
            return []  # the same message raised it already (perhaps not committed yet)
        self._raised[alert_id] = None
        if len(self._raised) > RAISED_MEMORY:
            del self._raised[next(iter(self._raised))]
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
