"""What every source and sink tells /metrics about itself, in one typed shape.

Before this, the metrics module probed each part's attributes by name and called every counter
it did not know a drop, so a healthy receiver's GSV sentences showed up as dropped input and a
new counter silently became one. Now each part says what it counted: the module that
increments a counter is the one that knows whether it means input lost (``dropped``, by
reason) or just something that happened (``events``: bytes read, reconnects, ...).

Meaning of the figures, for every component:
- ``added``: items it took on: readings a source decoded from its input (fixes, seal
  messages); records a sink took from the journal to deliver; records the rules evaluated.
- ``written``: items it passed on: readings a source emitted to ingest; records a sink
  delivered (broker or customs acknowledged, endpoint accepted, anchored on the ledger);
  alerts the rules raised.
- ``dropped``: input it discarded, by reason (bad checksum, stale fix, bad MAC, replay, ...).
- ``queue_depth``: items it holds now, waiting (messages awaiting the broker's PUBACK, records
  in batches not yet anchored); 0 for sources, which hand each reading on at once.
- ``connected``: whether its device or link is up; None where that means nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ComponentStats:
    """One component's counters at one moment (see the module docstring for each field)."""

    added: int = 0
    written: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    events: Mapping[str, int] = field(default_factory=dict)
    connected: bool | None = None


@runtime_checkable
class Component(Protocol):
    """A source or consumer that reports itself; ``name`` labels its metrics."""

    @property
    def name(self) -> str: ...

    def stats(self) -> ComponentStats: ...


def split(counts: Mapping[str, int], events: Iterable[str], prefix: str = "",
          ) -> tuple[dict[str, int], dict[str, int]]:
    """(dropped, events) from one counter where ``events`` names the counts that are not
    drops; each key gets ``prefix`` (the stage that counted it: ``nmea_``, ``auth_``, ...)."""
    known = frozenset(events)
    dropped: dict[str, int] = {}
    other: dict[str, int] = {}
    for key, value in counts.items():
        (other if key in known else dropped)[prefix + key] = value
    return dropped, other
