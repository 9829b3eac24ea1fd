"""E-seal reader on a serial port: $PSTSL sentences from the seals in radio range.

The serial plumbing is serial_port's; this joins it to the strict sentence decoder and the
shared authenticator. A serial link has no redelivery, so an old counter here is a replay.
"""

from __future__ import annotations

from collections import Counter

from edge_agent.agent import Item
from edge_agent.sources.nmea_fields import Reject
from edge_agent.sources.seal_auth import SealAuthenticator
from edge_agent.sources.seal_codec import decode_sentence
from edge_agent.sources.serial_port import SerialLineSource
from edge_agent.stats import ComponentStats


class SealSentenceHandler:
    def __init__(self, auth: SealAuthenticator, via: str):
        self.auth = auth
        self.via = via
        self.counts: Counter[str] = Counter()
        self.rejected = 0
        self.decoded = 0

    def handle(self, line: bytes) -> list[Item]:
        try:
            msg = decode_sentence(line)
        except Reject as rej:
            self.counts[f"seal_{rej.args[0]}"] += 1
            self.rejected += 1
            return []
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill a source
            self.counts["seal_internal_error"] += 1
            self.rejected += 1
            return []
        self.decoded += 1
        return list(self.auth.check(msg, self.via))

    def reset(self) -> list[Item]:
        return []

    def stats(self) -> ComponentStats:
        """Sentences decoded, readings accepted (by the authenticator, for this reader),
        sentences and messages dropped by reason."""
        return self.auth.stats(self.via, decoded=self.decoded, rejected=self.counts)


class SerialSealSource(SerialLineSource):
    def __init__(self, port: str, auth: SealAuthenticator, *, reader_id: str = "sealreader0",
                 baudrate: int = 9600, max_line: int = 512,
                 backoff_s: tuple[float, float] = (0.2, 30.0), silence_s: float | None = 60.0):
        super().__init__(port, SealSentenceHandler(auth, f"serial:{reader_id}"),
                         sensor_id=reader_id, kind="seal", baudrate=baudrate, max_line=max_line,
                         backoff_s=backoff_s, silence_s=silence_s)
