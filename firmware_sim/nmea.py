"""NMEA 0183 sentence encoding for the simulated GPS receiver.

This module plays the role of receiver firmware, so it deliberately shares no code with the
agent's decoder (``edge_agent.sources.nmea``): if both sides used one codec, a bug in it would
be invisible to every round-trip test. Formats follow what u-blox-class receivers emit:

* latitude ``ddmm.mmmmm`` + ``N``/``S``, longitude ``dddmm.mmmmm`` + ``E``/``W``
  (five decimals of minutes ~ 1.9 cm, so rounding never hides a centimetre-scale bug),
* UTC time ``hhmmss.ss``, date ``ddmmyy``, speed in knots, course over ground in degrees,
* ``$<payload>*<XOR checksum, two upper-case hex digits>\\r\\n`` framing.

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


def _hemisphere_fields(fix: SimFix) -> list[str]:
    lat, ns = format_lat(fix.lat)
    lon, ew = format_lon(fix.lon)
    return [lat, ns, lon, ew]


def gga(fix: SimFix, talker: str = "GN", time_decimals: int = 2) -> str:
    """GGA sentence (time, position, quality, satellites, HDOP, altitude), CRLF-terminated.

    With ``quality == 0`` the position fields are left empty, as real receivers do before a fix.
    """
    fields = [f"{talker}GGA", format_time(fix.t_ms, time_decimals)]
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
    fields = [f"{talker}RMC", format_time(fix.t_ms, time_decimals), "A" if valid else "V"]
    if valid:
        fields += _hemisphere_fields(fix)
        fields += [
            f"{fix.speed_mps * KNOTS_PER_MPS:.3f}",
            _course(fix.course_deg),
        ]
    else:
        fields += ["", "", "", "", "", ""]
    fields += [format_date(fix.t_ms), "", "", _MODE_BY_QUALITY.get(fix.quality, "A")]
    return frame(",".join(fields))


def epoch_bytes(fix: SimFix, talker: str = "GN", time_decimals: int = 2) -> bytes:
    """GGA then RMC of one epoch, as the bytes a receiver puts on the wire."""
    text = gga(fix, talker, time_decimals) + rmc(fix, talker, time_decimals)
    return text.encode("ascii")
