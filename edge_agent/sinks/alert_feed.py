"""The alert feed every alert-only sink follows: alerts beyond a cursor, as they are committed.

Sinks differ in what they do with an alert and when they store their cursor; how to read the
journal without missing an alert or spinning is the same for all, so it is written once here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from edge_agent.journal import Journal, Stored
from edge_agent.tail import JournalTail

CHUNK = 500


async def alert_chunks(journal: Journal, tail: JournalTail, after: int,
                       chunk: int = CHUNK) -> AsyncIterator[tuple[list[Stored], int]]:
    """Yield ``(alerts, reached)`` forever: the next alerts beyond ``after`` (possibly none) and
    the position the sink has reached once it has dealt with them. ``reached`` runs ahead of
    the last alert to the head seen before the query, so readings never wake the sink twice."""
    cursor = after
    while True:
        await tail.wait_beyond(cursor)
        head = tail.head  # read before the query: nothing at or below it can be missed
        alerts = journal.alerts_after(cursor, limit=chunk)
        cursor = alerts[-1].seq if len(alerts) == chunk else max(head, cursor)
        yield alerts, cursor
