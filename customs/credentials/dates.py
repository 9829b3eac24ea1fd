"""Times in credentials: XSD dateTimeStamp strings outside, integer Unix milliseconds inside.

Our records carry ``t_ms`` integers; VC Data Model 2.0 wants ``validFrom`` and friends as
XSD dateTimeStamp (a dateTime with a time zone). Writing is always UTC with ``Z``, with
milliseconds only when they are not zero, so a fact's time in a credential names the exact
millisecond of the record it rests on. Reading accepts any offset and any fraction (truncated
to the millisecond), because other issuers write what they like within XSD.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_STAMP = re.compile(r"^(-?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                    r"(Z|[+-]\d{2}:\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def xsd_datetime(t_ms: int) -> str:
    """``2024-05-01T10:00:00Z`` or ``2024-05-01T10:00:00.123Z`` for a Unix-ms time."""
    if isinstance(t_ms, bool) or not isinstance(t_ms, int):
        raise ValueError(f"time must be integer Unix milliseconds, got {t_ms!r}")
    moment = _EPOCH + timedelta(milliseconds=t_ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    ms = t_ms % 1000
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def parse_datetime_stamp(text: object) -> int:
    """Unix ms of an XSD dateTimeStamp; ValueError (with the text) if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a dateTime string")
    m = _STAMP.match(text)
    if not m:
        raise ValueError(f"{text[:40]!r} is not an XSD dateTimeStamp "
                         "(YYYY-MM-DDThh:mm:ss[.fff] with Z or +hh:mm)")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        tz = UTC if zone == "Z" else _offset(zone)
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(second), tzinfo=tz)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text[:40]!r} is not a valid date and time: {exc}") from None
    ms = int((frac or ".0")[1:4].ljust(3, "0"))
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + ms


def _offset(zone: str) -> tzinfo:
    sign = -1 if zone[0] == "-" else 1
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(f"time zone offset {zone} is out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
