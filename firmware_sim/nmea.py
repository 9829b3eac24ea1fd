"""NMEA 0183 sentence encoding for the simulated GPS receiver (GGA, RMC, VTG, GSA, GST).

This module plays the role of receiver firmware, so it deliberately shares no code with the
agent's decoder (``edge_agent.sources.nmea``): if both sides used one codec, a bug in it would
be invisible to every round-trip test. Formats follow what u-blox-class receivers emit:

* latitude ``ddmm.mmmmm`` + ``N``/``S``, longitude ``dddmm.mmmmm`` + ``E``/``W``
  (five decimals of minutes ~ 1.9 cm, so rounding never hides a centimetre-scale bug),
* UTC time ``hhmmss.ss``, date ``ddmmyy``, speed in knots, course over ground in degrees,
* ``$<payload>*<XOR checksum, two upper-case hex digits>\\r\\n`` framing,
* an epoch is GGA, RMC, VTG, GSA, GST in that order (any of the last three may be left out);
  without a fix every sentence is still sent with empty position fields, and the time is
  kept once the receiver has had a first fix (``time_valid``), which is how a tunnel looks.

Everything here is pure string building; writing to a port is ``gps.py``'s job.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

KNOTS_PER_MPS = 3600.0 / 1852.0
"""1 m/s in knots (1 knot = 1852 m/h exactly)."""

_MIN_SCALE = 100_000
"""Minutes are written with five decimals: integer arithmetic in 1e-5 minute units."""


@dataclass(frozen=True, slots=True)
class SimFix:
    """One epoch of simulated receiver output, in natural units (the encoder's input).

    Floats are fine here: this is the "physical truth" the firmware formats, not a signed record.
    """

    t_ms: int
    lat: float
    lon: float
    alt_m: float = 30.0
    speed_mps: float = 0.0
    course_deg: float = 0.0
    quality: int = 1
    sats: int = 12
    hdop: float = 0.8
    geoid_sep_m: float = 14.0
    time_valid: bool = True
    """False until the receiver's first fix: time and date fields are then left empty."""
    pdop: float = 1.4
    vdop: float = 1.1
    prns: tuple[int, ...] = ()
    """Satellites used (GSA); at most 12 are written, the NMEA 2.3 field count."""
    std_lat_m: float = 0.5
    std_lon_m: float = 0.5
    std_alt_m: float = 0.8
    rms_m: float = 0.6
    semi_major_m: float = 0.55
    semi_minor_m: float = 0.45
    orientation_deg: float = 0.0

    @property
    def has_fix(self) -> bool:
        """Whether position fields are filled (GGA quality > 0)."""
        return self.quality != 0


def checksum(payload: str) -> str:
    """XOR of every character between ``$`` and ``*``, as two upper-case hex digits.

    ``payload`` must not include the leading ``$`` nor the ``*``.
    """
    value = 0
    for byte in payload.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def frame(payload: str) -> str:
    """Wrap a payload as a complete sentence: ``$payload*hh\\r\\n``."""
    return f"${payload}*{checksum(payload)}\r\n"


def _angle_minutes(value: float, deg_width: int) -> str:
    """Format ``abs(value)`` degrees as ``d..dmm.mmmmm`` with carry-safe integer rounding.

    Rounding is done once, on the total number of 1e-5 minutes, so 59.999996' can never be
    printed as ``60.00000`` (a classic firmware bug that decoders reject).
    """
    total = round(abs(value) * 60 * _MIN_SCALE)
    degrees, rem = divmod(total, 60 * _MIN_SCALE)
    minutes, frac = divmod(rem, _MIN_SCALE)
    return f"{degrees:0{deg_width}d}{minutes:02d}.{frac:05d}"


def format_lat(lat: float) -> tuple[str, str]:
    """Latitude as (``ddmm.mmmmm``, ``N``|``S``)."""
    if not -90.0 <= lat <= 90.0 or math.isnan(lat):
        raise ValueError(f"latitude out of range: {lat!r}")
    return _angle_minutes(lat, 2), "S" if lat < 0 else "N"


def format_lon(lon: float) -> tuple[str, str]:
    """Longitude as (``dddmm.mmmmm``, ``E``|``W``)."""
    if not -180.0 <= lon <= 180.0 or math.isnan(lon):
        raise ValueError(f"longitude out of range: {lon!r}")
    return _angle_minutes(lon, 3), "W" if lon < 0 else "E"


def _utc(t_ms: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(milliseconds=t_ms)


def format_time(t_ms: int, decimals: int = 2) -> str:
    """UTC time of day as ``hhmmss.ss`` (truncated, like receivers that tag the epoch start).

    ``decimals`` may be 2 (u-blox default) or 3 (needed above 100 Hz so epochs stay distinct).
    """
    if decimals not in (2, 3):
        raise ValueError("decimals must be 2 or 3")
    ts = _utc(t_ms)
    frac_ms = ts.microsecond // 1000
    frac = frac_ms // 10 if decimals == 2 else frac_ms
    return f"{ts.hour:02d}{ts.minute:02d}{ts.second:02d}.{frac:0{decimals}d}"


def format_date(t_ms: int) -> str:
    """UTC date as ``ddmmyy``."""
    ts = _utc(t_ms)
    return f"{ts.day:02d}{ts.month:02d}{ts.year % 100:02d}"


def _fix_time(fix: SimFix, decimals: int) -> str:
    return format_time(fix.t_ms, decimals) if fix.time_valid else ""


def _hemisphere_fields(fix: SimFix) -> list[str]:
    lat, ns = format_lat(fix.lat)
    lon, ew = format_lon(fix.lon)
    return [lat, ns, lon, ew]


def gga(fix: SimFix, talker: str = "GN", time_decimals: int = 2) -> str:
    """GGA sentence (time, position, quality, satellites, HDOP, altitude), CRLF-terminated.

    With ``quality == 0`` the position fields are left empty, as real receivers do before a fix.
    """
    fields = [f"{talker}GGA", _fix_time(fix, time_decimals)]
    if fix.quality == 0:
        fields += ["", "", "", "", "0", "00", "99.99", "", "", "", ""]
    else:
        fields += _hemisphere_fields(fix)
        fields += [
            str(fix.quality),
            f"{fix.sats:02d}",
            f"{fix.hdop:.2f}",
            f"{fix.alt_m:.1f}",
            "M",
            f"{fix.geoid_sep_m:.1f}",
            "M",
        ]
    fields += ["", ""]  # age of differential data, reference station id
    return frame(",".join(fields))


def _course(course_deg: float) -> str:
    """Course in degrees with two decimals; rounded before wrapping so 359.999 prints 0.00."""
    cdeg = round(course_deg * 100) % 36000
    return f"{cdeg // 100}.{cdeg % 100:02d}"


_MODE_BY_QUALITY = {0: "N", 1: "A", 2: "D", 3: "P", 4: "R", 5: "F", 6: "E", 7: "M", 8: "S"}


def rmc(fix: SimFix, talker: str = "GN", time_decimals: int = 2) -> str:
    """RMC sentence (NMEA 2.3 layout with mode indicator), CRLF-terminated.

    Status is ``A`` for any fix quality > 0 and ``V`` (position fields empty) otherwise.
    """
    valid = fix.quality != 0
    fields = [f"{talker}RMC", _fix_time(fix, time_decimals), "A" if valid else "V"]
    if valid:
        fields += _hemisphere_fields(fix)
        fields += [
            f"{fix.speed_mps * KNOTS_PER_MPS:.3f}",
            _course(fix.course_deg),
        ]
    else:
        fields += ["", "", "", "", "", ""]
    date = format_date(fix.t_ms) if fix.time_valid else ""
    fields += [date, "", "", _mode(fix)]
    return frame(",".join(fields))


def _mode(fix: SimFix) -> str:
    return _MODE_BY_QUALITY.get(fix.quality, "A")


def vtg(fix: SimFix, talker: str = "GN") -> str:
    """VTG sentence (course true/magnetic, speed in knots and km/h, mode), CRLF-terminated.

    Magnetic course is left empty, as receivers without a declination model do.
    """
    if not fix.has_fix:
        return frame(f"{talker}VTG,,T,,M,,N,,K,N")
    knots = f"{fix.speed_mps * KNOTS_PER_MPS:.3f}"
    kmh = f"{fix.speed_mps * 3.6:.3f}"
    return frame(f"{talker}VTG,{_course(fix.course_deg)},T,,M,{knots},N,{kmh},K,{_mode(fix)}")


def gsa(fix: SimFix, talker: str = "GN") -> str:
    """GSA sentence (NMEA 2.3 layout: auto mode, fix type, 12 PRN fields, PDOP/HDOP/VDOP).

    Fix type is 1 (none) or 3 (3-D); the satellites used are ``fix.prns`` (12 fields at most,
    as many u-blox units report in one GN sentence).
    """
    if not fix.has_fix:
        return frame(f"{talker}GSA,A,1" + "," * 12 + ",99.99,99.99,99.99")
    prns = [f"{p:02d}" for p in fix.prns[:12]]
    prns += [""] * (12 - len(prns))
    dops = f"{fix.pdop:.2f},{fix.hdop:.2f},{fix.vdop:.2f}"
    return frame(f"{talker}GSA,A,3,{','.join(prns)},{dops}")


def gst(fix: SimFix, talker: str = "GN", time_decimals: int = 2) -> str:
    """GST sentence: time, RMS of pseudorange residuals, error ellipse semi-major and
    semi-minor (m), ellipse orientation (deg from true north), then latitude, longitude and
    altitude standard deviations (m). Without a fix only the time is sent."""
    fields = [f"{talker}GST", _fix_time(fix, time_decimals)]
    if fix.has_fix:
        fields += [
            f"{fix.rms_m:.2f}",
            f"{fix.semi_major_m:.2f}",
            f"{fix.semi_minor_m:.2f}",
            f"{fix.orientation_deg % 180.0:.1f}",
            f"{fix.std_lat_m:.2f}",
            f"{fix.std_lon_m:.2f}",
            f"{fix.std_alt_m:.2f}",
        ]
    else:
        fields += [""] * 7
    return frame(",".join(fields))


SENTENCES = ("GGA", "RMC", "VTG", "GSA", "GST")
"""Every sentence the receiver can emit, in the order of one epoch on the wire."""


def epoch_bytes(
    fix: SimFix,
    talker: str = "GN",
    time_decimals: int = 2,
    sentences: tuple[str, ...] = SENTENCES,
) -> bytes:
    """One epoch as the bytes a receiver puts on the wire, sentences always in wire order.

    ``sentences`` selects which to send (like a receiver's message configuration); GGA and
    RMC can be switched off too, to test an agent against a receiver set up wrongly.
    """
    unknown = set(sentences) - set(SENTENCES)
    if unknown:
        raise ValueError(f"unknown NMEA sentence(s): {sorted(unknown)}")
    parts = []
    for name in SENTENCES:
        if name not in sentences:
            continue
        if name == "GGA":
            parts.append(gga(fix, talker, time_decimals))
        elif name == "RMC":
            parts.append(rmc(fix, talker, time_decimals))
        elif name == "VTG":
            parts.append(vtg(fix, talker))
        elif name == "GSA":
            parts.append(gsa(fix, talker))
        else:
            parts.append(gst(fix, talker, time_decimals))
    return "".join(parts).encode("ascii")
