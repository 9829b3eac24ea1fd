"""gpsd JSON reports in, integer fixes out: the pure half of the gpsd source (no I/O).

gpsd (gpsd_json(5)) reports one receiver epoch as a TPV (time, position, velocity) followed
by the optional SKY (satellites used, DOPs) and GST (1-sigma error estimates) of the same
cycle; during its first cycles, and with receivers that dribble sentences, it may send several
cumulative TPVs for the same time. We merge all of that into one ``GpsFix`` per epoch.

Epoch merge, chosen for no added latency in steady state: a TPV opens an epoch and is held
only until the reports gpsd sent after the TPVs of recent cycles (SKY and/or GST, learned
like the NMEA decoder learns its sentence set) have arrived; those come in the same burst,
so the fix goes out microseconds after its last part. An epoch also closes when a TPV of
another time arrives, or when the socket side calls ``flush`` after a short quiet gap (a
report gpsd stopped sending costs that gap once, then is no longer waited for). A SKY or GST
that arrives after its epoch was closed is kept as a fallback for the next epoch only, so it
is at most one cycle old; a GST names its time and is only ever used for that time. SKY
carries no time in gpsd 3.22, so it is matched by position in the stream.

Numbers are parsed as ``Decimal`` and scaled with round half even, never via binary floats,
because the result is signed and must be reproducible. Everything here is untrusted: ``feed``
never raises and counts every dropped line or field by reason.
"""

from __future__ import annotations

import calendar
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from edge_agent.sources.gps_fix import NO_DOP_X10, GpsFix, NoFix
from edge_agent.sources.nmea_fields import Reject

Obs = GpsFix | NoFix

STATUS_QUALITY = {0: 1, 1: 1, 2: 2, 3: 4, 4: 5, 5: 6, 6: 1, 7: 7, 8: 8, 9: 3}
"""gpsd TPV ``status`` -> GGA quality: the inverse of gpsd's own GGA parsing (0/absent
unknown and 1 normal -> 1 GPS, DGPS 2, RTK fixed 3 -> 4, RTK float 4 -> 5, DR 5 -> 6,
GNSS+DR 6 -> 1 (GGA has no such value; u-blox reports it as 1), surveyed/time 7 -> 7 manual,
simulated 8, P(Y) 9 -> 3 "PPS")."""

_ISO_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_MIN_T_S = 315_964_800  # 1980-01-06, the GPS epoch: nothing earlier is a real fix time
_MAX_T_S = 7_258_118_400  # 2200-01-01


def _round(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def _number(obj: dict[str, Any], key: str, lo: int, hi: int) -> Decimal | None:
    """A bounded JSON number, or None when absent. Bounds are checked before any arithmetic,
    so a 1e999999 cannot overflow the decimal context; ``bool`` is not a number here."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Reject("bad_field")
    if not lo <= value <= hi:
        raise Reject("bad_field")
    return Decimal(value)


def _scaled(obj: dict[str, Any], key: str, scale: int, lo: int, hi: int) -> int | None:
    value = _number(obj, key, lo, hi)
    return None if value is None else _round(value * scale)


def _t_ms(value: Any) -> int:
    """ISO 8601 UTC time (protocol 3.x) or Unix seconds (older gpsd) to Unix ms."""
    if isinstance(value, str):
        m = _ISO_RE.fullmatch(value)
        if m is None:
            raise Reject("bad_time")
        year, month, day, hh, mm, ss = (int(g) for g in m.groups()[:6])
        if not (1 <= month <= 12 and 1980 <= year < 2200  # as _MIN_T_S.._MAX_T_S
                and 1 <= day <= calendar.monthrange(year, month)[1]
                and hh <= 23 and mm <= 59 and ss <= 59):
            raise Reject("bad_time")
        frac = _round(Decimal("0." + (m[7] or "0")) * 1000)
        return calendar.timegm((year, month, day, hh, mm, ss)) * 1000 + frac
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Reject("bad_time")
    if not _MIN_T_S <= value < _MAX_T_S:
        raise Reject("bad_time")
    return _round(Decimal(value) * 1000)


@dataclass(frozen=True, slots=True)
class _Tpv:
    t_ms: int
    mode: int
    quality: int
    lat_e7: int
    lon_e7: int
    alt_cm: int | None
    speed_cmps: int | None
    course_cdeg: int | None

    def over(self, older: _Tpv) -> _Tpv:
        """A later TPV of the same epoch: gpsd's are cumulative, but keep what it left out."""
        return replace(
            self,
            alt_cm=self.alt_cm if self.alt_cm is not None else older.alt_cm,
            speed_cmps=self.speed_cmps if self.speed_cmps is not None else older.speed_cmps,
            course_cdeg=self.course_cdeg if self.course_cdeg is not None else older.course_cdeg)


@dataclass(frozen=True, slots=True)
class _Sky:
    sats: int | None
    hdop_x10: int | None
    pdop_x10: int | None
    vdop_x10: int | None


@dataclass(frozen=True, slots=True)
class _Gst:
    lat_cm: int
    lon_cm: int
    alt_cm: int | None


@dataclass(slots=True)
class _Epoch:
    tpv: _Tpv
    fresh: set[str]  # extras ("SKY", "GST") that arrived after this epoch's TPV
    sky: _Sky | None = None
    gst: _Gst | None = None


NOT_DROPPED = frozenset({"watch", "tpv", "tpv_nofix", "sky", "gst", "fixes", "between_epochs",
                         "other_class", "proto_mismatch", "gpsd_error", "unknown_status"})
"""Counts of reports taken, or of what gpsd said (its errors, other report classes); every
other count names why a report or a field of one was dropped."""


class GpsdDecoder:
    """Stateful decoder: ``feed`` one line at a time; returns the observations it completed.

    ``device`` restricts the decoder to one receiver's reports; without it the decoder locks
    onto the first device that sends a TPV (two receivers merged into one track would be
    nonsense) and lets go when gpsd says that device was deactivated.
    """

    def __init__(self, device: str | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.device = device
        self.version: str | None = None
        self.last_error: str | None = None
        self._locked: str | None = device
        self._pending: _Epoch | None = None
        self._last_t: int | None = None  # time of the last epoch emitted (fix or no-fix)
        self._cycle: set[str] | None = None  # extras seen since the last new-time TPV
        self._cycle_before: frozenset[str] | None = None
        self._expect: frozenset[str] | None = None  # None: not learned yet
        self._spare: dict[str, tuple[int | None, _Sky | _Gst]] = {}  # extras between epochs

    @property
    def pending(self) -> bool:
        """An epoch is held waiting for its SKY/GST: the socket side should flush it soon."""
        return self._pending is not None

    def feed(self, line: bytes) -> list[Obs]:
        """Consume one report line (CR/LF optional). Never raises, whatever the bytes."""
        try:
            return self._feed(bytes(line))
        except Reject as rej:
            self.counts[str(rej.args[0])] += 1
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill a source
            self.counts["internal_error"] += 1
        return []

    def flush(self) -> list[Obs]:
        """Close the held epoch with what has arrived (quiet gap, disconnect, end of stream)."""
        return self._close()

    def reset(self) -> None:
        """Forget what was learned about the stream: after a reconnect gpsd may be another
        daemon with other receivers. The time of the last epoch is kept, so a repeat of it
        is still not emitted twice."""
        self._pending = None
        self._locked = self.device
        self._cycle = None
        self._cycle_before = None
        self._expect = None
        self._spare = {}

    def _feed(self, line: bytes) -> list[Obs]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("not_utf8") from None
        try:
            report = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so is _no_constant
            raise Reject("bad_json") from None
        if not isinstance(report, dict):
            raise Reject("not_object")
        cls = report.get("class")
        if cls in ("TPV", "SKY", "GST"):
            device = report.get("device")
            if device is not None and self._locked is not None and device != self._locked:
                raise Reject("other_device")
            if cls == "TPV":
                if self._locked is None and isinstance(device, str):
                    self._locked = device
                return self._tpv(report)
            raw_time = report.get("time")  # SKY has none in gpsd 3.22; GST always has
            t_ms = None if raw_time is None else _t_ms(raw_time)
            if cls == "SKY":
                return self._extra("SKY", _sky(report, self.counts), t_ms)
            return self._extra("GST", _gst(report), t_ms)
        if cls == "VERSION":
            release = report.get("release")
            self.version = release[:40] if isinstance(release, str) else None
            if report.get("proto_major") != 3:
                self.counts["proto_mismatch"] += 1
        elif cls == "ERROR":
            message = report.get("message")
            self.last_error = message[:200] if isinstance(message, str) else "?"
            self.counts["gpsd_error"] += 1
        elif cls == "DEVICE":
            if (report.get("activated") == 0 and self.device is None
                    and report.get("path") == self._locked):
                self._locked = None  # unplugged: the receiver may come back under another name
        elif cls == "WATCH":
            self.counts["watch"] += 1  # gpsd confirmed the subscription
        elif not isinstance(cls, str):
            raise Reject("no_class")
        elif cls != "DEVICES":
            self.counts["other_class"] += 1
        return []

    def _tpv(self, report: dict[str, Any]) -> list[Obs]:
        mode = report.get("mode")
        if type(mode) is not int or not 0 <= mode <= 3:  # not bool, not 2.0: it is signed
            raise Reject("bad_mode")
        raw_time = report.get("time")
        t_ms = None if raw_time is None else _t_ms(raw_time)
        if mode < 2:
            out = self._close()
            self.counts["tpv_nofix"] += 1
            if t_ms is not None:
                if t_ms == self._last_t:
                    self.counts["repeat_epoch"] += 1
                    return out
                self._new_cycle()
                self._last_t = t_ms
            return [*out, NoFix(t_ms)]
        if t_ms is None:
            raise Reject("no_time")
        tpv = _fix_tpv(report, t_ms, mode, self.counts)
        self.counts["tpv"] += 1
        pending = self._pending
        if pending is not None and pending.tpv.t_ms == t_ms:
            pending.tpv = tpv.over(pending.tpv)  # gpsd refined the epoch it is sending
            return self._ready()
        out = self._close()
        if t_ms == self._last_t:
            self.counts["repeat_epoch"] += 1
            return out
        self._new_cycle()
        pending = self._pending = _Epoch(tpv, set())
        for kind, (t_spare, data) in list(self._spare.items()):
            if t_spare == t_ms:  # came ahead of its TPV: as good as fresh
                del self._spare[kind]
                self._attach(pending, kind, data)
        return [*out, *self._ready()]

    def _new_cycle(self) -> None:
        """A TPV of a new time: learn which extras gpsd sent in the last cycles. Those sent in
        both of the last two count (or, if none was, those of the last), so an extra sent only
        now and then (a GST every 5 s, say) does not hold every other fix back."""
        if self._cycle is not None:  # None: this is the first TPV, no cycle to learn from
            seen = frozenset(self._cycle)
            before = self._cycle_before
            self._expect = ((seen & before) or seen) if before is not None else seen
            self._cycle_before = seen
        self._cycle = set()

    def _extra(self, kind: str, data: _Sky | _Gst, t_ms: int | None) -> list[Obs]:
        self.counts[kind.lower()] += 1
        if self._cycle is not None:
            self._cycle.add(kind)
        pending = self._pending
        if pending is not None and (t_ms is None or t_ms == pending.tpv.t_ms):
            self._attach(pending, kind, data)
            return self._ready()
        if t_ms is not None and self._last_t is not None and t_ms <= self._last_t:
            self.counts["late_report"] += 1  # its epoch is signed and gone
            return []
        self.counts["between_epochs"] += 1
        self._spare[kind] = (t_ms, data)  # untimed: for the next epoch; timed: for its own
        return []

    @staticmethod
    def _attach(epoch: _Epoch, kind: str, data: _Sky | _Gst) -> None:
        if isinstance(data, _Sky):
            epoch.sky = data
        else:
            epoch.gst = data
        epoch.fresh.add(kind)

    def _ready(self) -> list[Obs]:
        pending = self._pending
        if pending is not None and self._expect is not None and self._expect <= pending.fresh:
            return self._close()
        return []

    def _close(self) -> list[Obs]:
        ep, self._pending = self._pending, None
        if ep is None:
            return []
        tpv = ep.tpv
        self._last_t = tpv.t_ms
        found: dict[str, _Sky | _Gst | None] = {"SKY": ep.sky, "GST": ep.gst}
        for kind, (t_spare, data) in list(self._spare.items()):
            if t_spare is None or t_spare <= tpv.t_ms:  # now or never; an early one waits
                del self._spare[kind]
                if found[kind] is None and t_spare in (None, tpv.t_ms):
                    found[kind] = data
        sky = found["SKY"] if isinstance(found["SKY"], _Sky) else None
        gst = found["GST"] if isinstance(found["GST"], _Gst) else None
        self.counts["fixes"] += 1
        return [GpsFix(
            t_ms=tpv.t_ms,
            lat_e7=tpv.lat_e7,
            lon_e7=tpv.lon_e7,
            fix_quality=tpv.quality,
            sats=sky.sats if sky is not None else None,
            hdop_x10=sky.hdop_x10 if sky is not None else None,
            alt_cm=tpv.alt_cm,
            speed_cmps=tpv.speed_cmps,
            course_cdeg=tpv.course_cdeg,
            fix_mode=tpv.mode,
            pdop_x10=sky.pdop_x10 if sky is not None else None,
            vdop_x10=sky.vdop_x10 if sky is not None else None,
            err_lat_cm=gst.lat_cm if gst is not None else None,
            err_lon_cm=gst.lon_cm if gst is not None else None,
            err_alt_cm=gst.alt_cm if gst is not None else None,
        )]


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} not allowed")


def _optional(counts: Counter[str], obj: dict[str, Any], key: str, scale: int, lo: int,
              hi: int) -> int | None:
    """An optional field: a bad value loses the field (counted), not the whole report."""
    try:
        return _scaled(obj, key, scale, lo, hi)
    except Reject:
        counts["bad_field"] += 1
        return None


def _fix_tpv(report: dict[str, Any], t_ms: int, mode: int, counts: Counter[str]) -> _Tpv:
    try:
        lat = _scaled(report, "lat", 10_000_000, -90, 90)
        lon = _scaled(report, "lon", 10_000_000, -180, 180)
    except Reject:
        raise Reject("bad_position") from None
    if lat is None or lon is None:
        raise Reject("no_position")
    status = report.get("status", 1)
    quality = STATUS_QUALITY.get(status, 0) if type(status) is int else 0
    if quality == 0:
        counts["unknown_status"] += 1  # a status newer than this code: still a fix
        quality = 1
    # altMSL is what GGA (and so the serial source) reports; "alt" is its deprecated name.
    alt = _optional(counts, report, "altMSL", 100, -100_000, 100_000)
    if alt is None:
        alt = _optional(counts, report, "alt", 100, -100_000, 100_000)
    track = _optional(counts, report, "track", 100, 0, 360)
    return _Tpv(
        t_ms=t_ms, mode=mode, quality=quality, lat_e7=lat, lon_e7=lon, alt_cm=alt,
        speed_cmps=_optional(counts, report, "speed", 100, 0, 10_000),
        course_cdeg=None if track is None else track % 36000)


def _dop(counts: Counter[str], report: dict[str, Any], key: str) -> int | None:
    """DOP x 10, capped at 999: gpsd and receivers write 99.99 for "no DOP", which must fail a
    max-HDOP filter as a receiver's 99.99 in NMEA does (a DOP gpsd leaves out is None: unknown,
    not judged)."""
    value = _optional(counts, report, key, 10, 0, 10**6)
    return None if value is None else min(value, NO_DOP_X10)


def _sky(report: dict[str, Any], counts: Counter[str]) -> _Sky:
    used = report.get("uSat")
    sats: int | None = None
    if type(used) is int and 0 <= used <= 1000:
        sats = used
    else:  # older gpsd: count the satellites flagged as used
        satellites = report.get("satellites")
        if isinstance(satellites, list):
            sats = sum(1 for s in satellites if isinstance(s, dict) and s.get("used") is True)
    return _Sky(sats, _dop(counts, report, "hdop"), _dop(counts, report, "pdop"),
                _dop(counts, report, "vdop"))


def _gst(report: dict[str, Any]) -> _Gst:
    try:
        lat = _scaled(report, "lat", 100, 0, 100_000)
        lon = _scaled(report, "lon", 100, 0, 100_000)
        alt = _scaled(report, "alt", 100, 0, 100_000)
    except Reject:
        raise Reject("bad_gst") from None
    if lat is None or lon is None:
        raise Reject("bad_gst")
    return _Gst(lat, lon, alt)


__all__ = ["STATUS_QUALITY", "GpsdDecoder", "Obs"]
