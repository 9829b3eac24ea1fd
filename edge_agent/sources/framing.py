"""Split a byte stream into lines with a hard memory bound.

Serial links deliver garbage, partial lines and, at a wrong baud rate, endless bytes with no
newline. The framer never holds more than `max_line` bytes. When a line overflows (counted as
`line_too_long`), only its bytes from the last `$` on are kept: receivers that mix a binary
protocol (u-blox UBX, SiRF) with NMEA on one port put long runs of binary, seldom ending in a
newline, right before a sentence, and dropping the whole line would drop that sentence. Bytes
before the last `$` can never be part of a sentence, so a 10 MB run of noise costs 10 MB of
reading and no memory.
"""

from __future__ import annotations

from collections import Counter


class LineFramer:
    __slots__ = ("_buf", "_discarding", "counts", "max_line")

    def __init__(self, max_line: int = 512, counts: Counter[str] | None = None):
        self.max_line = max_line
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self._buf = bytearray()
        self._discarding = False  # this line overflowed: _buf holds at most its `$` tail

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in `data` (without CR/LF); keeps the unfinished tail for next time."""
        lines: list[bytes] = []
        buf = self._buf
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            chunk = data[start:end]
            start = end + 1
            if self._discarding or len(buf) + len(chunk) > self.max_line:
                self._push(chunk)
                self._discarding = False
            elif not buf:  # the usual case: a whole line in one read, no copy
                line = chunk.rstrip(b"\r")
                if line:
                    lines.append(line)
                continue
            else:
                buf += chunk
            line = bytes(buf).rstrip(b"\r")
            buf.clear()
            if line:
                lines.append(line)
        if start < len(data):
            self._push(data[start:] if start else data)
        return lines

    def _push(self, piece: bytes) -> None:
        """Add bytes of an unfinished line, keeping only the last `$` tail on overflow."""
        buf = self._buf
        if len(buf) + len(piece) <= self.max_line and (buf or not self._discarding):
            buf += piece
            return
        if not self._discarding:
            self._discarding = True
            self.counts["line_too_long"] += 1
        cut = piece.rfind(b"$")
        if cut >= 0:
            keep = len(piece) - cut <= self.max_line
            buf.clear()
            if keep:
                buf += piece[cut:]
            return
        cut = buf.rfind(b"$")
        if cut >= 0 and len(buf) - cut + len(piece) <= self.max_line:
            del buf[:cut]
            buf += piece
        else:
            buf.clear()

    def reset(self) -> None:
        """Forget a partial line (after a reconnect its other half is gone)."""
        self._buf.clear()
        self._discarding = False
