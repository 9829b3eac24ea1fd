"""Fault material: line noise bytes, and scenario events turned into receiver/seal conditions.

Noise bursts always end in CRLF. A real burst need not, but then it would glue itself to the
next genuine sentence and whether the agent may accept that sentence would depend on its
resynchronisation strategy; ending the burst keeps "what the agent must accept" computable
from the run summary alone. A burst never contains a valid sentence: it has no ``*hh`` that
matches by construction (``$`` is excluded).
"""

from __future__ import annotations

import random

from firmware_sim.gnss import ClockSkew, Conditions, Jamming, Window
from firmware_sim.scenario import Event

CRLF = b"\r\n"


def garbage(rng: random.Random, nbytes: int) -> bytes:
    """``nbytes`` of mixed printable and binary junk (no ``$``), then CRLF.

    Half printable ASCII, half arbitrary bytes: a partial sentence plus electrical noise.
    """
    out = bytearray()
    for _ in range(nbytes):
        b = rng.randrange(0x20, 0x7F) if rng.random() < 0.5 else rng.randrange(256)
        out.append(b if b != ord("$") else ord("#"))
    return bytes(out) + CRLF


def wrong_baud(rng: random.Random, nbytes: int) -> bytes:
    """What a UART read at the wrong baud rate looks like: mostly high-bit bytes, then CRLF."""
    return bytes(rng.randrange(0x80, 0x100) for _ in range(nbytes)) + CRLF


def truck_conditions(events: tuple[Event, ...], truck_id: str) -> Conditions:
    """Dropout, jamming and clock-skew events of one truck, as receiver conditions."""
    dropouts, jamming, skews = [], [], []
    for e in events:
        if truck_id not in e.targets:
            continue
        if e.type == "dropout":
            dropouts.append(Window(e.t_s, e.duration_s or 0.0))
        elif e.type == "jamming":
            jamming.append(Jamming(Window(e.t_s, e.duration_s or 0.0), e.ramp_s))
        elif e.type == "clock_skew":
            skews.append(ClockSkew(e.skew_ms, _window(e)))
    return Conditions(tuple(dropouts), tuple(jamming), tuple(skews))


def seal_skews(events: tuple[Event, ...], seal_id: str) -> tuple[ClockSkew, ...]:
    """Clock-skew events of one seal."""
    return tuple(
        ClockSkew(e.skew_ms, _window(e))
        for e in events
        if e.type == "clock_skew" and seal_id in e.targets
    )


def _window(e: Event) -> Window:
    """Skew from ``t_s`` for ``duration_s``, or to the end of time if no duration was given."""
    return Window(e.t_s, e.duration_s if e.duration_s else float("inf"))
