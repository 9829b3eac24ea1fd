"""NMEA 0183 GPS decoding for the gateway: bytes from a serial line in, integer fixes out.

Pure logic, no I/O: the serial/gpsd sources split their byte stream into lines and call
``NmeaDecoder.feed``. The decoder is the first thing untrusted bytes touch, so it never raises,
demands the ``*hh`` checksum (the NMEA default of "checksum optional" would let line noise
become a position), and counts every line it throws away by reason so a gateway installer can
tell a wrong baud rate (``not_ascii``/``bad_checksum``) from a receiver without a fix
(``invalid_fix``) from a receiver configured without RMC (``no_date``).

A receiver reports one epoch as several sentences; we merge the GGA (quality, satellites,
HDOP, altitude) and RMC (date, speed, course) that carry the same UTC time into one
``GpsFix``. Numbers are converted with ``Decimal`` from the sentence text, never via binary
floats, because the result is signed and must be reproducible bit for bit.

Independent of ``firmware_sim`` by design: decoding is done with pynmea2 and the conversions
below, so simulator and agent cannot share a bug.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import pynmea2

TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "GQ", "GI"})
"""GPS, multi-GNSS, GLONASS, Galileo, BeiDou (old and NMEA 4.11 ids), QZSS, NavIC."""

MAX_LINE = 200
"""Longest sentence accepted (NMEA says 82 characters; some receivers exceed it a little)."""

UNKNOWN_SATS = 0
UNKNOWN_HDOP_X10 = 999
"""Values used when a fix comes from RMC alone: chosen to *fail* min-satellite and max-HDOP
filters rather than pass them, since nothing vouches for the fix's quality."""

_RMC_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
"""RMC mode indicator (NMEA 2.3+) mapped to the GGA quality scale; ``N`` means no fix."""

_TIME_RE = re.compile(r"(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?")
_DATE_RE = re.compile(r"(\d{2})(\d{2})(\d{2})")
_ANGLE_RE = re.compile(r"(\d{1,3})(\d{2}(?:\.\d{1,9})?)")
_NUMBER_RE = re.compile(r"-?\d{1,7}(?:\.\d{0,9})?")
_HEX = frozenset("0123456789ABCDEFabcdef")


@dataclass(frozen=True, slots=True)
class GpsFix:
    """One epoch's fix in the integer units of signed records (see DESIGN.md "Records").

    From RMC alone, ``sats``/``hdop_x10``/``alt_cm`` are ``UNKNOWN_SATS``/``UNKNOWN_HDOP_X10``/0
    and ``fix_quality`` comes from the RMC mode indicator (1 if absent).
    """

    t_ms: int
    lat_e7: int
    lon_e7: int
    fix_quality: int
    sats: int
    hdop_x10: int
    alt_cm: int
    speed_cmps: int
    course_cdeg: int

    def body(self) -> dict[str, int]:
        """Record body: every field but ``t_ms`` (which is a top-level record field)."""
        return {
            "lat_e7": self.lat_e7,
            "lon_e7": self.lon_e7,
            "fix_quality": self.fix_quality,
            "sats": self.sats,
            "hdop_x10": self.hdop_x10,
            "alt_cm": self.alt_cm,
            "speed_cmps": self.speed_cmps,
            "course_cdeg": self.course_cdeg,
        }


class _Reject(Exception):
    """Internal: a line is dropped; ``args[0]`` is the reason counted."""


@dataclass(slots=True)
class _Half:
    """What one sentence contributes to an epoch."""

    valid: bool
    lat_e7: int = 0
    lon_e7: int = 0
    quality: int = 0
    sats: int = UNKNOWN_SATS
    hdop_x10: int = UNKNOWN_HDOP_X10
    alt_cm: int = 0
    date: tuple[int, int, int] | None = None
    speed_cmps: int = 0
    course_cdeg: int = 0


@dataclass(slots=True)
class _Epoch:
    tod_ms: int
    gga: _Half | None = None
    rmc: _Half | None = None
    lines: int = 0
    invalid: bool = False


def _round(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def _time_of_day_ms(text: str) -> int:
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise _Reject("parse_error")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    if hh > 23 or mm > 59 or ss > 59:
        raise _Reject("parse_error")
    frac_ms = int((m[4] or "0").ljust(3, "0")[:3])
    return ((hh * 60 + mm) * 60 + ss) * 1000 + frac_ms


def _date(text: str) -> tuple[int, int, int]:
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise _Reject("parse_error")
    day, month, yy = int(m[1]), int(m[2]), int(m[3])
    year = 1900 + yy if yy >= 80 else 2000 + yy  # GPS time starts in 1980
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise _Reject("parse_error")
    return (year, month, day)


def _angle_e7(text: str, hemi: str, max_deg: int, neg: str, pos: str) -> int:
    """``[d]ddmm.mmmm`` + hemisphere to degrees x 1e7, exact decimal arithmetic."""
    m = _ANGLE_RE.fullmatch(text)
    if m is None or hemi not in (neg, pos):
        raise _Reject("parse_error")
    degrees = int(m[1])
    minutes = Decimal(m[2])
    if minutes >= 60:
        raise _Reject("parse_error")
    e7 = degrees * 10_000_000 + _round(minutes * 10_000_000 / 60)
    if e7 > max_deg * 10_000_000:
        raise _Reject("parse_error")
    return -e7 if hemi == neg else e7


def _number(text: str) -> Decimal:
    if _NUMBER_RE.fullmatch(text) is None:
        raise _Reject("parse_error")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - regex already guarantees syntax
        raise _Reject("parse_error") from exc


def _field(msg: Any, name: str) -> str:
    """Raw text of a named pynmea2 field; "" when a truncated sentence lacks it."""
    idx = type(msg).name_to_idx[name]
    data = msg.data
    return data[idx].strip() if idx < len(data) else ""


def _parse_gga(msg: Any) -> _Half:
    quality_text = _field(msg, "gps_qual")
    if not quality_text.isdigit() or len(quality_text) > 2:
        raise _Reject("parse_error")
    quality = int(quality_text)
    if quality == 0:
        return _Half(valid=False)
    half = _Half(valid=True, quality=quality)
    half.lat_e7 = _angle_e7(_field(msg, "lat"), _field(msg, "lat_dir"), 90, "S", "N")
    half.lon_e7 = _angle_e7(_field(msg, "lon"), _field(msg, "lon_dir"), 180, "W", "E")
    sats = _field(msg, "num_sats")
    if sats:
        if not sats.isdigit() or len(sats) > 3:
            raise _Reject("parse_error")
        half.sats = int(sats)
    hdop = _field(msg, "horizontal_dil")
    if hdop:
        half.hdop_x10 = _round(_number(hdop) * 10)
        if half.hdop_x10 < 0:
            raise _Reject("parse_error")
    alt = _field(msg, "altitude")
    if alt:
        half.alt_cm = _round(_number(alt) * 100)
    return half


def _parse_rmc(msg: Any) -> _Half:
    status = _field(msg, "status")
    mode = _field(msg, "mode_indicator")
    if status == "V" or mode == "N":
        return _Half(valid=False)
    if status != "A" or (mode and mode not in _RMC_MODE_QUALITY):
        raise _Reject("parse_error")
    half = _Half(valid=True, quality=_RMC_MODE_QUALITY.get(mode, 1))
    half.lat_e7 = _angle_e7(_field(msg, "lat"), _field(msg, "lat_dir"), 90, "S", "N")
    half.lon_e7 = _angle_e7(_field(msg, "lon"), _field(msg, "lon_dir"), 180, "W", "E")
    half.date = _date(_field(msg, "datestamp"))
    speed = _field(msg, "spd_over_grnd")
    if speed:
        # knots -> cm/s: 1 kn = 1852 m / 3600 s
        half.speed_cmps = _round(_number(speed) * 185200 / 3600)
        if half.speed_cmps < 0:
            raise _Reject("parse_error")
    course = _field(msg, "true_course")
    if course:
        cdeg = _round(_number(course) * 100)
        if not 0 <= cdeg <= 36000:
            raise _Reject("parse_error")
        half.course_cdeg = cdeg % 36000
    return half


def _frame(line: bytes) -> str:
    """Validate framing and checksum; return the payload between ``$`` and ``*``.

    We resynchronise on the last ``$`` so noise before a sentence (wrong baud for a moment,
    a partial line after opening the port) costs nothing; the checksum still guards the rest.
    """
    start = line.rfind(b"$")
    if start < 0:
        raise _Reject("no_start")
    raw = line[start:].strip(b"\r\n \t")
    if len(raw) > MAX_LINE:
        raise _Reject("too_long")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Reject("not_ascii") from exc
    if not text.isprintable():
        raise _Reject("not_ascii")
    star = text.rfind("*")
    if star < 0:
        raise _Reject("no_checksum")
    payload, given = text[1:star], text[star + 1 :]
    if len(given) != 2 or not set(given) <= _HEX:
        raise _Reject("no_checksum" if not given else "bad_checksum")
    expected = 0
    for ch in payload.encode("ascii"):
        expected ^= ch
    if expected != int(given, 16) or "*" in payload:
        raise _Reject("bad_checksum")
    return payload


class NmeaDecoder:
    """Stateful line decoder: ``feed`` one line at a time, get a ``GpsFix`` when an epoch is done.

    An epoch is emitted as soon as both its GGA and RMC have arrived (either order), or, when a
    sentence of a different epoch arrives first, from whatever halves were collected: RMC alone
    is a usable fix, GGA alone has no date and is dropped (``no_date``). ``flush`` emits the
    pending epoch at end of stream. If either half says "no fix" the whole epoch is dropped:
    a receiver contradicting itself is not evidence for customs.

    ``counts`` holds a reason for every line that did not end up in an emitted fix;
    ``emitted`` counts fixes returned.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.emitted = 0
        self._pending: _Epoch | None = None

    def feed(self, line: bytes) -> GpsFix | None:
        """Consume one line (CR/LF optional). Never raises, whatever the bytes."""
        try:
            return self._feed(bytes(line))
        except _Reject as rej:
            self.counts[str(rej.args[0])] += 1
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill a source
            self.counts["internal_error"] += 1
        return None

    def flush(self) -> GpsFix | None:
        """Emit (or drop, with its reason counted) the epoch still waiting for its other half."""
        try:
            return self._close_pending()
        except Exception:  # pragma: no cover - defensive
            self._pending = None
            self.counts["internal_error"] += 1
            return None

    def _feed(self, line: bytes) -> GpsFix | None:
        payload = _frame(line)
        header = payload.split(",", 1)[0]
        talker, kind = header[:2], header[2:]
        if talker not in TALKERS or kind not in ("GGA", "RMC"):
            raise _Reject("unsupported")
        try:
            msg = pynmea2.parse("$" + payload, check=False)
        except pynmea2.ParseError as exc:
            raise _Reject("parse_error") from exc
        half = _parse_gga(msg) if kind == "GGA" else _parse_rmc(msg)
        try:
            tod_ms = _time_of_day_ms(_field(msg, "timestamp"))
        except _Reject:
            if not half.valid:  # receivers without a fix often have no time either
                raise _Reject("invalid_fix") from None
            raise

        emitted: GpsFix | None = None
        pending = self._pending
        if pending is not None and pending.tod_ms != tod_ms:
            emitted = self._close_pending()
            pending = None
        if pending is None:
            pending = self._pending = _Epoch(tod_ms)
        slot = "gga" if kind == "GGA" else "rmc"
        if getattr(pending, slot) is not None:
            self.counts["duplicate"] += 1
            return emitted
        setattr(pending, slot, half)
        pending.lines += 1
        if not half.valid:
            pending.invalid = True
        if pending.gga is not None and pending.rmc is not None:
            # ``emitted`` is None here: an older epoch is only closed when a new one starts,
            # and a new epoch cannot be complete after its first sentence.
            return self._close_pending()
        return emitted

    def _close_pending(self) -> GpsFix | None:
        epoch, self._pending = self._pending, None
        if epoch is None:
            return None
        if epoch.invalid:
            self.counts["invalid_fix"] += epoch.lines
            return None
        rmc, gga = epoch.rmc, epoch.gga
        if rmc is None or rmc.date is None:
            self.counts["no_date"] += epoch.lines
            return None
        year, month, day = rmc.date
        t_ms = calendar.timegm((year, month, day, 0, 0, 0)) * 1000 + epoch.tod_ms
        pos = gga if gga is not None else rmc
        self.emitted += 1
        return GpsFix(
            t_ms=t_ms,
            lat_e7=pos.lat_e7,
            lon_e7=pos.lon_e7,
            fix_quality=gga.quality if gga is not None else rmc.quality,
            sats=gga.sats if gga is not None else UNKNOWN_SATS,
            hdop_x10=gga.hdop_x10 if gga is not None else UNKNOWN_HDOP_X10,
            alt_cm=gga.alt_cm if gga is not None else 0,
            speed_cmps=rmc.speed_cmps,
            course_cdeg=rmc.course_cdeg,
        )
