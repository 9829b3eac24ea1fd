"""NMEA 0183 GPS decoding for the gateway: bytes from a serial line in, integer fixes out.

Pure logic, no I/O: the serial source splits its byte stream into lines and calls
``NmeaDecoder.feed``. The decoder is the first thing untrusted bytes touch, so it never raises,
demands the ``*hh`` checksum (the NMEA default of "checksum optional" would let line noise
become a position), and counts every line it throws away by reason so a gateway installer can
tell a wrong baud rate (``not_ascii``/``bad_checksum``) from a receiver without a fix
(``invalid_fix``) from a receiver that never says the date (``no_date``).

Receivers differ in what they send for one epoch: GGA (quality, satellites, HDOP, altitude),
GNS (the same, with a mode per constellation), RMC (date, speed, course), GLL (position),
ZDA (date), VTG (speed, course), GSA (2D/3D, DOPs, satellites used) and GST (error
estimates); some send one GGA per constellation, some GGA five times as often as RMC, some
never send RMC at all. Every sentence but VTG and GSA carries the epoch's time, so those two
belong to the epoch opened before them. The decoder learns which sentences the receiver sends
per epoch and emits the fix the moment the last of them arrives, rather than waiting for the
next epoch to start: that wait would add a whole fix interval to every alert's latency.

The date comes from RMC or ZDA; an epoch without either (the GGA-only epochs between two RMCs,
a GGA + GSA receiver after its first ZDA) is dated from the last dated epoch, as the instant
nearest to it with the epoch's time of day, so the date rolls over at midnight and a receiver
whose clock steps back is not moved a day ahead.

Numbers are converted with exact integer arithmetic from the sentence text, never via binary
floats, because the result is signed and must be reproducible bit for bit. The per-sentence
parsers are in ``nmea_sentences``; the per-line parsing is our own, because building pynmea2
objects cost more than half the gateway's ingest time.

Independent of ``firmware_sim`` by design, so simulator and agent cannot share a bug.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Callable
from typing import Any

from edge_agent.sources.gps_fix import GpsFix, NoFix
from edge_agent.sources.nmea_fields import Reject, frame, time_of_day_ms
from edge_agent.sources.nmea_sentences import (
    NOFIX,
    PARSERS,
    PART_NOFIX,
    RANK_GGA,
    RANK_GN_GNS,
    RANK_GNS,
    TALKERS,
    WIDTH,
    Pos,
)

__all__ = ["TALKERS", "GpsFix", "NmeaDecoder", "NoFix"]

DAY_MS = 86_400_000
_FIRST_EPOCH = {"GGA": 1, "RMC": 1}
_PER_TALKER = frozenset({"GGA", "GNS"})  # one per constellation in an epoch is no duplicate
_POSITION = frozenset({"GGA", "GNS", "RMC"})
_NO_RANK = 99


class _Epoch:
    """Everything the sentences of one epoch said, merged as they arrive."""

    __slots__ = ("comb_sats", "course_cdeg", "date", "err", "fix_mode", "gga_sats", "gns_sats",
                 "gsa_hdop", "gsa_sats", "hdop_rank", "hdop_x10", "invalid", "keys", "lines",
                 "missing", "part_nofix", "pdop_x10", "pos", "speed_cmps", "tod_ms",
                 "vdop_x10", "vtg")

    def __init__(self, tod_ms: int, missing: dict[str, int]):
        self.tod_ms = tod_ms
        self.missing = missing  # sentence types (and how many) still expected
        self.keys: set[str] = set()
        self.lines = 0
        self.invalid = False  # a sentence said "no fix"
        self.part_nofix = False  # a GGA/GNS said "no fix": another GGA/GNS may still have one
        self.pos: Pos | None = None  # the best-ranked position sentence's figures
        self.hdop_x10: int | None = None
        self.hdop_rank = _NO_RANK
        self.comb_sats: int | None = None  # from a GN/IN GGA or GNS: the whole solution
        self.gga_sats: int | None = None  # summed over per-constellation GGAs
        self.gns_sats: int | None = None
        self.gsa_sats: int | None = None
        self.gsa_hdop: int | None = None
        self.date: tuple[int, int, int] | None = None
        self.speed_cmps: int | None = None
        self.course_cdeg: int | None = None
        self.vtg: tuple[int | None, int | None] | None = None
        self.fix_mode: int | None = None
        self.pdop_x10: int | None = None
        self.vdop_x10: int | None = None
        self.err: tuple[int, int, int | None] | None = None


def _merge_pos(ep: _Epoch, value: Pos | str) -> None:
    if value is PART_NOFIX:
        ep.part_nofix = True
        return
    if value is NOFIX:
        ep.invalid = True
        return
    assert not isinstance(value, str)
    rank = value[0]
    if ep.pos is None or rank < ep.pos[0]:
        ep.pos = value
    if value[5] is not None and rank < ep.hdop_rank:
        ep.hdop_x10, ep.hdop_rank = value[5], rank
    sats = value[6]
    if sats is not None:
        if rank <= RANK_GN_GNS:
            if ep.comb_sats is None:
                ep.comb_sats = sats
        elif rank == RANK_GGA:  # one GGA per constellation: each counts its own satellites
            ep.gga_sats = sats + (ep.gga_sats or 0)
        elif rank == RANK_GNS:
            ep.gns_sats = sats + (ep.gns_sats or 0)


def _merge_rmc(ep: _Epoch, value: Any) -> None:
    pos, day, speed, course = value
    if day is not None and ep.date is None:
        ep.date = day
    _merge_pos(ep, pos)
    if pos is not NOFIX:
        ep.speed_cmps, ep.course_cdeg = speed, course


def _merge_zda(ep: _Epoch, value: Any) -> None:
    ep.date = value  # a four-digit year: preferred to RMC's two digits


def _merge_vtg(ep: _Epoch, value: Any) -> None:
    ep.vtg = value


def _merge_gsa(ep: _Epoch, value: Any) -> None:
    """GGA/GNS are the authority for satellites and HDOP; GSA fills them in only for receivers
    that send neither, adding up the satellites of the GSA each constellation gets."""
    if value is NOFIX:
        ep.invalid = True
        return
    ep.fix_mode, sats, ep.pdop_x10, ep.gsa_hdop, ep.vdop_x10 = value
    ep.gsa_sats = sats + (ep.gsa_sats or 0)


def _merge_gst(ep: _Epoch, value: Any) -> None:
    if value is not None:  # receivers send an empty GST while they have no fix
        ep.err = value


_MERGE: dict[str, Callable[[_Epoch, Any], None]] = {
    "GGA": _merge_pos, "GNS": _merge_pos, "GLL": _merge_pos, "RMC": _merge_rmc,
    "ZDA": _merge_zda, "VTG": _merge_vtg, "GSA": _merge_gsa, "GST": _merge_gst}


NOT_DROPPED = frozenset({"unsupported", "proprietary"})
"""Counts of sentences a healthy receiver sends that carry nothing we read (GSV, TXT, $P...);
every other count names why a line was dropped."""


class NmeaDecoder:
    """Stateful line decoder: ``feed`` one line at a time, get a ``GpsFix`` when an epoch is done.

    An epoch is emitted once every sentence type the receiver sent in each of its last two
    epochs has arrived, as many times as it came (several GSAs, a GGA per constellation; the
    first epoch: once GGA and RMC have), or when a sentence of a later epoch arrives first.
    A GLL is not waited for when GGA, GNS or RMC is, nor a ZDA when RMC is: they would add
    nothing but latency. If a sentence says "no fix" the epoch becomes a ``NoFix``: a receiver
    contradicting itself is not evidence for customs, and the outage is what matters then. The
    exception is a GGA/GNS of quality 0 next to another GGA/GNS with a fix: a constellation
    without satellites in a receiver that reports each constellation on its own.
    ``flush`` closes the pending epoch at end of stream.

    ``counts`` holds a reason for every line that did not end up in an emitted fix;
    ``emitted`` counts fixes returned; ``rejected`` the lines refused as damaged or foreign.
    Sentences of a GNSS talker that the decoder does not read (GSV, TXT, ...) and proprietary
    ones (``$P...``: PUBX, PGRME, PSRF, ...) are counted but are not rejects: they are what a
    healthy receiver sends.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.emitted = 0
        self.rejected = 0
        self._pending: _Epoch | None = None
        self._closed_tod: int | None = None
        self._seen: dict[str, int] = {}  # sentence types of the current epoch, even late ones
        self._seen_before: dict[str, int] = {}
        self._steady = False  # _expected was learnt from two equal epochs
        self._expected: dict[str, int] = _FIRST_EPOCH
        self._anchor: int | None = None  # t_ms of the last dated epoch, to date the next ones
        self._day: tuple[tuple[int, int, int], int] | None = None  # (date, its Unix ms)

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

    def reset(self) -> list[GpsFix | NoFix]:
        """Flush, and forget the date: after a reconnect the receiver may have been off for
        any time, even another one, so the next epochs wait for a dated sentence."""
        out = self.flush()
        self._anchor = None
        return out

    def _feed(self, line: bytes) -> list[GpsFix | NoFix]:
        fields = frame(line)
        head = fields[0]
        talker, kind = head[:2], head[2:]
        spec = PARSERS.get(kind)
        if spec is None or talker not in TALKERS:
            if head[:1] == "P":
                self.counts["proprietary"] += 1
            elif talker in TALKERS:
                self.counts["unsupported"] += 1
            else:
                raise Reject("unknown_talker")
            return []
        if len(fields) < WIDTH:  # a truncated sentence reads as empty fields, not IndexError
            fields += [""] * (WIDTH - len(fields))
        parse, time_idx = spec
        value = parse(fields, talker)  # parsed whole first: a damaged one never half-merges
        if time_idx is None:
            return self._untimed(kind, value)
        if value is None and kind == "ZDA":
            self.counts["no_time"] += 1  # a receiver that does not know the date yet
            return []
        try:
            tod_ms = time_of_day_ms(fields[time_idx])
        except Reject:
            if value is NOFIX or value is PART_NOFIX or (kind == "RMC" and value[0] is NOFIX):
                self.counts["invalid_fix"] += 1  # without a fix, often without a time too
                return [NoFix(None)]
            raise
        out: list[GpsFix | NoFix] = []
        pending = self._pending
        if pending is not None and pending.tod_ms != tod_ms:
            out = self._close()
            pending = None
        if pending is None:
            if tod_ms == self._closed_tod:  # a straggler of the epoch already emitted
                self._seen[kind] = self._seen.get(kind, 0) + 1
                self.counts["after_epoch"] += 1
                day = value if kind == "ZDA" else value[1] if kind == "RMC" else None
                if day is not None:  # its date still dates the epochs after it
                    self._anchor = self._day_ms(day) + tod_ms
                return out
            pending = self._start_epoch(tod_ms)
        key = head if kind in _PER_TALKER else kind
        if key in pending.keys:
            self.counts["duplicate"] += 1
            return out
        _MERGE[kind](pending, value)
        return out + self._added(pending, kind, key)

    def _untimed(self, kind: str, value: Any) -> list[GpsFix | NoFix]:
        pending = self._pending
        if pending is None:
            self._seen[kind] = self._seen.get(kind, 0) + 1
            self.counts["after_epoch" if self._closed_tod is not None else "no_epoch"] += 1
            return []
        if kind in pending.keys:  # only VTG: GSAs are never keyed, one per constellation
            self.counts["duplicate"] += 1
            return []
        _MERGE[kind](pending, value)
        return self._added(pending, kind, kind if kind == "VTG" else None)

    def _start_epoch(self, tod_ms: int) -> _Epoch:
        seen, before = self._seen, self._seen_before
        if seen:
            steady = seen == before
            if not (steady and self._steady):
                # types sent in each of the last two epochs: one that comes only now and then
                # (GST every 5 s, RMC with every fifth GGA) must not hold the others back
                common = {k: min(n, before[k]) for k, n in seen.items() if k in before}
                expected = common or dict(seen)
                if "GLL" in expected and not _POSITION.isdisjoint(expected):
                    del expected["GLL"]
                if "ZDA" in expected and "RMC" in expected:
                    del expected["ZDA"]
                self._expected = expected
            self._steady = steady
            self._seen_before, self._seen = seen, {}
        pending = self._pending = _Epoch(tod_ms, dict(self._expected))
        return pending

    def _added(self, pending: _Epoch, kind: str, key: str | None) -> list[GpsFix | NoFix]:
        if key is not None:
            pending.keys.add(key)
        pending.lines += 1
        seen = self._seen
        seen[kind] = seen.get(kind, 0) + 1
        missing = pending.missing
        left = missing.get(kind)
        if left is not None:
            if left > 1:
                missing[kind] = left - 1
            else:
                del missing[kind]
                if not missing:
                    return self._close()
        return []

    def _close(self) -> list[GpsFix | NoFix]:
        ep, self._pending = self._pending, None
        if ep is None:
            return []
        self._closed_tod = ep.tod_ms
        pos = ep.pos
        if ep.invalid or (ep.part_nofix and (pos is None or pos[0] > RANK_GNS)):
            self.counts["invalid_fix"] += ep.lines
            # only a dated report moves the anchor: a receiver without a fix may not know
            # the time, and a wrong time of day would date the next fixes a day off
            return [NoFix(self._t_ms(ep, ep.date is not None))]
        t_ms = self._t_ms(ep, True)
        if pos is None:  # only ZDA/GST: a date, an error estimate, but no position
            self.counts["no_position"] += ep.lines
            return []
        if t_ms is None:
            self.counts["no_date"] += ep.lines
            return []
        sats = ep.comb_sats
        if sats is None:
            sats = ep.gga_sats if ep.gga_sats is not None else \
                ep.gns_sats if ep.gns_sats is not None else ep.gsa_sats
        speed, course = ep.speed_cmps, ep.course_cdeg
        if ep.vtg is not None:  # VTG fills in what RMC left empty, field by field
            speed = speed if speed is not None else ep.vtg[0]
            course = course if course is not None else ep.vtg[1]
        err = ep.err
        self.emitted += 1
        return [GpsFix(
            t_ms=t_ms,
            lat_e7=pos[1],
            lon_e7=pos[2],
            fix_quality=pos[3],
            sats=sats,
            hdop_x10=ep.hdop_x10 if ep.hdop_x10 is not None else ep.gsa_hdop,
            alt_cm=pos[4],
            speed_cmps=speed,
            course_cdeg=course,
            fix_mode=ep.fix_mode,
            pdop_x10=ep.pdop_x10,
            vdop_x10=ep.vdop_x10,
            err_lat_cm=err[0] if err else None,
            err_lon_cm=err[1] if err else None,
            err_alt_cm=err[2] if err else None,
        )]

    def _t_ms(self, ep: _Epoch, anchor: bool) -> int | None:
        """The epoch's Unix ms: its own date, else the instant nearest the last dated epoch."""
        if ep.date is not None:
            t_ms = self._day_ms(ep.date) + ep.tod_ms
        elif self._anchor is not None:
            last = self._anchor
            t_ms = last - last % DAY_MS + ep.tod_ms
            if t_ms - last > DAY_MS // 2:
                t_ms -= DAY_MS
            elif last - t_ms > DAY_MS // 2:
                t_ms += DAY_MS  # past midnight
        else:
            return None
        if anchor:
            self._anchor = t_ms
        return t_ms

    def _day_ms(self, day: tuple[int, int, int]) -> int:
        cached = self._day
        if cached is None or cached[0] != day:
            cached = self._day = (day, calendar.timegm((*day, 0, 0, 0)) * 1000)
        return cached[1]
