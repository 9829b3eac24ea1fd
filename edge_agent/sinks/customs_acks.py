"""When an alert counts as delivered: customs says it is stored, not when the broker took it.

A broker's PUBACK means the broker holds the message; a broker that crashes before saving it,
or a receiver whose session the broker lost, loses it. So the customs MQTT sink keeps every
alert pending until customs acknowledges it: a signed ``sealtrail-ack/1`` message
(ledger_client/acks.py) on ``sealtrail/v1/<gw>/acks``, retained, naming the highest alert seq
up to which customs holds every alert of this gateway (it follows the alerts' ``prev_alert``
links). `AckTracker` is that bookkeeping, with no I/O of its own:

- ``acked`` is the durable alert cursor (``customs.alerts``). An ack moves it forward; an ack
  below it means customs lost data (a store restored from a backup): it moves back, and the
  sink sends everything after it again; an ack beyond the journal's head is ignored and logged
  (a customs bug, or another gateway's store: acting on it would skip alerts). An ack that does
  not verify (wrong signer, another gateway, malformed) is counted, logged at a bounded rate,
  and never acted on.
- Alerts published (PUBACKed) but not acknowledged within ``timeout_s`` are published again,
  the oldest ``per_round`` at a time, with the delay doubling up to ``resend_max_s``: a customs
  side that is down for hours gets a few copies, not a flood, in the broker's queue for it.
  Every ack message (customs is alive) and every new connection resets the delay, so alerts a
  crashed broker lost go out again within ``timeout_s`` of customs being back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from edge_agent.journal import Journal, Stored
from ledger_client.acks import AckError, open_ack
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
CURSOR = "customs.alerts"


@dataclass(frozen=True, slots=True)
class AckPolicy:
    timeout_s: float = 30.0  # published, not acknowledged this long: publish again
    resend_max_s: float = 900.0  # the delay between rounds doubles up to this
    per_round: int = 256  # alerts published again per round, oldest first

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= self.resend_max_s or self.per_round < 1:
            raise ValueError("need 0 < timeout_s <= resend_max_s and per_round >= 1")


class AckTracker:
    """Customs' acknowledgements for one gateway; see the module docstring."""

    def __init__(self, journal: Journal, trusted: Collection[bytes], *,
                 policy: AckPolicy | None = None, head: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.journal = journal
        self.trusted = frozenset(bytes(k) for k in trusted)
        self.policy = policy or AckPolicy()
        self.head = head or (lambda: journal.head()[0])
        self.clock = clock
        self.acked = journal.cursor(CURSOR)
        self.published = self.acked  # highest alert seq the broker has taken (this process)
        self.last_ack_ms: int | None = None  # t_ms of the newest ack that verified
        self.counts: Counter[str] = Counter()
        self._delay = self.policy.timeout_s
        self._due: float | None = None
        self._ratelog = RateLimitedLog(log)

    # -- what customs says ------------------------------------------------------------------

    def on_message(self, payload: bytes) -> str:
        """Take one message from the acks topic: "advanced", "same", "rewound", "ahead" (of
        the head: ignored) or "bad" (did not verify: ignored)."""
        gw = self.journal.gateway_id
        try:
            ack = open_ack(payload, self.trusted, gw)
        except AckError as exc:
            self.counts["acks_bad"] += 1
            self._ratelog.warning("bad ack", "customs acks for %s: refused a message (%s); "
                                  "%d refused so far", gw, exc, self.counts["acks_bad"])
            return "bad"
        self.counts["acks"] += 1
        self.last_ack_ms = ack.t_ms
        self._delay = self.policy.timeout_s  # customs is alive: keep resends prompt
        head = self.head()
        if ack.acked_seq > head:
            self.counts["acks_ahead"] += 1
            self._ratelog.warning("ahead", "customs acks for %s: acknowledged seq %d, but the "
                                  "journal ends at %d; ignored (is customs' store for another "
                                  "gateway, or this journal a new one?)", gw, ack.acked_seq, head)
            return "ahead"
        if ack.acked_seq < self.acked:
            self.counts["acks_rewound"] += 1
            log.warning("customs acks for %s: customs holds alerts only up to seq %d, it had "
                        "acknowledged %d: it lost data; sending every alert after %d again", gw,
                        ack.acked_seq, self.acked, ack.acked_seq)
            self.acked = ack.acked_seq
            self.published = min(self.published, self.acked)
            self._due = None
            return "rewound"
        if ack.acked_seq == self.acked:
            if self._due is not None:
                self._due = min(self._due, self.clock() + self._delay)
            return "same"
        self.acked = ack.acked_seq
        self._due = self.clock() + self._delay if self.published > self.acked else None
        return "advanced"

    # -- what the broker took ---------------------------------------------------------------

    def took(self, seq: int) -> None:
        """The broker PUBACKed alert `seq` (a first send or a resend)."""
        if seq > self.published:
            self.published = seq
        if self._due is None and self.published > self.acked:
            self._due = self.clock() + self._delay

    def connected(self) -> None:
        """A new connection: resend promptly whatever is still unacknowledged."""
        self._delay = self.policy.timeout_s
        self._due = self.clock() + self._delay if self.published > self.acked else None

    def resend_due(self) -> list[Stored]:
        """The alerts to publish again now (usually none): the oldest that the broker took
        and customs has not acknowledged within the delay."""
        if self._due is None or self.clock() < self._due or self.published <= self.acked:
            return []
        due = [a for a in self.journal.alerts_after(self.acked, self.policy.per_round)
               if a.seq <= self.published]
        self.counts["resend_rounds"] += 1
        self.counts["resent"] += len(due)
        self._ratelog.warning("resend", "customs has not acknowledged alerts after seq %d for "
                              "%.0fs; publishing %d again (next round in %.0fs unless acked)",
                              self.acked, self._delay, len(due),
                              min(self._delay * 2, self.policy.resend_max_s))
        self._delay = min(self._delay * 2, self.policy.resend_max_s)
        self._due = self.clock() + self._delay
        return due

    # -- what is outstanding ----------------------------------------------------------------

    def unacked(self) -> tuple[int, int | None]:
        """How many alerts customs has not acknowledged, and the oldest one's t_ms."""
        first = self.journal.alerts_after(self.acked, 1)
        if not first:
            return 0, None
        return self.journal.count_alerts_after(self.acked), first[0].t_ms

    def delivered_through(self, head: int) -> int:
        """The seq up to which every alert is acknowledged (at most `head`)."""
        first = self.journal.alerts_after(self.acked, 1)
        return head if not first else min(head, first[0].seq - 1)
