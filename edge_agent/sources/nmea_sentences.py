"""One parser per NMEA 0183 sentence type the GPS decoder reads; pure, raises only Reject.

Each parser reads every field it needs before returning, so a sentence damaged anywhere is
rejected whole and never half-merged into its epoch. Results are plain tuples (one line of
a 10 Hz receiver costs a tuple, not an object), laid out as documented on each parser.

Field positions are NMEA 0183's, written out below (the tests check them against pynmea2, the
independent oracle); the number conversions are nmea_fields', exact and float-free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from edge_agent.sources.nmea_fields import (
    Reject,
    angle_e7,
    course_cdeg,
    date,
    dop_x10,
    fixed,
    kmh_cmps,
    knots_cmps,
    small_int,
    zda_date,
)

TALKERS = frozenset({"GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN", "IN"})
"""GPS, GLONASS, Galileo, BeiDou (NMEA 4.11 and the older id), QZSS, NavIC, multi-GNSS, and
integrated navigation (GNSS + inertial)."""

COMBINED = frozenset({"GN", "IN"})
"""Talkers whose GGA/GNS describe the whole solution, not one constellation's part of it."""

MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
"""FAA mode indicator (RMC, GLL, VTG, GNS; NMEA 2.3+) on the GGA quality scale; ``N`` is no
fix."""

_BEST_FIRST = "RFPDAEMS"
"""GNS reports one mode per constellation: the solution is as good as its best part (RTK over
float over differential over autonomous); manual and simulated come last so they are only
chosen, and then rejected by the filter, when nothing else is there."""
_MODE_CHARS = frozenset("N" + _BEST_FIRST)
_NAV_STATUS = frozenset({"", "S", "C", "U", "V"})
"""GNS navigational status (NMEA 4.10): safe, caution, unsafe, or ``V``, which u-blox F9 sends
with every fix ("equipment does not provide navigational status"), so it says nothing about
validity: the modes do."""

RANK_GN_GGA, RANK_GN_GNS, RANK_GGA, RANK_GNS, RANK_RMC, RANK_GLL = range(6)
"""Which sentence's position an epoch uses when several report one (lower wins): the
combined solution first, then the sentences with altitude and satellites, then the rest."""

NOFIX = "nofix"
"""The sentence says the receiver has no fix (RMC or GLL status ``V`` or mode ``N``, GSA
type 1)."""
PART_NOFIX = "part_nofix"
"""A GGA of quality 0 or a GNS with every mode ``N``: no fix, unless another GGA/GNS of the
same epoch has one (receivers that send a GGA per constellation report an empty one as 0)."""


# Field positions of each sentence (1 = the first field after the address), as NMEA 0183 4.11
# lays them out; GNS has the navigational status that 4.10 added. tests/test_nmea.py holds
# these against pynmea2's definitions, the independent oracle.
_GGA = {"timestamp": 1, "lat": 2, "lat_dir": 3, "lon": 4, "lon_dir": 5, "gps_qual": 6,
    "num_sats": 7, "horizontal_dil": 8, "altitude": 9, "altitude_units": 10, "geo_sep": 11,
    "geo_sep_units": 12, "age_gps_data": 13, "ref_station_id": 14}
_RMC = {"timestamp": 1, "status": 2, "lat": 3, "lat_dir": 4, "lon": 5, "lon_dir": 6,
    "spd_over_grnd": 7, "true_course": 8, "datestamp": 9, "mag_variation": 10, "mag_var_dir": 11,
    "mode_indicator": 12, "nav_status": 13}
_VTG = {"true_track": 1, "true_track_sym": 2, "mag_track": 3, "mag_track_sym": 4,
    "spd_over_grnd_kts": 5, "spd_over_grnd_kts_sym": 6, "spd_over_grnd_kmph": 7,
    "spd_over_grnd_kmph_sym": 8, "faa_mode": 9}
_GSA = {"mode": 1, "mode_fix_type": 2, "sv_id01": 3, "sv_id02": 4, "sv_id03": 5, "sv_id04": 6,
    "sv_id05": 7, "sv_id06": 8, "sv_id07": 9, "sv_id08": 10, "sv_id09": 11, "sv_id10": 12,
    "sv_id11": 13, "sv_id12": 14, "pdop": 15, "hdop": 16, "vdop": 17}
_GST = {"timestamp": 1, "rms": 2, "std_dev_major": 3, "std_dev_minor": 4, "orientation": 5,
    "std_dev_latitude": 6, "std_dev_longitude": 7, "std_dev_altitude": 8}
_GLL = {"lat": 1, "lat_dir": 2, "lon": 3, "lon_dir": 4, "timestamp": 5, "status": 6, "faa_mode": 7}
_ZDA = {"timestamp": 1, "day": 2, "month": 3, "year": 4, "local_zone": 5, "local_zone_minutes": 6}
_GNS = {"timestamp": 1, "lat": 2, "lat_dir": 3, "lon": 4, "lon_dir": 5, "mode_indicator": 6,
    "num_sats": 7, "hdop": 8, "altitude": 9, "geo_sep": 10, "age_gps_data": 11, "differential": 12,
    "nav_status": 13}
_GSA_SATS = tuple(_GSA[f"sv_id{n:02d}"] for n in range(1, 13))

Pos = tuple[int, int, int, int, int | None, int | None, int | None]
"""(rank, lat_e7, lon_e7, quality, alt_cm, hdop_x10, sats)."""


def gga(f: list[str], talker: str) -> Pos | str:
    quality = small_int(f[_GGA["gps_qual"]], 2)
    if quality == 0:
        return PART_NOFIX
    lat = angle_e7(f[_GGA["lat"]], f[_GGA["lat_dir"]], 90, "S", "N")
    lon = angle_e7(f[_GGA["lon"]], f[_GGA["lon_dir"]], 180, "W", "E")
    sats = f[_GGA["num_sats"]]
    alt = f[_GGA["altitude"]]
    return (RANK_GN_GGA if talker in COMBINED else RANK_GGA, lat, lon, quality,
            fixed(alt, 2) if alt else None, dop_x10(f[_GGA["horizontal_dil"]]),
            small_int(sats, 3) if sats else None)


def gns(f: list[str], talker: str) -> Pos | str:
    modes, nav = f[_GNS["mode_indicator"]], f[_GNS["nav_status"]]
    if not modes or not _MODE_CHARS.issuperset(modes) or nav not in _NAV_STATUS:
        raise Reject("parse_error")
    fixing = [m for m in modes if m != "N"]
    if not fixing:
        return PART_NOFIX
    lat = angle_e7(f[_GNS["lat"]], f[_GNS["lat_dir"]], 90, "S", "N")
    lon = angle_e7(f[_GNS["lon"]], f[_GNS["lon_dir"]], 180, "W", "E")
    sats = f[_GNS["num_sats"]]
    alt = f[_GNS["altitude"]]
    return (RANK_GN_GNS if talker in COMBINED else RANK_GNS, lat, lon,
            MODE_QUALITY[min(fixing, key=_BEST_FIRST.index)], fixed(alt, 2) if alt else None,
            dop_x10(f[_GNS["hdop"]]), small_int(sats, 3) if sats else None)


Rmc = tuple[Pos | str, tuple[int, int, int] | None, int | None, int | None]
"""(position or NOFIX, date, speed_cmps, course_cdeg)."""


def rmc(f: list[str], talker: str) -> Rmc:
    status = f[_RMC["status"]]
    mode = f[_RMC["mode_indicator"]]
    if status == "V" or mode == "N":
        # the receiver's date still dates its no-fix report (a tunnel across midnight would
        # otherwise be reported with yesterday's date, 24 h back)
        day = None
        with contextlib.suppress(Reject):
            day = date(f[_RMC["datestamp"]])
        return (NOFIX, day, None, None)
    if status != "A" or (mode and mode not in MODE_QUALITY):
        raise Reject("parse_error")
    pos = (RANK_RMC, angle_e7(f[_RMC["lat"]], f[_RMC["lat_dir"]], 90, "S", "N"),
           angle_e7(f[_RMC["lon"]], f[_RMC["lon_dir"]], 180, "W", "E"),
           MODE_QUALITY.get(mode, 1), None, None, None)
    day = date(f[_RMC["datestamp"]])
    speed = f[_RMC["spd_over_grnd"]]
    course = f[_RMC["true_course"]]
    return (pos, day, knots_cmps(speed) if speed else None,
            course_cdeg(course) if course else None)


def gll(f: list[str], talker: str) -> Pos | str:
    status, mode = f[_GLL["status"]], f[_GLL["faa_mode"]]
    if status == "V" or mode == "N":
        return NOFIX
    if status != "A" or (mode and mode not in MODE_QUALITY):
        raise Reject("parse_error")
    return (RANK_GLL, angle_e7(f[_GLL["lat"]], f[_GLL["lat_dir"]], 90, "S", "N"),
            angle_e7(f[_GLL["lon"]], f[_GLL["lon_dir"]], 180, "W", "E"),
            MODE_QUALITY.get(mode, 1), None, None, None)


def zda(f: list[str], talker: str) -> tuple[int, int, int] | None:
    """The UTC date, or None from a receiver that does not know it yet (empty date fields,
    with or without a time)."""
    day, month, year = f[_ZDA["day"]], f[_ZDA["month"]], f[_ZDA["year"]]
    if not (day or month or year):
        return None
    return zda_date(day, month, year)


def vtg(f: list[str], talker: str) -> tuple[int | None, int | None] | None:
    """(speed_cmps, course_cdeg), or None for a VTG in mode N (says nothing of the epoch)."""
    if f[_VTG["faa_mode"]] == "N":
        return None
    course = f[_VTG["true_track"]]
    knots = f[_VTG["spd_over_grnd_kts"]]
    kmh = f[_VTG["spd_over_grnd_kmph"]]
    speed = knots_cmps(knots) if knots else (kmh_cmps(kmh) if kmh else None)
    return (speed, course_cdeg(course) if course else None)


Gsa = tuple[int, int, int | None, int | None, int | None]
"""(fix_mode, satellites used, pdop_x10, hdop_x10, vdop_x10)."""


def gsa(f: list[str], talker: str) -> Gsa | str:
    fix_type = small_int(f[_GSA["mode_fix_type"]], 1)
    if fix_type == 1:
        return NOFIX
    if fix_type not in (2, 3):
        raise Reject("parse_error")
    return (fix_type, sum(1 for idx in _GSA_SATS if f[idx]), dop_x10(f[_GSA["pdop"]]),
            dop_x10(f[_GSA["hdop"]]), dop_x10(f[_GSA["vdop"]]))


def gst(f: list[str], talker: str) -> tuple[int, int, int | None] | None:
    """1-sigma (lat, lon, alt) errors in cm, or None for the empty GST of a receiver without
    a fix."""
    lat, lon = f[_GST["std_dev_latitude"]], f[_GST["std_dev_longitude"]]
    if not (lat and lon):
        return None
    alt = f[_GST["std_dev_altitude"]]
    err = (fixed(lat, 2), fixed(lon, 2), fixed(alt, 2) if alt else None)
    if min(err[0], err[1], err[2] or 0) < 0:
        raise Reject("parse_error")
    return err


PARSERS: dict[str, tuple[Callable[[list[str], str], Any], int | None]] = {
    "GGA": (gga, _GGA["timestamp"]),
    "RMC": (rmc, _RMC["timestamp"]),
    "GNS": (gns, _GNS["timestamp"]),
    "GLL": (gll, _GLL["timestamp"]),
    "ZDA": (zda, _ZDA["timestamp"]),
    "GST": (gst, _GST["timestamp"]),
    "VTG": (vtg, None),
    "GSA": (gsa, None),
}
"""Sentence type -> (parser, position of its time field; None: it belongs to the epoch opened
before it)."""

WIDTH = 1 + max(max(t.values()) for t in (_GGA, _RMC, _VTG, _GSA, _GST, _GLL, _ZDA, _GNS))
"""Fields a sentence is padded to, so a truncated one reads as empty fields, not IndexError."""
