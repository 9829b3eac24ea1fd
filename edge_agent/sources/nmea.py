"""NMEA 0183 GPS decoding for the gateway: bytes from a serial line in, integer fixes out.

Pure logic, no I/O: the serial source splits its byte stream into lines and calls
``NmeaDecoder.feed``. The decoder is the first thing untrusted bytes touch, so it never raises,
demands the ``*hh`` checksum (the NMEA default of "checksum optional" would let line noise
become a position), and counts every line it throws away by reason so a gateway installer can
tell a wrong baud rate (``not_ascii``/``bad_checksum``) from a receiver without a fix
(``invalid_fix``) from a receiver configured without RMC (``no_date``).

A receiver reports one epoch as several sentences: GGA (quality, satellites, HDOP, altitude),
RMC (date, speed, course), VTG (speed, course), GSA (2D/3D, DOPs, satellites used) and GST
(error estimates). Only GGA, RMC and GST carry the epoch's time, so VTG and GSA belong to the
epoch opened before them. The decoder learns which sentences the receiver sends per epoch and
emits the fix the moment the last of them arrives, rather than waiting for the next epoch to
start: that wait would add a whole fix interval to every alert's latency.

Numbers are converted with exact integer arithmetic from the sentence text, never via binary
floats, because the result is signed and must be reproducible bit for bit. The field layouts
come from pynmea2's sentence definitions; the per-line parsing is our own, because building
pynmea2 objects cost more than half the gateway's ingest time.

Independent of ``firmware_sim`` by design, so simulator and agent cannot share a bug.
"""

from __future__ import annotations

import calendar
import contextlib
from collections import Counter
from collections.abc import Callable

import pynmea2

from edge_agent.sources.gps_fix import UNKNOWN_HDOP_X10, UNKNOWN_SATS, GpsFix, NoFix
from edge_agent.sources.nmea_fields import (
    Reject,
    angle_e7,
    course_cdeg,
    date,
    dop_x10,
    fixed,
    frame,
    kmh_cmps,
    knots_cmps,
    small_int,
    time_of_day_ms,
)

__all__ = ["TALKERS", "UNKNOWN_HDOP_X10", "UNKNOWN_SATS", "GpsFix", "NmeaDecoder",
           "NoFix"]

TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "GQ", "GI"})
"""GPS, multi-GNSS, GLONASS, Galileo, BeiDou (old and NMEA 4.11 ids), QZSS, NavIC."""

_RMC_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
"""RMC mode indicator (NMEA 2.3+) mapped to the GGA quality scale; ``N`` means no fix."""



def _layout(sentence: type[pynmea2.NMEASentence]) -> dict[str, int]:
    """Field positions from pynmea2's definition, shifted past the address field."""
    return {name: idx + 1 for name, idx in sentence.name_to_idx.items()}  # type: ignore[attr-defined]


_GGA = _layout(pynmea2.GGA)
_RMC = _layout(pynmea2.RMC)
_VTG = _layout(pynmea2.VTG)
_GSA = _layout(pynmea2.GSA)
_GST = _layout(pynmea2.GST)
_GSA_SATS = tuple(_GSA[f"sv_id{n:02d}"] for n in range(1, 13))
_WIDTH = 1 + max(max(t.values()) for t in (_GGA, _RMC, _VTG, _GSA, _GST))
_TIMED = frozenset({"GGA", "RMC", "GST"})
_FIRST_EPOCH = frozenset({"GGA", "RMC"})

class _Epoch:
    """Everything the sentences of one epoch said, merged as they arrive."""

    __slots__ = (
        "alt_cm",
        "course_cdeg",
        "date",
        "err",
        "fix_mode",
        "gga_quality",
        "gsas",
        "hdop_x10",
        "invalid",
        "kinds",
        "lat_e7",
        "lines",
        "lon_e7",
        "pdop_x10",
        "rmc_pos",
        "rmc_quality",
        "sats",
        "speed_cmps",
        "tod_ms",
        "vdop_x10",
        "vtg",
    )

    def __init__(self, tod_ms: int):
        self.tod_ms = tod_ms
        self.kinds: set[str] = set()
        self.gsas = 0
        self.lines = 0
        self.invalid = False
        self.gga_quality: int | None = None
        self.rmc_quality: int | None = None
        self.lat_e7 = self.lon_e7 = 0
        self.rmc_pos: tuple[int, int] | None = None
        self.sats: int | None = None
        self.hdop_x10: int | None = None
        self.alt_cm: int | None = None
        self.date: tuple[int, int, int] | None = None
        self.speed_cmps: int | None = None
        self.course_cdeg: int | None = None
        self.vtg: tuple[int | None, int | None] | None = None
        self.fix_mode: int | None = None
        self.pdop_x10: int | None = None
        self.vdop_x10: int | None = None
        self.err: tuple[int, int, int | None] | None = None


def _gga(f: list[str], ep: _Epoch) -> None:
    quality = small_int(f[_GGA["gps_qual"]], 2)
    if quality == 0:
        ep.invalid = True
        return
    ep.gga_quality = quality
    ep.lat_e7 = angle_e7(f[_GGA["lat"]], f[_GGA["lat_dir"]], 90, "S", "N")
    ep.lon_e7 = angle_e7(f[_GGA["lon"]], f[_GGA["lon_dir"]], 180, "W", "E")
    sats = f[_GGA["num_sats"]]
    if sats:
        ep.sats = small_int(sats, 3)
    hdop = dop_x10(f[_GGA["horizontal_dil"]])
    if hdop is not None:
        ep.hdop_x10 = hdop
    alt = f[_GGA["altitude"]]
    if alt:
        ep.alt_cm = fixed(alt, 2)


def _rmc(f: list[str], ep: _Epoch) -> None:
    status = f[_RMC["status"]]
    mode = f[_RMC["mode_indicator"]]
    if status == "V" or mode == "N":
        ep.invalid = True
        # the receiver's date still dates its no-fix report (a tunnel across midnight would
        # otherwise be reported with yesterday's date, 24 h back)
        with contextlib.suppress(Reject):
            ep.date = date(f[_RMC["datestamp"]])
        return
    if status != "A" or (mode and mode not in _RMC_MODE_QUALITY):
        raise Reject("parse_error")
    ep.rmc_quality = _RMC_MODE_QUALITY.get(mode, 1)
    ep.rmc_pos = (angle_e7(f[_RMC["lat"]], f[_RMC["lat_dir"]], 90, "S", "N"),
                  angle_e7(f[_RMC["lon"]], f[_RMC["lon_dir"]], 180, "W", "E"))
    ep.date = date(f[_RMC["datestamp"]])
    speed = f[_RMC["spd_over_grnd"]]
    ep.speed_cmps = knots_cmps(speed) if speed else None  # None: VTG may have it
    course = f[_RMC["true_course"]]
    ep.course_cdeg = course_cdeg(course) if course else None


def _vtg(f: list[str], ep: _Epoch) -> None:
    if f[_VTG["faa_mode"]] == "N":
        return  # no fix: says nothing about the epoch's position, and RMC/GGA carry validity
    course = f[_VTG["true_track"]]
    knots = f[_VTG["spd_over_grnd_kts"]]
    kmh = f[_VTG["spd_over_grnd_kmph"]]
    speed = knots_cmps(knots) if knots else (kmh_cmps(kmh) if kmh else None)
    ep.vtg = (speed, course_cdeg(course) if course else None)


def _gsa(f: list[str], ep: _Epoch) -> None:
    fix_type = small_int(f[_GSA["mode_fix_type"]], 1)
    if fix_type == 1:
        ep.invalid = True
        return
    if fix_type not in (2, 3):
        raise Reject("parse_error")
    ep.fix_mode = fix_type
    ep.sats = sum(1 for idx in _GSA_SATS if f[idx])
    ep.pdop_x10 = dop_x10(f[_GSA["pdop"]])
    ep.hdop_x10 = dop_x10(f[_GSA["hdop"]])
    ep.vdop_x10 = dop_x10(f[_GSA["vdop"]])


def _gst(f: list[str], ep: _Epoch) -> None:
    lat, lon = f[_GST["std_dev_latitude"]], f[_GST["std_dev_longitude"]]
    if not (lat and lon):
        return  # receivers send an empty GST while they have no fix
    alt = f[_GST["std_dev_altitude"]]
    err = (fixed(lat, 2), fixed(lon, 2), fixed(alt, 2) if alt else None)
    if min(err[0], err[1], err[2] or 0) < 0:
        raise Reject("parse_error")
    ep.err = err


def _merge(ep: _Epoch, part: _Epoch, kind: str) -> None:
    """Fold one fully parsed sentence into its epoch (a damaged sentence never half-merges).

    GGA is the authority for satellites and HDOP; GSA fills them in only for receivers that
    send no GGA, and adds up the satellites of the several GSAs a multi-GNSS receiver sends.
    """
    ep.invalid |= part.invalid
    if part.invalid:
        if part.date is not None:  # a status-V RMC's date (see _rmc)
            ep.date = part.date
        return
    if kind == "GGA":
        ep.gga_quality, ep.lat_e7, ep.lon_e7 = part.gga_quality, part.lat_e7, part.lon_e7
        ep.alt_cm = part.alt_cm
        ep.sats = part.sats
        ep.hdop_x10 = part.hdop_x10
    elif kind == "RMC":
        ep.rmc_quality, ep.rmc_pos, ep.date = part.rmc_quality, part.rmc_pos, part.date
        ep.speed_cmps, ep.course_cdeg = part.speed_cmps, part.course_cdeg
    elif kind == "VTG":
        ep.vtg = part.vtg
    elif kind == "GSA":
        first_gsa = ep.fix_mode is None
        ep.fix_mode, ep.pdop_x10, ep.vdop_x10 = part.fix_mode, part.pdop_x10, part.vdop_x10
        if ep.gga_quality is None and "GGA" not in ep.kinds:
            ep.sats = (part.sats or 0) + (0 if first_gsa else ep.sats or 0)
            ep.hdop_x10 = part.hdop_x10
    else:
        ep.err = part.err


_PARSERS: dict[str, Callable[[list[str], _Epoch], None]] = {
    "GGA": _gga, "RMC": _rmc, "VTG": _vtg, "GSA": _gsa, "GST": _gst}
_TIME_FIELD = {"GGA": _GGA["timestamp"], "RMC": _RMC["timestamp"], "GST": _GST["timestamp"]}


class NmeaDecoder:
    """Stateful line decoder: ``feed`` one line at a time, get a ``GpsFix`` when an epoch is done.

    An epoch is emitted once every sentence type the receiver sent in its previous epochs has
    arrived, GSA as many times as it came (the first epoch: once GGA and RMC have), or when a
    sentence of a later epoch
    arrives first. RMC is required (only it has the date): GGA without it is dropped as
    ``no_date``. If any sentence says "no fix" the epoch becomes a ``NoFix``: a receiver
    contradicting itself is not evidence for customs, and the outage is what matters then.
    ``flush`` closes the pending epoch at end of stream.

    ``counts`` holds a reason for every line that did not end up in an emitted fix;
    ``emitted`` counts fixes returned.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.emitted = 0
        self.rejected = 0  # lines refused outright (damaged, unsupported), not merged ones
        self._pending: _Epoch | None = None
        self._closed_tod: int | None = None
        self._seen: set[str] = set()  # sentence types of the current epoch, even late ones
        self._seen_before: frozenset[str] = frozenset()
        self._expected = _FIRST_EPOCH
        # a multi-GNSS receiver sends one GSA per constellation: learn how many, like the types
        self._gsas = self._gsas_before = self._gsas_expected = 0
        self._last_date: tuple[int, int, int] | None = None

    def feed(self, line: bytes) -> list[GpsFix | NoFix]:
        """Consume one line (CR/LF optional); return the epochs it completed (usually none or
        one; two when it closes a stale epoch and completes its own). Never raises."""
        try:
            return self._feed(bytes(line))
        except Reject as rej:
            self.counts[str(rej.args[0])] += 1
        except Exception:  # pragma: no cover - defensive: untrusted input must not kill a source
            self.counts["internal_error"] += 1
        self.rejected += 1
        return []

    def flush(self) -> list[GpsFix | NoFix]:
        """Emit (or drop, with its reason counted) the epoch still waiting for more sentences."""
        try:
            return self._close()
        except Exception:  # pragma: no cover - defensive
            self._pending = None
            self.counts["internal_error"] += 1
            return []

    def _feed(self, line: bytes) -> list[GpsFix | NoFix]:
        fields = frame(line)
        if len(fields) < _WIDTH:  # a truncated sentence reads as empty fields, not IndexError
            fields += [""] * (_WIDTH - len(fields))
        head = fields[0]
        talker, kind = head[:2], head[2:]
        parse = _PARSERS.get(kind)
        if talker not in TALKERS or parse is None:
            raise Reject("unsupported")
        part = _Epoch(0)
        parse(fields, part)  # into a scratch epoch: a damaged sentence never half-merges
        if kind not in _TIMED:
            return self._untimed(kind, part)
        try:
            tod_ms = time_of_day_ms(fields[_TIME_FIELD[kind]])
        except Reject:
            if part.invalid:  # receivers without a fix often have no time either
                self.counts["invalid_fix"] += 1
                return [NoFix(None)]
            raise
        out: list[GpsFix | NoFix] = []
        pending = self._pending
        if pending is not None and pending.tod_ms != tod_ms:
            out = self._close()
            pending = None
        if pending is None:
            if tod_ms == self._closed_tod:  # a straggler of the epoch already emitted
                self._seen.add(kind)
                self.counts["after_epoch"] += 1
                return out
            self._start_epoch(tod_ms)
            pending = self._pending
            assert pending is not None
        if kind in pending.kinds:
            self.counts["duplicate"] += 1
            return out
        _merge(pending, part, kind)
        return out + self._added(pending, kind)

    def _untimed(self, kind: str, part: _Epoch) -> list[GpsFix | NoFix]:
        pending = self._pending
        if pending is None:
            self._seen.add(kind)
            self._gsas += kind == "GSA"
            self.counts["after_epoch" if self._closed_tod is not None else "no_epoch"] += 1
            return []
        if kind in pending.kinds and kind != "GSA":  # multi-GNSS receivers send a GSA each
            self.counts["duplicate"] += 1
            return []
        _merge(pending, part, kind)
        return self._added(pending, kind)

    def _start_epoch(self, tod_ms: int) -> None:
        if self._seen:
            seen = frozenset(self._seen)
            # types sent in each of the last two epochs: one that comes only now and then
            # (GST every 5 s, say) must not hold every other fix back until the next epoch
            common = seen & self._seen_before
            if common:
                self._expected = common
                self._gsas_expected = min(self._gsas, self._gsas_before)
            else:
                self._expected, self._gsas_expected = seen, self._gsas
            self._expected |= {"RMC"}
            self._seen_before, self._gsas_before = seen, self._gsas
        self._seen = set()
        self._gsas = 0
        self._pending = _Epoch(tod_ms)

    def _added(self, pending: _Epoch, kind: str) -> list[GpsFix | NoFix]:
        pending.kinds.add(kind)
        pending.lines += 1
        self._seen.add(kind)
        if kind == "GSA":
            pending.gsas += 1
            self._gsas += 1
        # all GSAs too: closing on the first of two would drop the second constellation
        if pending.kinds >= self._expected and pending.gsas >= self._gsas_expected:
            return self._close()
        return []

    def _close(self) -> list[GpsFix | NoFix]:
        ep, self._pending = self._pending, None
        if ep is None:
            return []
        self._closed_tod = ep.tod_ms
        if ep.date is not None:
            self._last_date = ep.date
        if ep.invalid:
            self.counts["invalid_fix"] += ep.lines
            return [NoFix(self._t_ms(ep.date or self._last_date, ep.tod_ms))]
        if ep.rmc_quality is None or ep.date is None:
            self.counts["no_date"] += ep.lines
            return []
        t_ms = self._t_ms(ep.date, ep.tod_ms)
        assert t_ms is not None and ep.rmc_pos is not None
        gga = ep.gga_quality is not None
        speed, course = ep.speed_cmps, ep.course_cdeg
        if ep.vtg is not None:  # VTG fills in what RMC left empty, field by field
            speed = speed if speed is not None else ep.vtg[0]
            course = course if course is not None else ep.vtg[1]
        self.emitted += 1
        return [GpsFix(
            t_ms=t_ms,
            lat_e7=ep.lat_e7 if gga else ep.rmc_pos[0],
            lon_e7=ep.lon_e7 if gga else ep.rmc_pos[1],
            fix_quality=ep.gga_quality if ep.gga_quality is not None else ep.rmc_quality,
            sats=ep.sats if ep.sats is not None else UNKNOWN_SATS,
            hdop_x10=ep.hdop_x10 if ep.hdop_x10 is not None else UNKNOWN_HDOP_X10,
            alt_cm=ep.alt_cm,
            speed_cmps=speed or 0,
            course_cdeg=course or 0,
            fix_mode=ep.fix_mode,
            pdop_x10=ep.pdop_x10,
            vdop_x10=ep.vdop_x10,
            err_lat_cm=ep.err[0] if ep.err else None,
            err_lon_cm=ep.err[1] if ep.err else None,
            err_alt_cm=ep.err[2] if ep.err else None,
        )]

    @staticmethod
    def _t_ms(day: tuple[int, int, int] | None, tod_ms: int) -> int | None:
        if day is None:
            return None
        return calendar.timegm((*day, 0, 0, 0)) * 1000 + tod_ms
