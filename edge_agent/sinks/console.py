"""Console sink: alerts on the terminal, for the demo and for an installer at the gateway.

Like every sink it reads the journal from its own cursor and moves the cursor only after the
alert is out, so what it shows survives restarts at-least-once and never blocks other sinks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge_agent.journal import Journal
from edge_agent.tail import JournalTail

CHUNK = 500


def format_alert(record: dict[str, Any]) -> str:
    body = record["body"]
    when = datetime.fromtimestamp(record["t_ms"] / 1000, UTC).strftime("%H:%M:%S")
    pos = body.get("position", {})
    where = ""
    if "lat_e7" in pos:
        where = f" at {pos['lat_e7'] / 1e7:.5f},{pos['lon_e7'] / 1e7:.5f}"
    details = body.get("details", {})
    extra = " ".join(f"{k}={v}" for k, v in details.items() if k.endswith("_m"))
    asset = body.get("asset", {}).get("vehicle", "")
    return (f"ALERT {body['severity'].upper():8} {body['type']:<16} {asset} {when}Z{where} "
            f"{extra} seq={record['seq']} id={body['alert_id']}").rstrip()


class ConsoleSink:
    name = "console"

    def __init__(self, journal: Journal, write: Callable[[str], None] = print):
        self.journal = journal
        self.write = write
        self.position = journal.cursor(self.name)

    async def run(self, tail: JournalTail) -> None:
        cursor = self.position
        while True:
            await tail.wait_beyond(cursor)
            head = tail.head  # read before the query: nothing at or below it can be missed
            alerts = self.journal.alerts_after(cursor, limit=CHUNK)
            for alert in alerts:
                self.write(format_alert(alert.record()))
            if alerts:  # the stored cursor only needs to move past what was shown
                self.journal.commit(cursors={self.name: alerts[-1].seq})
            cursor = alerts[-1].seq if len(alerts) == CHUNK else max(head, cursor)
            self.position = cursor
