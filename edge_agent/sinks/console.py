"""Console sink: alerts on the terminal, for the demo and for an installer at the gateway.

Like every sink it reads the journal from its own cursor and moves the cursor only after the
alert is out, so what it shows survives restarts at-least-once and never blocks other sinks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge_agent.journal import Journal, JournalUnwritable, off_loop
from edge_agent.sinks.alert_feed import alert_chunks
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail

_DETAILS: dict[str, tuple[str, ...]] = {
    "geofenceEnter": ("zone_id", "role"),
    "geofenceExit": ("zone_id", "role"),
    "unauthorizedStop": ("duration_ms", "limit_ms"),
    "overspeed": ("speed_kmh", "max_speed_kmh", "limit_kmh"),
    "lateArrival": ("late_ms",),
    "tripClosed": ("destination_office",),
    "sealOpened": ("previous_state", "location"),
    "sealTampered": ("previous_state", "location"),
    "sealMissing": ("silent_ms",),
    "sealFound": ("silent_ms",),
    "sealIdMismatch": ("reason",),
    "sealLowBattery": ("battery_pct",),
    "gnssLost": ("outage_ms",),
    "gnssRestored": ("outage_ms",),
    "jamming": ("indicators",),
    "commLoss": ("cause", "silent_ms"),
    "commRestored": ("cause",),
    "sensorAuthFailure": ("reason", "via"),
}
"""Per type, the details worth a glance on a terminal (``*_m`` distances are always shown)."""


def _value(key: str, value: Any) -> str:
    if key.endswith("_ms") and isinstance(value, int):
        return f"{key[:-3]}={value / 1000:g}s"
    if isinstance(value, list):
        return f"{key}={','.join(map(str, value))}"
    return f"{key}={value}"


def format_alert(record: dict[str, Any]) -> str:
    """One line per alert: severity, type, asset, time, place, key details, seq and id."""
    body = record["body"]
    when = datetime.fromtimestamp(record["t_ms"] / 1000, UTC).strftime("%H:%M:%S")
    pos = body.get("position") or {}
    where = ""
    if "lat_e7" in pos:
        where = f" at {pos['lat_e7'] / 1e7:.5f},{pos['lon_e7'] / 1e7:.5f}"
    details = body.get("details") or {}
    wanted = _DETAILS.get(body["type"], ())
    extra = " ".join(_value(k, v) for k, v in details.items()
                     if (k.endswith("_m") or k in wanted) and v is not None)
    asset = body.get("asset") or {}
    names: list[str] = []
    for k in ("vehicle", "container", "seal"):
        if asset.get(k) and asset[k] not in names:  # a seal may be named after its container
            names.append(asset[k])
    if asset.get("sensor"):
        names.append(f"sensor {asset['sensor']}")
    plan = f"plan={body['plan_id']}" if body.get("plan_id") else ""
    rest = [" ".join(names), f"{when}Z{where}", extra, plan, f"seq={record['seq']}",
            f"id={body['alert_id']}"]
    return f"ALERT {body['severity'].upper():8} {body['type']:<16} " + " ".join(
        part for part in rest if part)


class ConsoleSink:
    name = "console"

    def __init__(self, journal: Journal, write: Callable[[str], None] = print):
        self.journal = journal
        self.write = write
        self.position = journal.cursor(self.name)
        self.shown = 0

    def stats(self) -> ComponentStats:
        """Alerts shown; the console holds and drops nothing."""
        return ComponentStats(added=self.shown, written=self.shown)

    async def run(self, tail: JournalTail) -> None:
        async for alerts, reached in alert_chunks(self.journal, tail, self.position):
            for alert in alerts:
                self.write(format_alert(alert.record()))
                self.shown += 1
            if alerts:  # the stored cursor only needs to move past what was shown
                with contextlib.suppress(JournalUnwritable):  # a full disk: shown again later
                    await off_loop(self.journal.commit, cursors={self.name: alerts[-1].seq})
            self.position = reached
