"""What every GPS source produces: one fix per receiver epoch, or a no-fix report.

The serial NMEA decoder and the gpsd client both turn their input into these two types, so the
filters and GNSS health checks downstream (gps_stream) are written once. Units are the integer
units of signed records (DESIGN.md "Records"); optional quality figures are None when the
receiver did not report them and are then left out of the record rather than faked.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_SATS = 0
UNKNOWN_HDOP_X10 = 999
"""Values used when nothing reported satellites or HDOP (an RMC-only receiver): chosen to *fail*
min-satellite and max-HDOP filters rather than pass them, since nothing vouches for the fix."""


@dataclass(frozen=True, slots=True)
class GpsFix:
    """One epoch's position fix.

    ``fix_quality`` is on the GGA scale (1 GPS, 2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float,
    6 dead reckoning, 7 manual, 8 simulation). ``err_*_cm`` are the receiver's own 1-sigma
    error estimates (NMEA GST): the first thing to rise when a jammer or spoofer is near.
    """

    t_ms: int
    lat_e7: int
    lon_e7: int
    fix_quality: int
    sats: int
    hdop_x10: int
    alt_cm: int | None  # None when the receiver gave no altitude (no GGA): never a made-up 0
    speed_cmps: int
    course_cdeg: int
    fix_mode: int | None = None  # 2 = 2D, 3 = 3D
    pdop_x10: int | None = None
    vdop_x10: int | None = None
    err_lat_cm: int | None = None
    err_lon_cm: int | None = None
    err_alt_cm: int | None = None

    def body(self) -> dict[str, int]:
        """Record body: every reported field but ``t_ms`` (a top-level record field)."""
        body = {
            "lat_e7": self.lat_e7,
            "lon_e7": self.lon_e7,
            "fix_quality": self.fix_quality,
            "sats": self.sats,
            "hdop_x10": self.hdop_x10,
            "speed_cmps": self.speed_cmps,
            "course_cdeg": self.course_cdeg,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


_OPTIONAL = ("alt_cm", "fix_mode", "pdop_x10", "vdop_x10", "err_lat_cm", "err_lon_cm", "err_alt_cm")


@dataclass(frozen=True, slots=True)
class NoFix:
    """The receiver is alive but has no fix (tunnel, jamming, cold start).

    It matters as much as a fix: a receiver that keeps talking without a position is the
    signature of an outage or a jammer, and the health checks time no-fix periods with it.
    ``t_ms`` is the receiver's time for the report when it gave one.
    """

    t_ms: int | None
