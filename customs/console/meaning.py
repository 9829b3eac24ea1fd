"""What an alert means, in words an officer reads at a glance (never raw JSON).

Every value comes from a gateway, so this only builds plain strings; the browser puts them in
the page with ``textContent``.
"""

from __future__ import annotations

from typing import Any

TITLES = {
    "routeDeviation": "Left the route corridor",
    "routeReturn": "Back in the route corridor",
    "geofenceEnter": "Entered a zone",
    "geofenceExit": "Left a zone",
    "unauthorizedStop": "Unauthorized stop",
    "overspeed": "Speeding",
    "lateArrival": "Late: deadline passed before arrival",
    "tripClosed": "Trip closed: seals opened at the destination office",
    "sealOpened": "Seal opened",
    "sealTampered": "Seal tampered with",
    "sealMissing": "Seal not heard from",
    "sealFound": "Missing seal heard again",
    "sealIdMismatch": "Seal does not match the plan",
    "sealLowBattery": "Seal battery low",
    "gnssLost": "GNSS position lost",
    "gnssRestored": "GNSS position restored",
    "jamming": "GNSS jamming suspected",
    "jammingCleared": "GNSS jamming over",
    "commLoss": "Sensor silent",
    "commRestored": "Sensor talking again",
    "sensorAuthFailure": "Sensor message failed authentication (forged or replayed)",
}
STATUS_TYPES = ("gnssLost", "gnssRestored", "commLoss", "commRestored", "jamming",
                "jammingCleared")
"""Alert types that describe a vehicle's condition (map colour) more than call for action."""

LABELS = {
    "distance_m": ("distance from the route", "m"), "width_m": ("corridor half-width", "m"),
    "off_route_duration_ms": ("time off the route", "ms"), "dwell_ms": ("time inside", "ms"),
    "zone_name": ("zone", ""), "zone_id": ("zone id", ""), "role": ("zone role", ""),
    "speed_kmh": ("speed", "km/h"), "limit_kmh": ("limit", "km/h"),
    "max_speed_kmh": ("speed limit", "km/h"), "stopped_ms": ("stopped for", "ms"),
    "battery_pct": ("battery", "%"), "silent_ms": ("silent for", "ms"),
    "outage_ms": ("outage lasted", "ms"), "reason": ("reason", ""), "sats": ("satellites", ""),
    "reported_container": ("container reported by the seal", ""),
    "deadline_ms": ("deadline", "time"), "basis": ("detected from", ""),
}
SKIP = {"plan_seq", "closes", "evidence_count"}


def _duration(ms: int) -> str:
    s = ms // 1000
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def _value(value: Any, unit: str) -> str:
    if isinstance(value, bool) or value is None:
        return "yes" if value else "no"
    if isinstance(value, int) and unit == "ms":
        return _duration(value)
    if isinstance(value, int) and unit == "time":
        from customs.report import utc

        return utc(value)
    if isinstance(value, int | str):
        text = str(value)[:200]
        return f"{text} {unit}".strip() if unit else text
    if isinstance(value, list):
        return ", ".join(_value(v, "") for v in value[:10]) + (" …" if len(value) > 10 else "")
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v, '')}" for k, v in list(value.items())[:10])
    return str(value)[:200]


def asset_words(asset: Any) -> str:
    if not isinstance(asset, dict):
        return "the vehicle"
    parts = []
    for key, label in (("vehicle", "vehicle"), ("container", "container"), ("seal", "seal"),
                       ("gps", "GPS"), ("sensor", "sensor")):
        value = asset.get(key)
        if isinstance(value, str | int):
            parts.append(f"{label} {str(value)[:128]}")
    return ", ".join(parts) or "the vehicle"


def describe(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """{title, sentence, facts: [[label, value], ...]} for one alert body."""
    title = TITLES.get(kind, kind)
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    facts: list[list[str]] = []
    for key, value in list(details.items())[:40]:
        if key in SKIP:
            continue
        label, unit = LABELS.get(key, (key.replace("_", " "), "ms" if key.endswith("_ms")
                                       else "m" if key.endswith("_m") else ""))
        facts.append([label, _value(value, unit)])
    sentence = f"{title}: {asset_words(body.get('asset'))}."
    if kind == "routeDeviation" and "distance_m" in details:
        sentence = (f"{asset_words(body.get('asset'))} left the declared corridor, "
                    f"{_value(details['distance_m'], 'm')} from the route.")
    elif kind in ("geofenceEnter", "geofenceExit") and details.get("zone_name"):
        verb = "entered" if kind == "geofenceEnter" else "left"
        sentence = f"{asset_words(body.get('asset'))} {verb} {_value(details['zone_name'], '')}."
    if isinstance(details.get("closes"), str):
        facts.append(["closes alert", details["closes"][:128]])
    return {"title": title, "sentence": sentence, "facts": facts}
