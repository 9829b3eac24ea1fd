"""NMEA 0183 framing and exact number conversions; the only exception they raise is Reject.

Shared by the GPS decoder and the e-seal sentence decoder: framing with a mandatory checksum,
and numbers converted with integer arithmetic from their text (no binary floats), because what
comes out is signed and must be reproducible bit for bit on any gateway.
"""

from __future__ import annotations

import calendar
import re

MAX_LINE = 200
"""Longest sentence accepted (NMEA says 82 characters; some receivers exceed it a little)."""


class Reject(Exception):
    """A line is dropped; ``args[0]`` is the reason it is counted under."""


_TIME_RE = re.compile(r"(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?")
_DATE_RE = re.compile(r"(\d{2})(\d{2})(\d{2})")
_ANGLE_RE = re.compile(r"(\d{1,3})(\d{2})(?:\.(\d{1,9}))?")
_NUMBER_RE = re.compile(r"(-?)(\d{1,7})(?:\.(\d{0,9}))?")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def xor_bytes(data: bytes) -> int:
    """XOR of all bytes, folded as one big integer: a few big-int operations instead of a
    Python loop per byte (this runs on every line the gateway reads)."""
    x = int.from_bytes(data, "little")
    n = len(data)
    while n > 1:
        half = (n + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        n = half
    return x


def frame(line: bytes) -> list[str]:
    """Validate framing and checksum; return the fields between ``$`` and ``*``."""
    return sentence_text(line).split(",")


def sentence_text(line: bytes) -> str:
    """Validate framing and checksum; return the text between ``$`` and ``*``.

    We resynchronise on the last ``$`` so noise before a sentence (wrong baud for a moment,
    a partial line after opening the port) costs nothing; the checksum still guards the rest.
    """
    start = line.rfind(b"$")
    if start < 0:
        raise Reject("no_start")
    raw = line[start:].rstrip(b"\r\n \t")
    if len(raw) > MAX_LINE:
        raise Reject("too_long")
    if not raw.isascii():
        raise Reject("not_ascii")
    star = raw.rfind(b"*")
    if star < 0:
        raise Reject("no_checksum")
    payload, given = raw[1:star], raw[star + 1:]
    if len(given) != 2 or not _HEX.issuperset(given):
        raise Reject("no_checksum" if not given else "bad_checksum")
    if xor_bytes(payload) != int(given, 16) or b"*" in payload:
        raise Reject("bad_checksum")
    text = payload.decode("ascii")
    if not text.isprintable():
        raise Reject("not_ascii")
    return text


def round_div(num: int, den: int) -> int:
    """num / den rounded half to even, exactly (den > 0)."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q & 1):
        q += 1
    return q


def fixed(text: str, digits: int) -> int:
    """Decimal text times 10**digits, rounded half to even: "54.545", 2 -> 5454."""
    m = _NUMBER_RE.fullmatch(text)
    if m is None:
        raise Reject("parse_error")
    frac = m[3] or ""
    extra = len(frac) - digits
    if extra <= 0:  # the common case: no rounding, no division
        value = int(m[2] + frac) * 10 ** -extra
    else:
        value = round_div(int(m[2] + frac), 10 ** extra)
    return -value if m[1] else value


def knots_cmps(text: str) -> int:
    """Knots to cm/s (1 kn = 1852 m / 3600 s = 463/9 cm/s), exact."""
    m = _NUMBER_RE.fullmatch(text)
    if m is None or m[1]:
        raise Reject("parse_error")
    frac = m[3] or ""
    return round_div(int(m[2] + frac) * 463, 9 * 10 ** len(frac))


def kmh_cmps(text: str) -> int:
    m = _NUMBER_RE.fullmatch(text)
    if m is None or m[1]:
        raise Reject("parse_error")
    frac = m[3] or ""
    return round_div(int(m[2] + frac) * 250, 9 * 10 ** len(frac))  # 1 km/h = 250/9 cm/s


def course_cdeg(text: str) -> int:
    cdeg = fixed(text, 2)
    if not 0 <= cdeg <= 36000:
        raise Reject("parse_error")
    return cdeg % 36000


def time_of_day_ms(text: str) -> int:
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise Reject("parse_error")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    if hh > 23 or mm > 59 or ss > 59:
        raise Reject("parse_error")
    frac_ms = int((m[4] or "0").ljust(3, "0")[:3])
    return ((hh * 60 + mm) * 60 + ss) * 1000 + frac_ms


def date(text: str) -> tuple[int, int, int]:
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise Reject("parse_error")
    day, month, yy = int(m[1]), int(m[2]), int(m[3])
    year = 1900 + yy if yy >= 80 else 2000 + yy  # GPS time starts in 1980
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise Reject("parse_error")
    return (year, month, day)


def angle_e7(text: str, hemi: str, max_deg: int, neg: str, pos: str) -> int:
    """``[d]ddmm.mmmm`` + hemisphere to degrees x 1e7, exact integer arithmetic."""
    m = _ANGLE_RE.fullmatch(text)
    if m is None or hemi not in (neg, pos):
        raise Reject("parse_error")
    frac = m[3] or ""
    minutes = int(m[2] + frac)  # minutes x 10**len(frac)
    scale = 10 ** len(frac)
    if minutes >= 60 * scale:
        raise Reject("parse_error")
    e7 = int(m[1]) * 10_000_000 + round_div(minutes * 10_000_000, 60 * scale)
    if e7 > max_deg * 10_000_000:
        raise Reject("parse_error")
    return -e7 if hemi == neg else e7


def small_int(text: str, width: int) -> int:
    if not text.isdigit() or len(text) > width:
        raise Reject("parse_error")
    return int(text)


def dop_x10(text: str) -> int | None:
    if not text:
        return None
    value = fixed(text, 1)
    if value < 0:
        raise Reject("parse_error")
    return value




def zda_date(day: str, month: str, year: str) -> tuple[int, int, int]:
    """ZDA's date fields (dd, mm, yyyy: a four-digit year, no century guess)."""
    if len(day) != 2 or len(month) != 2 or len(year) != 4:
        raise Reject("parse_error")
    d, m, y = small_int(day, 2), small_int(month, 2), small_int(year, 4)
    if not (y >= 1980 and 1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
        raise Reject("parse_error")
    return (y, m, d)
