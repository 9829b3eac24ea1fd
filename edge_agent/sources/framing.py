"""Split a byte stream into lines with a hard memory bound.

Serial links deliver garbage, partial lines and, at a wrong baud rate, endless bytes with no
newline. The framer never holds more than `max_line` bytes: an over-long line is discarded up to
its newline and counted, so a 10 MB run of noise costs 10 MB of reading and no memory.
"""

from __future__ import annotations

from collections import Counter


class LineFramer:
    __slots__ = ("_buf", "_discarding", "counts", "max_line")

    def __init__(self, max_line: int = 512, counts: Counter[str] | None = None):
        self.max_line = max_line
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in `data` (without CR/LF); keeps the unfinished tail for next time."""
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            chunk = data[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                self._buf.clear()
                continue
            if len(self._buf) + len(chunk) > self.max_line:
                self.counts["line_too_long"] += 1
                self._buf.clear()
                continue
            self._buf += chunk
            line = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            if line:
                lines.append(line)
        rest = data[start:]
        if rest and not self._discarding:
            if len(self._buf) + len(rest) > self.max_line:
                self.counts["line_too_long"] += 1
                self._buf.clear()
                self._discarding = True
            else:
                self._buf += rest
        return lines

    def reset(self) -> None:
        """Forget a partial line (after a reconnect its other half is gone)."""
        self._buf.clear()
        self._discarding = False
