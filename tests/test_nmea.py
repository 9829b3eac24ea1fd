"""Tests for the gateway's NMEA decoder (edge_agent.sources.nmea).

Expected values are worked out by hand from the sentence text (comments show the arithmetic),
so the decoder is checked against the NMEA definition, not against itself. The round-trip tests
use firmware_sim's encoder, which shares no code with the decoder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from functools import reduce

import pynmea2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.sources.nmea import GpsFix, NmeaDecoder, NoFix
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
    """Fixes only; no-fix reports are checked by the tests that are about them."""
    dec = NmeaDecoder()
    out = [obs for line in lines for obs in dec.feed(line)]
    if flush:
        out += dec.flush()
    return [f for f in out if isinstance(f, GpsFix)], dec


def test_reference_gga_rmc_merge() -> None:
    dec = NmeaDecoder()
    assert dec.feed(GGA_1994) == []  # waits for the RMC of the same epoch
    assert dec.feed(RMC_1994) == [FIX_1994]
    assert dec.counts == {}
    assert dec.emitted == 1
    assert dt.datetime.fromtimestamp(FIX_1994.t_ms / 1000, dt.UTC) == dt.datetime(
        1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC
    )


def test_order_independent() -> None:
    dec = NmeaDecoder()
    assert dec.feed(RMC_1994) == []
    assert dec.feed(GGA_1994) == [FIX_1994]


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
    assert dec.feed(RMC_VANCOUVER) == []
    # a different epoch closes the lone RMC; the receiver evidently sends RMC only, so the
    # new one is complete at once too
    fix, ubx = dec.feed(RMC_UBX)
    assert isinstance(fix, GpsFix) and isinstance(ubx, GpsFix)
    assert fix == GpsFix(
        t_ms=int(dt.datetime(1994, 11, 19, 22, 54, 46, tzinfo=dt.UTC).timestamp()) * 1000,
        lat_e7=492_741_667,  # 49 + 16.45 / 60 = 49.2741666...
        lon_e7=-1_231_853_333,  # -(123 + 11.12 / 60) = -123.1853333...
        fix_quality=1,  # no mode indicator: NMEA 2.0 RMC, autonomous
        sats=None,
        hdop_x10=None,
        alt_cm=None,  # RMC has no altitude: omitted from the reading, not a made-up 0
        speed_cmps=26,  # 0.5 kn = 25.72 cm/s
        course_cdeg=5470,
    )
    assert dec.flush() == []
    assert (ubx.lat_e7, ubx.lon_e7) == (472_852_395, 85_652_537)  # 47+17.11437/60, 8+33.91522/60
    assert ubx.speed_cmps == 0 and ubx.course_cdeg == 7752
    assert ubx.t_ms == int(dt.datetime(2002, 12, 9, 8, 35, 59, tzinfo=dt.UTC).timestamp()) * 1000
    assert "alt_cm" not in fix.body()


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
        b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74",
        sentence("PUBX,00,081350.00,4717.113210,N"),
        sentence("XXGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
    fixes, dec = decode_all([*lines, GGA_1994, RMC_1994])
    assert fixes == [FIX_1994]
    # a GNSS sentence not read and a proprietary one are what a healthy receiver sends: counted,
    # not rejects; a talker that is no GNSS (or line noise that kept its checksum) is one
    assert dec.counts == {"unsupported": 1, "proprietary": 1, "unknown_talker": 1}
    assert dec.rejected == 1


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
    # The first epoch is emitted as soon as GGA and RMC are in, before the decoder has learnt
    # that this receiver also sends VTG, GSA and GST: those three lines of the first epoch
    # arrive after it was emitted and are counted as stragglers. From the second epoch on the
    # decoder waits for all five, so nothing else is dropped.
    assert dec.counts == {"after_epoch": 3}
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
    # one line alone can complete no epoch, but can be a no-fix report
    assert all(isinstance(obs, NoFix) for obs in dec.feed(data))
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
        assert all(isinstance(obs, GpsFix | NoFix) for obs in out)
    dec.flush()
    assert dec.counts["internal_error"] == 0


def _rmc_only(fix: GpsFix) -> GpsFix:
    return GpsFix(
        fix.t_ms, fix.lat_e7, fix.lon_e7, 1, None, None, None,
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


# --- VTG, GSA, GST ---------------------------------------------------------------------------
#
# Hand-written epochs of the 1994 reference fix, one per second of 12:35:ss on 1994-03-23.
# 12:35:00 that day is 764426119 - 19 = 764426100 s after the epoch (see FIX_1994).

T_1235 = 764_426_100_000


def t_at(ss: int) -> int:
    return T_1235 + ss * 1000


def gga_at(ss: int) -> bytes:
    return sentence(f"GPGGA,1235{ss:02d},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")


def rmc_at(ss: int, speed: str = "022.4", course: str = "084.4") -> bytes:
    return sentence(f"GPRMC,1235{ss:02d},A,4807.038,N,01131.000,E,{speed},{course},230394,003.1,W")


VTG = sentence("GPVTG,084.4,T,087.5,M,022.4,N,041.5,K,A")
# GSA: auto, 3D; PRNs 04 05 09 12 24 used (5 satellites); PDOP 2.5, HDOP 1.3, VDOP 2.1
GSA = sentence("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")


def gst_at(ss: int, lat: str = "1.17", lon: str = "0.745", alt: str = "2.035") -> bytes:
    # time, RMS, ellipse semi-major, semi-minor, orientation, then the 1-sigma errors in metres
    return sentence(f"GPGST,1235{ss:02d},0.6,1.2,0.9,45.0,{lat},{lon},{alt}")


def epoch_at(ss: int, kinds: tuple[str, ...] = ("GGA", "RMC", "VTG", "GSA", "GST")) -> list[bytes]:
    by_kind = {"GGA": gga_at(ss), "RMC": rmc_at(ss), "VTG": VTG, "GSA": GSA, "GST": gst_at(ss)}
    return [by_kind[k] for k in kinds]


def nofix_at(ss: int, day: str = "230394") -> list[bytes]:
    """A receiver in a tunnel: every sentence still sent, with the time, no position."""
    return [
        sentence(f"GPGGA,1235{ss:02d},,,,,0,00,99.99,,,,,,"),
        sentence(f"GPRMC,1235{ss:02d},V,,,,,,,{day},,,N"),
        sentence("GPVTG,,T,,M,,N,,K,N"),
        sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"),
        sentence(f"GPGST,1235{ss:02d},,,,,,,"),
    ]


def full_fix(ss: int) -> GpsFix:
    """What a complete five-sentence epoch_at(ss) must decode to."""
    return GpsFix(
        t_ms=t_at(ss),
        lat_e7=481_173_000,
        lon_e7=115_166_667,
        fix_quality=1,
        sats=8,  # GGA's count; GSA's 5 would be wrong: GGA is the authority when present
        hdop_x10=9,  # GGA's 0.9, not GSA's 1.3
        alt_cm=54_540,
        speed_cmps=1152,  # RMC's 22.4 kn (see FIX_1994)
        course_cdeg=8440,
        fix_mode=3,
        pdop_x10=25,
        vdop_x10=21,
        err_lat_cm=117,  # 1.17 m
        err_lon_cm=74,  # 0.745 m = 74.5 cm, half to even -> 74
        err_alt_cm=204,  # 2.035 m = 203.5 cm, half to even -> 204
    )


def without_gst(fix: GpsFix) -> GpsFix:
    return dataclasses.replace(fix, err_lat_cm=None, err_lon_cm=None, err_alt_cm=None)


def feed_each(dec: NmeaDecoder, lines: list[bytes]) -> list[list[GpsFix | NoFix]]:
    return [dec.feed(line) for line in lines]


def test_gsa_gives_fix_mode_dops_and_satellites_used_without_gga() -> None:
    # RMC + GSA receiver (no GGA): satellites and HDOP can only come from GSA
    dec = NmeaDecoder()
    out = [*feed_each(dec, [rmc_at(19), GSA]), dec.flush()]
    fix = full_fix(19)
    assert out[-1] == [GpsFix(
        t_ms=fix.t_ms, lat_e7=fix.lat_e7, lon_e7=fix.lon_e7,
        fix_quality=1,  # RMC without mode indicator: autonomous
        sats=5,  # 04 05 09 12 24
        hdop_x10=13,  # GSA HDOP 1.3
        alt_cm=None, speed_cmps=1152, course_cdeg=8440, fix_mode=3, pdop_x10=25, vdop_x10=21,
    )]  # fmt: skip


def test_gga_is_the_authority_for_satellites_and_hdop() -> None:
    # whether GSA comes after GGA or before it, satellites and HDOP are GGA's
    for order in (("GGA", "RMC", "VTG", "GSA", "GST"), ("RMC", "VTG", "GSA", "GGA", "GST")):
        dec = NmeaDecoder()
        feed_each(dec, epoch_at(19, order))
        assert feed_each(dec, epoch_at(20, order))[-1] == [full_fix(20)], order


def test_two_gsas_of_a_multi_gnss_receiver_add_up() -> None:
    # NMEA 4.10: one GSA per constellation, with the system id as an extra last field
    gps = "GNGSA,A,3,05,07,13,20,30,,,,,,,,1.6,0.9,1.3,1"  # 5 GPS satellites
    glo = "GNGSA,A,3,68,69,79,,,,,,,,,,1.6,0.9,1.3,2"  # 3 GLONASS satellites
    dec = NmeaDecoder()
    fixes: list[GpsFix | NoFix] = []
    for ss in (19, 20, 21):
        for line in (rmc_at(ss), sentence(gps), sentence(glo)):
            fixes += dec.feed(line)
    fixes += dec.flush()
    assert [f.t_ms for f in fixes] == [t_at(19), t_at(20), t_at(21)]
    for fix in fixes:
        assert isinstance(fix, GpsFix)
        assert fix.sats == 8  # 5 + 3, in every epoch, not only in the first one
        assert (fix.hdop_x10, fix.pdop_x10, fix.vdop_x10, fix.fix_mode) == (9, 16, 13, 3)
    assert dec.counts == {}


def test_two_gsas_with_gga_are_both_part_of_the_epoch() -> None:
    gps = sentence("GNGSA,A,3,05,07,13,20,30,,,,,,,,1.6,0.9,1.3,1")
    glo = sentence("GNGSA,A,3,68,69,79,,,,,,,,,,1.6,0.9,1.3,2")
    dec = NmeaDecoder()
    per_epoch = []
    for ss in (19, 20, 21, 22):
        per_epoch.append(feed_each(dec, [rmc_at(ss), VTG, gga_at(ss), gps, glo]))
    # after the first epoch, each one is emitted on its second GSA: not before (it would lose
    # that constellation), not at the next epoch (a whole interval of latency)
    for ss, outs in zip((20, 21, 22), per_epoch[1:], strict=True):
        assert outs[:4] == [[], [], [], []]
        (fix,) = outs[4]
        assert isinstance(fix, GpsFix) and fix.t_ms == t_at(ss) and fix.sats == 8
    assert dec.counts == {"after_epoch": 2}  # the first epoch's two GSAs only


def test_gst_errors_in_centimetres() -> None:
    dec = NmeaDecoder()
    feed_each(dec, epoch_at(19))  # learn the receiver: the first epoch is out on GGA + RMC
    outs = feed_each(dec, epoch_at(20))
    assert outs == [[], [], [], [], [full_fix(20)]]
    # GST without an altitude error: latitude and longitude only
    outs = feed_each(dec, [*epoch_at(21)[:4], gst_at(21, "12.5", "40.25", "")])
    (fix,) = outs[-1]
    assert isinstance(fix, GpsFix)
    assert (fix.err_lat_cm, fix.err_lon_cm, fix.err_alt_cm) == (1250, 4025, None)


def test_empty_gst_means_no_error_estimate() -> None:
    dec = NmeaDecoder()
    feed_each(dec, epoch_at(19))
    (fix,) = feed_each(dec, [*epoch_at(20)[:4], sentence("GPGST,123520,,,,,,,")])[-1]
    assert isinstance(fix, GpsFix)
    assert (fix.err_lat_cm, fix.err_lon_cm, fix.err_alt_cm) == (None, None, None)
    assert fix.body().keys() == full_fix(20).body().keys() - {
        "err_lat_cm", "err_lon_cm", "err_alt_cm"}


@pytest.mark.parametrize(
    ("rmc_speed", "rmc_course", "vtg", "expected"),
    [
        # RMC without speed and course: VTG's knots (5.5 kn = 5.5 * 463 / 9 = 282.9 cm/s)
        ("", "", "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", (283, 5470)),
        # VTG with km/h only: 10.2 km/h = 10.2 * 250 / 9 = 283.3 cm/s
        ("", "", "GPVTG,054.7,T,,M,,N,010.2,K,A", (283, 5470)),
        # RMC has the speed but not the course: each field from whoever reports it
        ("022.4", "", "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", (1152, 5470)),
        ("", "084.4", "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", (283, 8440)),
        # RMC reports both: RMC wins
        ("022.4", "084.4", "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", (1152, 8440)),
        # a VTG in mode N ("no fix") says nothing: speed and course unknown, not 0
        ("", "", "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,N", (None, None)),
    ],
)
def test_vtg_fills_in_what_rmc_lacks(
    rmc_speed: str, rmc_course: str, vtg: str, expected: tuple[int | None, int | None]
) -> None:
    dec = NmeaDecoder()
    # u-blox order: RMC, VTG, GGA (the first epoch is complete with GGA + RMC)
    out = [o for line in (rmc_at(19, rmc_speed, rmc_course), sentence(vtg), gga_at(19))
           for o in dec.feed(line)]
    (fix,) = out
    assert isinstance(fix, GpsFix)
    assert (fix.speed_cmps, fix.course_cdeg) == expected


# --- epoch learning --------------------------------------------------------------------------


def test_second_epoch_is_emitted_on_its_last_sentence_not_on_the_next_epoch() -> None:
    dec = NmeaDecoder()
    first = feed_each(dec, epoch_at(19))
    # first epoch: out on GGA + RMC, before the decoder knows VTG/GSA/GST follow
    assert first[0] == [] and len(first[1]) == 1 and first[2:] == [[], [], []]
    assert dec.counts == {"after_epoch": 3}
    assert feed_each(dec, epoch_at(20)) == [[], [], [], [], [full_fix(20)]]
    assert feed_each(dec, epoch_at(21)) == [[], [], [], [], [full_fix(21)]]
    assert dec.flush() == []
    assert dec.counts == {"after_epoch": 3}
    assert dec.emitted == 3


def test_receiver_that_stops_sending_gst_costs_one_epoch_then_is_not_waited_for() -> None:
    dec = NmeaDecoder()
    feed_each(dec, epoch_at(19))
    assert feed_each(dec, epoch_at(20))[-1] == [full_fix(20)]
    no_gst = ("GGA", "RMC", "VTG", "GSA")
    # epoch 21 has no GST: the decoder still waits for it...
    assert feed_each(dec, epoch_at(21, no_gst)) == [[], [], [], []]
    # ...until epoch 22 starts, which closes 21 (one epoch late, without error estimates)
    out22 = feed_each(dec, epoch_at(22, no_gst))
    assert out22[0] == [without_gst(full_fix(21))]
    # and 22 itself is no longer held back for a GST: out on its GSA, its last sentence now
    assert out22[1:] == [[], [], [without_gst(full_fix(22))]]
    assert feed_each(dec, epoch_at(23, no_gst)) == [[], [], [], [without_gst(full_fix(23))]]
    assert dec.counts == {"after_epoch": 3}


def test_rmc_only_receiver_emits_at_each_rmc() -> None:
    dec = NmeaDecoder()
    outs = feed_each(dec, [rmc_at(19), rmc_at(20), rmc_at(21), rmc_at(22)])
    # the very first RMC waits for a GGA that never comes, until the second RMC shows the
    # receiver sends RMC alone; from then on each RMC is a complete epoch on its own
    assert [[f.t_ms for f in out] for out in outs] == [
        [], [t_at(19), t_at(20)], [t_at(21)], [t_at(22)]]
    assert dec.flush() == []


# --- no fix ----------------------------------------------------------------------------------


def test_no_fix_epoch_is_reported_with_the_receivers_time() -> None:
    dec = NmeaDecoder()
    feed_each(dec, epoch_at(19))
    feed_each(dec, epoch_at(20))
    outs = feed_each(dec, nofix_at(21))
    assert outs == [[], [], [], [], [NoFix(t_at(21))]]  # learnt epoch: out on its GST
    assert dec.counts["invalid_fix"] == 5
    outs = feed_each(dec, nofix_at(22, day=""))  # the date is remembered from earlier fixes
    assert outs[-1] == [NoFix(t_at(22))]
    # and the fix coming back is a normal fix again
    assert feed_each(dec, epoch_at(23))[-1] == [full_fix(23)]


def test_no_fix_before_any_date_has_no_time() -> None:
    dec = NmeaDecoder()
    # a cold receiver with its RTC time but no date anywhere
    out = [o for line in nofix_at(19, day="") for o in dec.feed(line)]
    assert out == [NoFix(None)]
    assert dec.emitted == 0


def test_no_fix_uses_the_date_the_receiver_gives() -> None:
    # the receiver's date in a status-V RMC is its time too: before any fix...
    dec = NmeaDecoder()
    out = [o for line in nofix_at(19) for o in dec.feed(line)]
    assert out == [NoFix(t_at(19))]
    # ...and across midnight in a tunnel, where yesterday's date would put the report 24 h back
    dec = NmeaDecoder()
    before_midnight = [
        sentence("GPGGA,235959,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        sentence("GPRMC,235959,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
    ]
    after_midnight = [
        sentence("GPGGA,000000,,,,,0,00,99.99,,,,,,"),
        sentence("GPRMC,000000,V,,,,,,,240394,,,N"),
    ]
    out = [o for line in [*before_midnight, *after_midnight] for o in dec.feed(line)]
    out += dec.flush()
    # 1994-03-23 00:00 = 764426119 - 45319 = 764380800 s; 23:59:59 is +86399 s, and the
    # no-fix report one second later is 1994-03-24 00:00:00 = 764467200 s
    assert [o.t_ms for o in out] == [764_467_199_000, 764_467_200_000]
    assert isinstance(out[1], NoFix)


# --- damaged sentences -----------------------------------------------------------------------


def test_damaged_gsa_or_gst_never_half_merges() -> None:
    # checksums are right, so these reach the field parsers; each breaks only after the
    # parser has already read something useful (fix type and PRNs; latitude and longitude)
    bad_gsa = sentence("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.x")  # VDOP not a number
    bad_gst = sentence("GPGST,123520,0.6,1.2,0.9,45.0,1.17,0.745,-2.0")  # negative sigma
    dec = NmeaDecoder()
    feed_each(dec, epoch_at(19))
    out = feed_each(dec, [gga_at(20), rmc_at(20), VTG, bad_gsa, bad_gst])
    assert out == [[], [], [], [], []]  # GSA and GST did not arrive as far as we can tell
    (fix,) = dec.flush()
    assert isinstance(fix, GpsFix)
    assert fix.t_ms == t_at(20)
    assert (fix.fix_mode, fix.pdop_x10, fix.vdop_x10) == (None, None, None)
    assert (fix.err_lat_cm, fix.err_lon_cm, fix.err_alt_cm) == (None, None, None)
    assert (fix.sats, fix.hdop_x10) == (8, 9)  # GGA's, untouched by the broken GSA
    assert dec.counts["parse_error"] == 2


def test_damaged_gsa_without_gga_leaves_satellites_unknown() -> None:
    bad_gsa = sentence("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,x.3,2.1")  # HDOP not a number
    dec = NmeaDecoder()
    out = [o for line in (rmc_at(19), bad_gsa) for o in dec.feed(line)] + dec.flush()
    (fix,) = out
    assert isinstance(fix, GpsFix)
    assert (fix.sats, fix.hdop_x10, fix.fix_mode) == (None, None, None)


# --- fuzzing every sentence type read ------------------------------------------------------

_TEMPLATES = [
    *epoch_at(19),
    *nofix_at(20),
    sentence("GNGSA,A,3,68,69,79,,,,,,,,,,1.6,0.9,1.3,2"),
    sentence("GPVTG,054.7,T,,M,,N,010.2,K,A"),
    GGA_IE,
    RMC_IE,
    RMC_UBX,
    sentence("GNGNS,123519,4807.038,N,01131.000,E,AAN,14,0.8,545.4,46.9,,,V"),
    sentence("GLGGA,123519,4807.038,N,01131.000,E,1,05,1.4,545.4,M,46.9,M,,"),
    sentence("GPGLL,4807.038,N,01131.000,E,123519,A,D"),
    sentence("GPZDA,123519,23,03,1994,00,00"),
    sentence("PUBX,00,081350.00,4717.113210,N"),
]
_FIELD = st.one_of(
    st.just(""),
    st.text(alphabet="0123456789.-", max_size=12),
    st.sampled_from(["A", "V", "N", "S", "E", "W", "M", "K", "T", "D", "1", "2", "3", "0"]),
    st.text(alphabet="0123456789.-ABCDEFGNPRMSTVWabc ", max_size=15),
)


@st.composite
def _mutated_sentence(draw: st.DrawFn) -> bytes:
    """A sentence of any type read with some fields replaced, added or cut, and a
    correct checksum, so it gets past framing into the field parsers."""
    template = draw(st.sampled_from(_TEMPLATES))
    fields = template.split(b"*")[0][1:].decode("ascii").split(",")
    for _ in range(draw(st.integers(0, 3))):
        idx = draw(st.integers(1, len(fields)))
        fields[idx:idx + 1] = [draw(_FIELD)]
    if draw(st.booleans()):
        fields = fields[: draw(st.integers(1, len(fields)))]
    if draw(st.booleans()):
        fields += draw(st.lists(_FIELD, max_size=3))
    return sentence(",".join(fields))


_ANY_LINE = st.one_of(
    _mutated_sentence(),
    st.sampled_from(_TEMPLATES),
    st.binary(max_size=100),
    st.sampled_from(_TEMPLATES).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
)


def _sane(obs: GpsFix | NoFix) -> None:
    if isinstance(obs, NoFix):
        assert obs.t_ms is None or type(obs.t_ms) is int
        return
    assert abs(obs.lat_e7) <= 900_000_000 and abs(obs.lon_e7) <= 1_800_000_000
    assert obs.course_cdeg is None or 0 <= obs.course_cdeg < 36_000
    assert obs.speed_cmps is None or obs.speed_cmps >= 0
    assert obs.fix_quality >= 1
    assert (obs.sats is None or obs.sats >= 0) and (obs.hdop_x10 is None or obs.hdop_x10 >= 0)
    assert all(type(v) is int for v in obs.body().values())


@given(st.lists(_ANY_LINE, max_size=30))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_all_five_sentence_types_fuzzed_never_raise(lines: list[bytes]) -> None:
    dec = NmeaDecoder()
    for line in lines:
        for obs in dec.feed(line):
            _sane(obs)
    for obs in dec.flush():
        _sane(obs)
    assert dec.counts["internal_error"] == 0


def _sim_epoch(k: int) -> list[bytes]:
    sim = sim_nmea.SimFix(
        t_ms=1_700_000_000_000 + k * 1000, lat=-34.904 + k * 1e-4, lon=-56.2105, alt_m=31.5,
        speed_mps=8.5, course_deg=30.0 + k, prns=(2, 5, 9, 13, 17, 21, 25, 29), sats=8,
        hdop=0.9, std_lat_m=1.5, std_lon_m=2.5, std_alt_m=4.0,
    )  # fmt: skip
    return sim_nmea.epoch_bytes(sim).splitlines(keepends=True)


# Three five-sentence epochs from the independent simulator encoder, and the truth for them:
# decoded after a warm-up epoch, so that even the first has every figure (a decoder that has
# not learnt the receiver yet emits its first epoch on GGA + RMC, without VTG/GSA/GST).
_SIM_EPOCHS = [_sim_epoch(k) for k in range(3)]
_TRUTH = {f.t_ms: f for f in decode_all([x for k in range(-1, 3) for x in _sim_epoch(k)])[0]}


@given(
    epoch=st.integers(0, 2),
    line=st.integers(0, 4),
    pos=st.integers(0, 200),
    value=st.integers(0, 255),
)
@settings(max_examples=2000)
def test_single_byte_corruption_of_a_five_sentence_epoch(
    epoch: int, line: int, pos: int, value: int
) -> None:
    clean, _ = decode_all([x for ep in _SIM_EPOCHS for x in ep])
    assert [f.t_ms for f in clean] == sorted(_TRUTH)[1:]  # uncorrupted: all three epochs
    lines = [list(ep) for ep in _SIM_EPOCHS]
    target = bytearray(lines[epoch][line])
    pos %= len(target)
    if target[pos] == value:
        return
    target[pos] = value
    lines[epoch][line] = bytes(target)
    fixes, dec = decode_all([x for ep in lines for x in ep])
    assert dec.counts["internal_error"] == 0
    assert len({f.t_ms for f in fixes}) == len(fixes)  # no epoch twice
    for fix in fixes:
        truth = _TRUTH.get(fix.t_ms)
        assert truth is not None, fix  # never a time the receiver did not send
        # never a different position or motion; a lost GGA/GSA/GST may leave figures
        # unknown (None, or the sentinels that fail the filters), never different
        assert (fix.lat_e7, fix.lon_e7, fix.speed_cmps, fix.course_cdeg) == (
            truth.lat_e7, truth.lon_e7, truth.speed_cmps, truth.course_cdeg)
        assert fix.fix_quality == truth.fix_quality
        assert fix.sats in (truth.sats, None)
        assert fix.hdop_x10 in (truth.hdop_x10, None)
        assert fix.alt_cm in (truth.alt_cm, None)
        for name in ("fix_mode", "pdop_x10", "vdop_x10", "err_lat_cm", "err_lon_cm",
                     "err_alt_cm"):
            assert getattr(fix, name) in (getattr(truth, name), None), name


# --- GNS, GLL, ZDA; the date carried between epochs --------------------------------------


def zda_at(ss: int, day: str = "23,03,1994") -> bytes:
    return sentence(f"GPZDA,1235{ss:02d},{day},00,00")


def test_gga_with_zda_is_dated_by_zda() -> None:
    dec = NmeaDecoder()
    out = [o for ss in (19, 20, 21) for line in (gga_at(ss), zda_at(ss)) for o in dec.feed(line)]
    out += dec.flush()
    # the first epoch waits for an RMC until the next GGA shows none comes; then each epoch
    # is out on its ZDA
    assert [f.t_ms for f in out] == [t_at(19), t_at(20), t_at(21)]
    fix = out[0]
    assert isinstance(fix, GpsFix)
    assert (fix.lat_e7, fix.lon_e7, fix.sats, fix.hdop_x10, fix.alt_cm) == (
        FIX_1994.lat_e7, FIX_1994.lon_e7, 8, 9, 54_540)
    assert (fix.speed_cmps, fix.course_cdeg) == (None, None)  # no RMC, no VTG: unknown
    assert "speed_cmps" not in fix.body() and "course_cdeg" not in fix.body()
    assert dec.counts == {}


def test_a_date_is_carried_forward_and_rolls_over_at_midnight() -> None:
    dec = NmeaDecoder()
    lines = [
        sentence("GPGGA,235959.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        sentence("GPRMC,235959.50,A,4807.038,N,01131.000,E,022.4,084.4,310394,003.1,W"),
        sentence("GPGGA,235959.75,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        sentence("GPGGA,000000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        sentence("GPGGA,000000.25,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
    out = [o for line in lines for o in dec.feed(line)] + dec.flush()
    # 1994-03-31 00:00 = 764426119 - 45319 + 8 days = 765072000 s; 1994-04-01 is + 86400 s
    midnight = 765_158_400_000
    assert [o.t_ms for o in out] == [midnight - 500, midnight - 250, midnight, midnight + 250]
    assert dec.counts == {}


def test_a_clock_stepping_back_keeps_its_day() -> None:
    # 5 h back (a receiver restart) is not "tomorrow": the nearest instant is today
    dec = NmeaDecoder()
    feed_each(dec, [gga_at(19), rmc_at(19)])
    feed_each(dec, [sentence("GPGGA,073519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")])
    (fix,) = dec.flush()  # its RMC never came: dated from the last dated epoch
    assert fix.t_ms == FIX_1994.t_ms - 5 * 3_600_000


def test_reset_forgets_the_date() -> None:
    dec = NmeaDecoder()
    feed_each(dec, [gga_at(19), rmc_at(19), gga_at(20)])
    assert [f.t_ms for f in dec.reset()] == [t_at(20)]  # flushed with the carried date
    assert feed_each(dec, [gga_at(21), gga_at(22)]) == [[], []]
    assert dec.flush() == []
    assert dec.counts["no_date"] == 2  # after a reconnect the receiver must say the date


def test_zda_damaged_or_empty() -> None:
    dec = NmeaDecoder()
    lines = [
        sentence("GPZDA,,,,,00,00"),  # u-blox before it knows the time
        sentence("GPZDA,123519.00,,,,,"),  # a time, but no date yet
        sentence("GPZDA,123519,30,02,1994,00,00"),  # 30 February
        sentence("GPZDA,123519,23,03,94,00,00"),  # two-digit year: not ZDA
    ]
    assert [o for line in lines for o in dec.feed(line)] == []
    assert dec.counts == {"no_time": 2, "parse_error": 2}
    assert dec.rejected == 2


@pytest.mark.parametrize(
    ("modes", "quality"),
    [("A", 1), ("AN", 1), ("NA", 1), ("DA", 2), ("ADN", 2), ("PA", 3), ("RF", 4), ("FA", 5),
     ("EN", 6), ("NNE", 6), ("M", 7), ("S", 8), ("AS", 1)],
)
def test_gns_quality_is_its_best_constellation(modes: str, quality: int) -> None:
    gns = sentence(f"GNGNS,123519,4807.038,N,01131.000,E,{modes},14,0.8,545.4,46.9,,")
    (fix,), dec = decode_all([gns, RMC_1994])
    assert fix.fix_quality == quality
    assert (fix.lat_e7, fix.lon_e7, fix.sats, fix.hdop_x10, fix.alt_cm) == (
        FIX_1994.lat_e7, FIX_1994.lon_e7, 14, 8, 54_540)
    assert dec.counts == {}


def test_gns_with_no_constellation_fixing_is_no_fix() -> None:
    gns = sentence("GNGNS,123519,,,,,NNN,00,99.99,,,,,V")
    fixes, dec = decode_all([gns, rmc_at(19)])
    assert fixes == [] and dec.counts["invalid_fix"] == 2
    bad = sentence("GNGNS,123519,4807.038,N,01131.000,E,AX,14,0.8,545.4,46.9,,")
    assert decode_all([bad])[1].counts == {"parse_error": 1}


def test_gll_gives_position_and_status() -> None:
    gll = sentence("GPGLL,4807.038,N,01131.000,E,123519,A,D")
    dec = NmeaDecoder()
    out = [o for line in (gll, zda_at(19)) for o in dec.feed(line)] + dec.flush()
    (fix,) = out
    assert isinstance(fix, GpsFix)
    assert (fix.t_ms, fix.lat_e7, fix.lon_e7, fix.fix_quality) == (
        FIX_1994.t_ms, FIX_1994.lat_e7, FIX_1994.lon_e7, 2)
    assert (fix.sats, fix.hdop_x10, fix.alt_cm) == (None, None, None)
    void = sentence("GPGLL,4807.038,N,01131.000,E,123520,V,N")
    dec = NmeaDecoder()
    out = [o for line in (void, zda_at(20)) for o in dec.feed(line)] + dec.flush()
    assert out == [NoFix(t_at(20))]


def test_one_gga_per_constellation_is_summed_and_gn_wins() -> None:
    gp = sentence("GPGGA,123519,4807.038,N,01131.000,E,1,07,0.9,545.4,M,46.9,M,,")
    gl = sentence("GLGGA,123519,4807.038,N,01131.000,E,1,05,1.4,545.4,M,46.9,M,,")
    gn = sentence("GNGNS,123519,4807.038,N,01131.000,E,AA,11,0.7,545.4,46.9,,")
    (fix,), dec = decode_all([gp, gl, RMC_1994])
    assert (fix.sats, fix.hdop_x10) == (12, 9)  # 7 + 5; the first GGA's HDOP
    (fix,), dec = decode_all([gp, gl, gn, RMC_1994])
    assert (fix.sats, fix.hdop_x10) == (11, 7)  # the combined solution's own figures
    # the same talker twice is a duplicate, not a second constellation
    (fix,), dec = decode_all([gp, gp, RMC_1994])
    assert fix.sats == 7 and dec.counts == {"duplicate": 1}


def test_a_constellation_without_a_fix_does_not_void_the_others() -> None:
    gp = sentence("GPGGA,123519,4807.038,N,01131.000,E,1,07,0.9,545.4,M,46.9,M,,")
    gl0 = sentence("GLGGA,123519,,,,,0,00,99.99,,,,,,")
    (fix,), _ = decode_all([gp, gl0, RMC_1994])
    assert fix.sats == 7
    # but a GGA of quality 0 with only RMC's position is a receiver contradicting itself
    fixes, dec = decode_all([gl0, RMC_1994])
    assert fixes == [] and dec.counts["invalid_fix"] == 2


def test_in_talker_and_proprietary_sentences() -> None:
    gga = sentence("INGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    rmc = sentence("INRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    pgrme = sentence("PGRME,15.0,M,45.0,M,25.0,M")
    fixes, dec = decode_all([pgrme, gga, pgrme, rmc])
    assert fixes == [FIX_1994]
    assert dec.counts == {"proprietary": 2} and dec.rejected == 0


def test_gns_navigational_status_v_is_no_verdict() -> None:
    # NMEA 4.10 GNS ends with a navigational status; u-blox F9 sends V ("not provided") with
    # every fix, so only the modes say whether there is one
    gns = sentence("GNGNS,123519,4807.038,N,01131.000,E,RRRR,24,0.5,545.4,46.9,1.0,0000,V")
    (fix,), dec = decode_all([gns, RMC_1994])
    assert fix.fix_quality == 4 and dec.counts == {}


def test_field_positions_agree_with_pynmea2_the_independent_oracle() -> None:
    """The decoder's field layouts are written out (pynmea2 is no runtime dependency); they
    must stay the ones pynmea2, written by others from the standard, uses."""
    from edge_agent.sources import nmea_sentences as ns

    for name in ("GGA", "RMC", "VTG", "GSA", "GST", "GLL", "ZDA", "GNS"):
        ours = getattr(ns, f"_{name}")
        theirs = {n: i + 1 for n, i in getattr(pynmea2, name).name_to_idx.items()}
        for field, index in theirs.items():
            assert ours.get("differential" if field == "diferential" else field) == index, \
                (name, field)
