"""Real receivers' NMEA, end to end through the GPS source's own parts (framer, decoder,
filters, health), each trusted fix checked against an independent decode by pynmea2.

Each log in tests/fixtures/nmea/ says in its header which receiver family and which public
document its shape comes from, and how many fixes it must give (the counts below). The
oracle here reads the same lines with pynmea2 and picks each epoch's position by the
decoder's documented preference (a GN/IN GGA, a GN/IN GNS, another GGA, another GNS, RMC,
GLL), dates it from RMC or ZDA of that epoch or, failing that, from the last dated epoch
(rolled over when the time of day falls by more than 12 h): a simpler rule than the
decoder's, so the two agree only when both are right.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.journal import Draft
from edge_agent.sources.framing import LineFramer
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.serial_gps import NmeaHandler
from tests.helpers.nmea_logs import FIXTURES, binary_frame, load, sirf, ubx, with_binary

REPLAY = FixFilterParams(max_age_ms=None, max_future_ms=None)  # logged time, no "now"
NOW = 1_700_000_000_000


@dataclass(frozen=True)
class Expect:
    trusted: int
    sats: list[int | None] | None = None  # per trusted fix, when the log is about them
    quality: list[int] | None = None
    counts: dict[str, int] = field(default_factory=dict)  # decoder/filter counters to check


CASES = {
    # the cold-start epoch is a no-fix report; the banner (TXT) and GSVs are unsupported, the
    # $PUBX proprietary; the first fix epoch is learnt from the no-fix one, so only its GLL
    # comes after it (GLL is never waited for when GGA/RMC are sent): after_epoch
    "ublox_m8_nmea40": Expect(5, sats=[8, 7, 8, 7, 8], quality=[1] * 5, counts={
        "nmea_proprietary": 1, "nmea_unsupported": 2 + 2 + 5 * 5}),
    "ublox_f9p_nmea410_rtk": Expect(5, sats=[24] * 5, quality=[5, 5, 4, 4, 4]),
    "sirf_star4": Expect(4, sats=[7] * 4, counts={"nmea_proprietary": 1}),
    "garmin_gps18x": Expect(4, sats=[6] * 4, counts={"nmea_proprietary": 1 + 3 * 4}),
    "trimble_gga_zda": Expect(5, sats=[6] * 5, quality=[2] * 5,
                              counts={"nmea_proprietary": 5, "nmea_no_date": 0}),
    # the first epoch (GNS + GLL) has no date anywhere; the second is out on its GNS (GLL is
    # not waited for when GNS is) before its ZDA comes
    "septentrio_gns_gll": Expect(6, sats=[17] * 6, quality=[1] * 6,
                                 counts={"nmea_no_date": 2 + 1}),
    "marine_rmc_gll_vtg_zda": Expect(4, sats=[None] * 4, quality=[2] * 4,
                                     counts={"nmea_unknown_talker": 4}),
    # 23:59:58.2 .. 23:59:59.0 undated (5 GGAs); then 15 across midnight and new year
    "mtk3339_gga5hz_rmc1hz_midnight": Expect(15, sats=[9] * 15, counts={"nmea_no_date": 5}),
    "per_constellation_gga": Expect(4, sats=[12, 12, 7, 7]),
    "gpgga_gagga_gngns": Expect(4, sats=[14] * 4),
    "restart_clock_steps_back": Expect(14, counts={
        "dropped_time_regress": 4, "dropped_reanchored_time": 1}),
    "weak_geometry_large_gst": Expect(0, counts={"dropped_few_satellites": 6}),
    "ins_integrated_nav": Expect(4, sats=[12] * 4, quality=[1, 1, 6, 1]),
    "beidou_bd_talker": Expect(3, sats=[11, 13, 11]),
}


def checksum_ok(line: bytes) -> bool:
    body, _, given = line[1:].partition(b"*")
    return reduce(lambda a, b: a ^ b, body, 0) == int(given, 16)


def run(data: bytes, chunks: list[int] | None = None) -> tuple[list[Draft], dict[str, int]]:
    """The serial GPS source's pipeline without the port: framer, decoder, filters, health."""
    framer = LineFramer(512)
    handler = NmeaHandler(GpsStream("gps0", REPLAY, clock=lambda: NOW))
    drafts: list[Draft] = []
    pos, k = 0, 0
    while pos < len(data):
        n = chunks[k % len(chunks)] if chunks else 4096  # os.read size of the real source
        for line in framer.feed(data[pos:pos + n]):
            drafts += handler.handle(line)
        pos, k = pos + n, k + 1
    drafts += handler.reset()
    stats = handler.stats()
    return drafts, {**framer.counts, **stats.dropped, **stats.events, "fixes": stats.added}


# --- the oracle ----------------------------------------------------------------------------


def _rank(msg: pynmea2.NMEASentence) -> int | None:
    """The decoder's documented preference, or None for a sentence without a valid position."""
    kind, combined = msg.sentence_type, msg.talker in ("GN", "IN")
    if kind == "GGA" and msg.gps_qual > 0:
        return 0 if combined else 2
    if kind == "GNS" and msg.mode_indicator.strip("N"):
        return 1 if combined else 3
    if kind == "RMC" and msg.status == "A":
        return 4
    if kind == "GLL" and msg.status == "A":
        return 5
    return None


def oracle(lines: list[bytes]) -> list[tuple[int, float, float]]:
    """(Unix ms, lat, lon) of every epoch the oracle can place and date, in log order (a
    receiver whose clock stepped back may give the same time twice)."""
    epochs: list[tuple[dt.time, dict[str, Any]]] = []
    for line in lines:
        try:
            msg = pynmea2.parse(line.decode("ascii"), check=True)
        except pynmea2.ParseError:
            continue  # proprietary sentences pynmea2 does not know
        if not isinstance(msg, pynmea2.TalkerSentence) or \
                msg.sentence_type not in ("GGA", "GNS", "RMC", "GLL", "ZDA") or \
                msg.timestamp is None:
            continue
        if not epochs or epochs[-1][0] != msg.timestamp:
            epochs.append((msg.timestamp, {}))
        ep = epochs[-1][1]
        if msg.sentence_type == "RMC" and msg.datestamp is not None:
            ep.setdefault("date", msg.datestamp)
        if msg.sentence_type == "ZDA":
            ep["date"] = dt.date(int(msg.year), int(msg.month), int(msg.day))
        rank = _rank(msg) if msg.sentence_type != "ZDA" else None
        if rank is not None and rank < ep.get("rank", 99):
            ep.update(rank=rank, pos=(msg.latitude, msg.longitude))
    out: list[tuple[int, float, float]] = []
    day: dt.date | None = None
    last: dt.time | None = None
    for tod, ep in epochs:
        if "date" in ep:
            day = ep["date"]
        elif day is not None and last is not None and _secs(last) - _secs(tod) > 12 * 3600:
            day += dt.timedelta(days=1)
        last = tod
        if day is not None and "pos" in ep:
            when = dt.datetime.combine(day, tod.replace(tzinfo=None), dt.UTC)
            out.append((round(when.timestamp() * 1000), *ep["pos"]))
    return out


def _secs(t: dt.time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


# --- the tests -------------------------------------------------------------------------------


def test_every_fixture_sentence_has_a_correct_checksum() -> None:
    names = sorted(p.stem for p in FIXTURES.glob("*.nmea"))
    assert names == sorted(CASES)
    for name in names:
        text = (FIXTURES / f"{name}.nmea").read_bytes()
        assert text.startswith(b"# "), name  # every log says where its shape comes from
        for line in load(name):
            assert line.startswith(b"$") and checksum_ok(line), (name, line)


@pytest.mark.parametrize("name", sorted(CASES))
def test_receiver_log_gives_its_fixes_equal_to_an_independent_decode(name: str) -> None:
    expect = CASES[name]
    lines = load(name)
    drafts, stats = run(b"".join(line + b"\r\n" for line in lines))
    fixes = [d for d in drafts if d.kind == "gps"]
    assert len(fixes) == expect.trusted, stats
    truth = iter(oracle(lines))
    for fix in fixes:  # each one an epoch of the log, in the log's order, none twice
        t_ms, lat, lon = next((e for e in truth if e[0] == fix.t_ms), (None, 0.0, 0.0))
        assert t_ms is not None, (name, fix)  # a time, and a date, the receiver gave
        assert abs(fix.body["lat_e7"] / 1e7 - lat) <= 1e-7, (name, fix)
        assert abs(fix.body["lon_e7"] / 1e7 - lon) <= 1e-7, (name, fix)
        assert all(type(v) is int for v in fix.body.values())
    if expect.sats is not None:
        assert [f.body.get("sats") for f in fixes] == expect.sats
    if expect.quality is not None:
        assert [f.body["fix_quality"] for f in fixes] == expect.quality
    for key, value in expect.counts.items():
        assert stats.get(key, 0) == value, (key, stats)
    assert stats.get("nmea_internal_error", 0) == 0


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("no_newline", [True, False])
def test_binary_protocol_mixed_in_loses_no_fix(name: str, no_newline: bool) -> None:
    lines = load(name)
    clean, _ = run(b"".join(line + b"\r\n" for line in lines))
    mixed = with_binary(lines, seed=len(name), no_newline=no_newline)
    for chunks in (None, [1], [7, 300, 64], [513]):
        drafts, stats = run(mixed, chunks)
        assert [(d.t_ms, d.body) for d in drafts if d.kind == "gps"] == \
            [(d.t_ms, d.body) for d in clean if d.kind == "gps"], (name, chunks)
        assert stats.get("nmea_internal_error", 0) == 0
    if no_newline:  # the case of the issue: more than 512 bytes of binary before a `$`
        assert stats["line_too_long"] > 0


def test_binary_only_streams_give_no_fix_and_no_crash() -> None:
    rng = random.Random(17)
    for make in (lambda: ubx(0x01, 0x07, rng.randbytes(92)), lambda: sirf(rng.randbytes(41)),
                 lambda: binary_frame(rng)):
        data = b"".join(make() for _ in range(2_000))
        for chunks in (None, [3, 700]):
            drafts, stats = run(data, chunks)
            assert [d for d in drafts if d.kind == "gps"] == []
            assert stats.get("nmea_internal_error", 0) == 0
            assert stats["fixes"] == 0


def test_weak_geometry_is_an_outage_not_jamming() -> None:
    lines = load("weak_geometry_large_gst")
    drafts, _ = run(b"".join(line + b"\r\n" for line in lines))
    events = [d.body["event"] for d in drafts if d.kind == "status"]
    assert events == ["gnssLost"]  # 3 s without a usable fix; no jammingSuspected


def test_restart_with_the_clock_stepped_back_resumes_after_the_reanchor() -> None:
    lines = load("restart_clock_steps_back")
    drafts, _ = run(b"".join(line + b"\r\n" for line in lines))
    times = [d.t_ms for d in drafts if d.kind == "gps"]
    day = int(dt.datetime(2024, 7, 15, 10, 15, tzinfo=dt.UTC).timestamp()) * 1000
    # 10:15:20..27 before the restart; after it 10:15:12.. again: 12..15 are dropped, 16
    # re-anchors, 17..21 follow
    assert times == [day + s * 1000 for s in [*range(20, 28), *range(16, 22)]]


def test_unknown_satellites_are_absent_from_the_record_not_zero() -> None:
    drafts, stats = run(b"".join(line + b"\r\n" for line in load("marine_rmc_gll_vtg_zda")))
    bodies = [d.body for d in drafts if d.kind == "gps"]
    assert bodies and all("sats" not in b and "hdop_x10" not in b for b in bodies)
    assert all(b["speed_cmps"] == 458 for b in bodies)  # 8.9 kn = 457.86 cm/s
    assert stats.get("dropped_few_satellites", 0) == 0


_ORACLES = {name: oracle(load(name)) for name in CASES}


@given(name=st.sampled_from(sorted(CASES)), line=st.integers(0, 200), pos=st.integers(0, 200),
       value=st.integers(0, 255))
@settings(max_examples=500, deadline=None)
def test_a_corrupted_byte_never_makes_a_fix_the_receiver_did_not_give(
        name: str, line: int, pos: int, value: int) -> None:
    lines = load(name)
    line %= len(lines)
    target = bytearray(lines[line])
    pos %= len(target)
    target[pos] = value
    lines[line] = bytes(target)
    drafts, stats = run(b"".join(x + b"\r\n" for x in lines))
    assert stats.get("nmea_internal_error", 0) == 0
    truth = iter(_ORACLES[name])  # the clean log's epochs: losing a line loses, never invents
    for fix in (d for d in drafts if d.kind == "gps"):
        t_ms, lat, lon = next((e for e in truth if e[0] == fix.t_ms), (None, 0.0, 0.0))
        assert t_ms is not None, (name, fix)
        assert abs(fix.body["lat_e7"] / 1e7 - lat) <= 1e-7, (name, fix)
        assert abs(fix.body["lon_e7"] / 1e7 - lon) <= 1e-7, (name, fix)
