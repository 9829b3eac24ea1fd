"""What every GPS source produces: one fix per receiver epoch, or a no-fix report.

The serial NMEA decoder and the gpsd client both turn their input into these two types, so the
filters and GNSS health checks downstream (gps_stream) are written once. Units are the integer
units of signed records (DESIGN.md "Records"); optional quality figures are None when the
receiver did not report them and are then left out of the record rather than faked.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_DOP_X10 = 999
"""Where gpsd's DOPs are capped: it writes 99.99 for "no DOP", a figure that must still fail a
max-HDOP filter (NMEA's 99.99 does as 1000), unlike an unknown DOP (None), which is not judged."""


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
    # None: no sentence of the epoch reported it (an RMC-only receiver has no satellite count,
    # a GGA + ZDA one no speed). Unknown is not zero: the figure is left out of the record and
    # the filters do not judge it, rather than a made-up 0 failing or passing them.
    sats: int | None
    hdop_x10: int | None
    alt_cm: int | None
    speed_cmps: int | None
    course_cdeg: int | None
    fix_mode: int | None = None  # 2 = 2D, 3 = 3D
    pdop_x10: int | None = None
    vdop_x10: int | None = None
    err_lat_cm: int | None = None
    err_lon_cm: int | None = None
    err_alt_cm: int | None = None

    def body(self) -> dict[str, int]:
        """Record body: every reported field but ``t_ms`` (a top-level record field)."""
        body = {"lat_e7": self.lat_e7, "lon_e7": self.lon_e7, "fix_quality": self.fix_quality}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


_OPTIONAL = ("sats", "hdop_x10", "speed_cmps", "course_cdeg", "alt_cm", "fix_mode", "pdop_x10",
             "vdop_x10", "err_lat_cm", "err_lon_cm", "err_alt_cm")


@dataclass(frozen=True, slots=True)
class NoFix:
    """The receiver is alive but has no fix (tunnel, jamming, cold start).

    It matters as much as a fix: a receiver that keeps talking without a position is the
    signature of an outage or a jammer, and the health checks time no-fix periods with it.
    ``t_ms`` is the receiver's time for the report when it gave one.
    """

    t_ms: int | None
