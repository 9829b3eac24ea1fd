"""The agent's pipeline without devices: sources that end, backpressure, shutdown settling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.agent import Agent
from edge_agent.journal import Draft, Journal
from edge_agent.sinks.console import ConsoleSink
from edge_agent.tail import JournalTail


class ListSource:
    """Emits a fixed list of drafts, then ends (like replaying a file)."""

    def __init__(self, name: str, drafts: list[Draft]):
        self.name = name
        self.drafts = drafts
        self.finished = asyncio.Event()

    async def run(self, emit: Callable[[Draft], Awaitable[None]]) -> None:
        for draft in self.drafts:
            await emit(draft)
        self.finished.set()


def _drafts(src: str, n: int, kind: str = "gps") -> list[Draft]:
    out = []
    for i in range(n):
        body = {"lat_e7": i, "lon_e7": -i}
        if kind == "alert":
            body = {"alert_id": f"{src}-{i}", "type": "test", "severity": "warning"}
        out.append(Draft(1_790_000_000_000 + i, kind, src, body))
    return out


def test_a_source_that_ends_does_not_stop_the_agent_and_nothing_is_lost(tmp_path) -> None:
    journal = Journal(tmp_path / "j.db", gateway_id="gw", key=Ed25519PrivateKey.generate())
    short = ListSource("short", _drafts("a", 3))
    long = ListSource("long", _drafts("b", 2000))
    shown: list[str] = []
    agent = Agent(journal, [short, long], [ConsoleSink(journal, shown.append)], queue_size=8)

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        await short.finished.wait()
        await long.finished.wait()  # still running after `short` ended: it got everything out
        assert not runner.done()
        stop.set()
        await runner

    asyncio.run(scenario())
    assert journal.head()[0] == 2003
    assert sorted(s.src for s in journal.read_after(0, 5000)).count("b") == 2000


def test_shutdown_lets_consumers_reach_the_head(tmp_path) -> None:
    journal = Journal(tmp_path / "j.db", gateway_id="gw", key=Ed25519PrivateKey.generate())
    source = ListSource("alerts", _drafts("r", 50, kind="alert"))
    shown: list[str] = []
    agent = Agent(journal, [source], [ConsoleSink(journal, shown.append)])

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        await source.finished.wait()
        stop.set()  # queue may still hold drafts: they are committed and shown before return
        await runner

    asyncio.run(scenario())
    assert len(shown) == 50
    assert journal.cursor("console") == 50


def test_tail_wakes_waiters_only_past_their_seq() -> None:
    async def scenario() -> None:
        tail = JournalTail(5)
        assert await tail.wait_beyond(4, timeout=0)
        assert not await tail.wait_beyond(5, timeout=0.01)
        waiter = asyncio.create_task(tail.wait_beyond(5))
        await tail.advanced(5)  # not beyond: still waiting
        await asyncio.sleep(0)
        assert not waiter.done()
        await tail.advanced(6)
        assert await waiter

    asyncio.run(scenario())


def test_an_unsignable_draft_is_dropped_and_counted_without_losing_its_group(tmp_path) -> None:
    journal = Journal(tmp_path / "j.db", gateway_id="gw", key=Ed25519PrivateKey.generate())
    drafts = _drafts("a", 10)
    drafts[4] = Draft(1, "gps", "a", {"lat_e7": 1.5})  # a float: not signable
    source = ListSource("mixed", drafts)
    agent = Agent(journal, [source], [])

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        await source.finished.wait()
        stop.set()
        await runner

    asyncio.run(scenario())
    assert agent.rejected == 1
    assert journal.head()[0] == 9
    assert [s.record()["body"]["lat_e7"] for s in journal.read_after(0)] == \
        [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_an_alert_committed_before_its_announcement_is_fed_once(tmp_path) -> None:
    """A consumer commits an alert and announces it on the tail a moment later; a sink woken
    by an earlier announcement already finds it. It must not be fed again when announced."""
    from edge_agent.sinks.alert_feed import alert_chunks

    journal = Journal(tmp_path / "j.db", gateway_id="gw", key=Ed25519PrivateKey.generate())
    journal.append(_drafts("gps0", 5))
    tail = JournalTail(5)
    journal.append(_drafts("rules", 1, kind="alert"))  # seq 6, not announced yet

    async def scenario() -> list[tuple[list[int], int]]:
        fed: list[tuple[list[int], int]] = []
        feed = alert_chunks(journal, tail, 4)
        alerts, reached = await anext(feed)
        fed.append(([a.seq for a in alerts], reached))
        await tail.advanced(6)  # the announcement
        journal.append(_drafts("gps0", 1))  # seq 7
        await tail.advanced(7)
        alerts, reached = await anext(feed)
        fed.append(([a.seq for a in alerts], reached))
        return fed

    assert asyncio.run(scenario()) == [([6], 6), ([], 7)]


def test_timed_waits_share_one_grid() -> None:
    """Waits of 100 ms, 200 ms and 2 s end on common multiples, so they share wake-ups."""
    from edge_agent.ticks import aligned

    now = 1234.567
    ends = [round(now + aligned(period, now), 6) for period in (0.1, 0.2, 2.0)]
    assert ends == [1234.6, 1234.6, 1236.0]  # the 100 ms and 200 ms waits wake together
    assert aligned(0.1, 1234.6) == pytest.approx(0.1)  # on a boundary: a whole period
    assert all(0 < aligned(p, now) <= p for p in (0.05, 0.1, 0.25, 1.0, 2.0))
