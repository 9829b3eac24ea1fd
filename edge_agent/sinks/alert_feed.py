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
    the last alert to the head seen before the query, so readings never wake the sink twice.

    The query may also return an alert beyond that head: one committed by a consumer that has
    not yet announced it on the tail. ``reached`` then includes it, or the announcement would
    yield it a second time; nothing below it can be missing, as seqs are given in commit order.
    """
    cursor = after
    while True:
        await tail.wait_beyond(cursor)
        head = tail.head  # read before the query: nothing at or below it can be missed
        alerts = journal.alerts_after(cursor, limit=chunk)
        if len(alerts) == chunk:
            cursor = alerts[-1].seq
        else:
            cursor = max(head, cursor, alerts[-1].seq if alerts else 0)
        yield alerts, cursor
