"""Tests for the gateway's NMEA decoder (edge_agent.sources.nmea).

Expected values are worked out by hand from the sentence text (comments show the arithmetic),
so the decoder is checked against the NMEA definition, not against itself. The round-trip tests
use firmware_sim's encoder, which shares no code with the decoder.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from functools import reduce

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.sources.nmea import UNKNOWN_HDOP_X10, UNKNOWN_SATS, GpsFix, NmeaDecoder
from firmware_sim import nmea as sim_nmea
from firmware_sim.route import Route

# Classic reference sentences (NMEA tutorials / u-blox and SiRF documentation).
GGA_1994 = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
RMC_1994 = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
GGA_IE = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76"
RMC_IE = b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43"
RMC_VANCOUVER = b"$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68"
GGA_UBX = b"$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B"
RMC_UBX = b"$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57"

FIX_1994 = GpsFix(
    # 1994-03-23: 24 years incl. 6 leap days = 8766 days, + 31 + 28 + 22 = 8847 days;
    # 8847 * 86400 + 12:35:19 (45319 s) = 764426119 s
    t_ms=764_426_119_000,
    lat_e7=481_173_000,  # 48 + 7.038 / 60 = 48.1173
    lon_e7=115_166_667,  # 11 + 31.000 / 60 = 11.5166666...
    fix_quality=1,
    sats=8,
    hdop_x10=9,
    alt_cm=54_540,
    speed_cmps=1152,  # 22.4 kn * 1852 / 3600 = 11.5236 m/s
    course_cdeg=8440,
)


def sentence(payload: str) -> bytes:
    """Test-local framing (independent of both codecs under test)."""
    cs = reduce(lambda a, b: a ^ b, payload.encode("ascii"), 0)
    return f"${payload}*{cs:02X}\r\n".encode("ascii")


def decode_all(lines: list[bytes], flush: bool = True) -> tuple[list[GpsFix], NmeaDecoder]:
    dec = NmeaDecoder()
    fixes = [f for line in lines if (f := dec.feed(line)) is not None]
    if flush and (f := dec.flush()) is not None:
        fixes.append(f)
    return fixes, dec


def test_reference_gga_rmc_merge() -> None:
    dec = NmeaDecoder()
    assert dec.feed(GGA_1994) is None  # waits for the RMC of the same epoch
    assert dec.feed(RMC_1994) == FIX_1994
    assert dec.counts == {}
    assert dec.emitted == 1
    assert dt.datetime.fromtimestamp(FIX_1994.t_ms / 1000, dt.UTC) == dt.datetime(
        1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC
    )


def test_order_independent() -> None:
    dec = NmeaDecoder()
    assert dec.feed(RMC_1994) is None
    assert dec.feed(GGA_1994) == FIX_1994


def test_north_west_with_millisecond_time() -> None:
    fixes, dec = decode_all([GGA_IE, RMC_IE])
    assert fixes == [
        GpsFix(
            # 2011-05-28: 41 years incl. 10 leap days = 14975 days, + 120 + 27 = 15122 days;
            # 15122 * 86400 + 09:27:50 (34070 s) = 1306574870 s
            t_ms=1_306_574_870_000,
            lat_e7=533_613_367,  # 53 + 21.6802 / 60 = 53.3613366...
            lon_e7=-65_056_200,  # W: -(6 + 30.3372 / 60) = -6.50562
            fix_quality=1,
            sats=8,
            hdop_x10=10,  # 1.03 -> 10.3
            alt_cm=6170,
            speed_cmps=1,  # 0.02 kn = 1.03 cm/s
            course_cdeg=3166,
        )
    ]
    assert dec.counts == {}


def test_southern_western_hemispheres_are_negative() -> None:
    gga = sentence("GNGGA,101500.00,3454.24000,S,05612.63000,W,2,11,0.70,12.5,M,14.0,M,,")
    rmc = sentence("GNRMC,101500.00,A,3454.24000,S,05612.63000,W,10.000,270.00,150324,,,D")
    (fix,), _ = decode_all([gga, rmc])
    assert fix.lat_e7 == -349_040_000  # -(34 + 54.24 / 60) = -34.904
    assert fix.lon_e7 == -562_105_000  # -(56 + 12.63 / 60) = -56.2105
    assert fix.fix_quality == 2
    assert fix.speed_cmps == 514  # 10 kn = 5.1444 m/s
    assert fix.course_cdeg == 27000
    assert fix.t_ms == int(dt.datetime(2024, 3, 15, 10, 15, tzinfo=dt.UTC).timestamp()) * 1000


def test_rmc_alone_is_emitted_when_next_epoch_starts() -> None:
    dec = NmeaDecoder()
    assert dec.feed(RMC_VANCOUVER) is None
    fix = dec.feed(RMC_UBX)  # a different epoch: flush the lone RMC
    assert fix == GpsFix(
        t_ms=int(dt.datetime(1994, 11, 19, 22, 54, 46, tzinfo=dt.UTC).timestamp()) * 1000,
        lat_e7=492_741_667,  # 49 + 16.45 / 60 = 49.2741666...
        lon_e7=-1_231_853_333,  # -(123 + 11.12 / 60) = -123.1853333...
        fix_quality=1,  # no mode indicator: NMEA 2.0 RMC, autonomous
        sats=UNKNOWN_SATS,
        hdop_x10=UNKNOWN_HDOP_X10,
        alt_cm=0,
        speed_cmps=26,  # 0.5 kn = 25.72 cm/s
        course_cdeg=5470,
    )
    ubx = dec.flush()
    assert ubx is not None
    assert (ubx.lat_e7, ubx.lon_e7) == (472_852_395, 85_652_537)  # 47+17.11437/60, 8+33.91522/60
    assert ubx.speed_cmps == 0 and ubx.course_cdeg == 7752
    assert ubx.t_ms == int(dt.datetime(2002, 12, 9, 8, 35, 59, tzinfo=dt.UTC).timestamp()) * 1000


def test_gga_alone_has_no_date_and_is_dropped() -> None:
    fixes, dec = decode_all([GGA_UBX, GGA_1994], flush=True)
    assert fixes == []
    assert dec.counts["no_date"] == 2


def test_checksum_is_mandatory_and_verified() -> None:
    no_cs = GGA_1994.split(b"*")[0] + b"\r\n"
    bad_cs = GGA_1994.replace(b"*47", b"*48")
    bad_digit = RMC_1994.replace(b"022.4", b"023.4")
    fixes, dec = decode_all([no_cs, bad_cs, bad_digit, b"$GPGGA,123519*4\r\n", b"$GPGGA*ZZ"])
    assert fixes == []
    assert dec.counts["no_checksum"] == 1
    assert dec.counts["bad_checksum"] == 4


def test_invalid_fixes_are_dropped_and_counted() -> None:
    gga0 = sentence("GPGGA,120000.00,,,,,0,00,99.99,,,,,,")
    rmc_v = sentence("GPRMC,120000.00,V,,,,,,,010124,,,N")
    rmc_n = sentence("GNRMC,120001.00,A,3454.24000,S,05612.63000,W,0.0,,010124,,,N")
    gga_no_time = sentence("GPGGA,,,,,,0,00,99.99,,,,,,")
    fixes, dec = decode_all([gga0, rmc_v, rmc_n, gga_no_time])
    assert fixes == []
    assert dec.counts["invalid_fix"] == 4


def test_one_invalid_half_poisons_the_epoch() -> None:
    gga0 = sentence("GPGGA,123519,4807.038,N,01131.000,E,0,08,0.9,545.4,M,46.9,M,,")
    fixes, dec = decode_all([gga0, RMC_1994])
    assert fixes == []
    assert dec.counts["invalid_fix"] == 2


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD", "GB"])
def test_talker_ids(talker: str) -> None:
    gga = sentence(f"{talker}GGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    rmc = sentence(f"{talker}RMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    assert decode_all([gga, rmc])[0] == [FIX_1994]


def test_unsupported_sentences_are_ignored() -> None:
    lines = [
        b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48",
        b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39",
        sentence("PUBX,00,081350.00,4717.113210,N"),
        sentence("XXGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
    fixes, dec = decode_all([*lines, GGA_1994, RMC_1994])
    assert fixes == [FIX_1994]
    assert dec.counts == {"unsupported": 4}


def test_garbage_and_damaged_lines_are_counted() -> None:
    lines = [
        b"",
        b"\r\n",
        b"\xff\xfe\x00garbage",
        b"$GPGGA,12\xe9519*47",
        b"4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",  # line joined mid-sentence
        b"$" + b"A" * 10_000 + b"*00",
        sentence("GPGGA,123519,4807.038,N,01131.000"),  # truncated but re-checksummed
        sentence("GPRMC,123519,A,4867.038,N,01131.000,E,022.4,084.4,230394,,"),  # 67 minutes
        sentence("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310294,,"),  # 31 February
        sentence("GPRMC,256019,A,4807.038,N,01131.000,E,022.4,084.4,230394,,"),  # 25 h
    ]
    fixes, dec = decode_all(lines)
    assert fixes == []
    assert sum(dec.counts.values()) == len(lines)
    assert dec.counts["no_start"] == 4  # empty, CRLF only, binary noise, joined tail
    assert dec.counts["not_ascii"] == 1
    assert dec.counts["too_long"] == 1
    assert dec.counts["parse_error"] == 4
    assert dec.counts["internal_error"] == 0


def test_noise_before_dollar_is_skipped() -> None:
    fixes, dec = decode_all([b"\x00\x17#junk" + GGA_1994, b"GPRMC,12" + RMC_1994])
    assert fixes == [FIX_1994]
    assert dec.counts == {}


def test_duplicate_half_is_counted() -> None:
    fixes, dec = decode_all([GGA_1994, GGA_1994, RMC_1994])
    assert fixes == [FIX_1994]
    assert dec.counts == {"duplicate": 1}


def test_body_is_integers_only_without_t_ms() -> None:
    body = FIX_1994.body()
    assert set(body) == {
        "lat_e7",
        "lon_e7",
        "fix_quality",
        "sats",
        "hdop_x10",
        "alt_cm",
        "speed_cmps",
        "course_cdeg",
    }
    assert all(type(v) is int for v in body.values())
    assert json.loads(json.dumps(body, sort_keys=True)) == body


# --- round trip through the independent simulator encoder --------------------------------


def _sim_fix(t_ms: int, lat: float, lon: float, speed: float = 12.5, course: float = 87.25):
    return sim_nmea.SimFix(t_ms=t_ms, lat=lat, lon=lon, speed_mps=speed, course_deg=course)


@given(
    lat=st.floats(-89.999, 89.999),
    lon=st.floats(-179.999, 179.999),
    # ddmmyy is read as 1980..2079 (GPS time starts in 1980): stay inside that window
    t_ms=st.integers(946_684_800_000, 3_471_292_800_000 - 1),  # 2000-01-01..2079-12-31
    speed=st.floats(0, 80),
    course=st.floats(0, 359.99),
)
def test_round_trip_encoder_to_decoder(
    lat: float, lon: float, t_ms: int, speed: float, course: float
) -> None:
    sim = _sim_fix(t_ms, lat, lon, speed, course)
    (fix,), dec = decode_all([sim_nmea.gga(sim).encode(), sim_nmea.rmc(sim).encode()])
    assert dec.counts == {}
    assert abs(fix.lat_e7 / 1e7 - lat) < 1e-5
    assert abs(fix.lon_e7 / 1e7 - lon) < 1e-5
    assert fix.t_ms == t_ms - t_ms % 10  # hhmmss.ss: centisecond resolution
    assert abs(fix.speed_cmps - speed * 100) <= 1
    assert (
        min(abs(fix.course_cdeg - course * 100), 36000 - abs(fix.course_cdeg - course * 100)) <= 1
    )
    assert (fix.sats, fix.hdop_x10, fix.alt_cm, fix.fix_quality) == (12, 8, 3000, 1)


def test_round_trip_along_demo_route() -> None:
    route = Route([(-56.2105, -34.904), (-56.2083854, -34.9019332), (-56.2045, -34.8965)], 20.0)
    t0 = 1_700_000_000_000
    lines: list[bytes] = []
    truth = []
    for k in range(int(route.duration_s * 10) + 1):
        p = route.position_at(k / 10)
        sim = _sim_fix(t0 + k * 100, p.lat, p.lon, p.speed_mps, p.course_deg)
        lines += sim_nmea.epoch_bytes(sim).splitlines(keepends=True)
        truth.append(p)
    fixes, dec = decode_all(lines)
    assert dec.counts == {}
    assert len(fixes) == len(truth)
    for k, (fix, p) in enumerate(zip(fixes, truth, strict=True)):
        assert fix.t_ms == t0 + k * 100
        assert math.isclose(fix.lat_e7 / 1e7, p.lat, abs_tol=1e-5)
        assert math.isclose(fix.lon_e7 / 1e7, p.lon, abs_tol=1e-5)


# --- fuzzing -------------------------------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_feed_never_raises(data: bytes) -> None:
    dec = NmeaDecoder()
    assert dec.feed(data) is None  # one line alone can never complete an epoch
    dec.flush()
    assert dec.counts["internal_error"] == 0


_NEAR_VALID = st.lists(
    st.one_of(
        st.binary(max_size=120),
        st.sampled_from([GGA_1994, RMC_1994, GGA_IE, RMC_IE, RMC_UBX]).flatmap(
            lambda s: st.integers(0, len(s)).map(lambda n: s[:n])  # truncations
        ),
        st.text(alphabet="$*,.0123456789ABCDEFGNPRMSVW\r\n", max_size=90).map(str.encode),
    ),
    max_size=20,
)


@given(_NEAR_VALID)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_feed_sequences_never_raise(lines: list[bytes]) -> None:
    dec = NmeaDecoder()
    for line in lines:
        out = dec.feed(line)
        assert out is None or isinstance(out, GpsFix)
    dec.flush()
    assert dec.counts["internal_error"] == 0


def _rmc_only(fix: GpsFix) -> GpsFix:
    return GpsFix(
        fix.t_ms, fix.lat_e7, fix.lon_e7, 1, UNKNOWN_SATS, UNKNOWN_HDOP_X10, 0,
        fix.speed_cmps, fix.course_cdeg,
    )  # fmt: skip


_PAIRS = {
    "1994": (GGA_1994, RMC_1994, FIX_1994),
    "ireland": (GGA_IE + b"\r\n", RMC_IE + b"\r\n", decode_all([GGA_IE, RMC_IE])[0][0]),
}


@given(
    pair=st.sampled_from(sorted(_PAIRS)),
    which=st.sampled_from(["gga", "rmc"]),
    pos=st.integers(0, 200),
    value=st.integers(0, 255),
)
@settings(max_examples=1500)
def test_single_byte_corruption_never_yields_a_different_fix(
    pair: str, which: str, pos: int, value: int
) -> None:
    gga_line, rmc_line, expected = _PAIRS[pair]
    gga, rmc = bytearray(gga_line), bytearray(rmc_line)
    target = gga if which == "gga" else rmc
    pos %= len(target)
    if target[pos] == value:
        return
    target[pos] = value
    fixes, _ = decode_all([bytes(gga), bytes(rmc)])
    # Either the corruption is caught (the other half may still stand alone: RMC yes, GGA no)
    # or it was harmless (e.g. checksum hex case, trailing CR); never a changed position/time.
    assert fixes in ([], [expected], [_rmc_only(expected)])
