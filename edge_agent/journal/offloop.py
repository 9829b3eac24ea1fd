"""Journal writes from the event loop: in a worker thread, the loop free meanwhile.

Every journal write blocks until it is on disk (an fsync; seconds on a tired SD card, and
longer when it waits for ingest's commit ahead of it). The agent's loop reads serial ports and
MQTT, so nothing on it may wait for the disk: ingest, the rules and the sinks all hand their
writes to a worker thread. A thread cannot be stopped, so a cancel (a stop, a lost
connection) that arrives meanwhile waits for the write to end before it is raised: the
caller's next write, or its final one at shutdown, never overtakes an earlier one, and the
journal is not closed under a write in progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(*args, **kwargs)`` in a worker thread; its result or its exception. A cancel
    while it runs is raised once it has ended (see the module docstring)."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs))
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled = True  # the thread runs on: wait for it, then give the cancel back
        except BaseException:
            break  # the call's own exception: work is done, raised below
    if cancelled:
        if not work.cancelled():
            work.exception()  # retrieved: the cancel is what the caller sees
        raise asyncio.CancelledError
    return work.result()
