"""The simulated receiver's new behaviour: VTG/GSA/GST, speed profiles, dropouts, jamming, skew.

Sentence checks use a checksum and field splits written here, not the simulator's helpers.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

from firmware_sim import nmea
from firmware_sim.gnss import ClockSkew, Conditions, FixModel, Jamming, Window
from firmware_sim.gps import GpsReceiver, epochs_per_pass
from firmware_sim.motion import Motion, SpeedZone, Stop
from firmware_sim.route import PositionNoise, Route

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def _route(length_m: float, speed: float = 10.0) -> Route:
    dlat = math.degrees(length_m / 6_371_008.8)
    return Route([(-56.2, -34.9), (-56.2, -34.9 + dlat)], speed)


def _fields(sentence: str) -> list[str]:
    """Check framing and checksum independently, return the comma fields."""
    assert sentence.startswith("$") and sentence.endswith("\r\n")
    body, star, given = sentence[1:-2].rpartition("*")
    assert star
    xor = functools.reduce(lambda a, b: a ^ b, body.encode(), 0)
    assert given == f"{xor:02X}"
    return body.split(",")


def test_vtg_gsa_gst_with_a_fix() -> None:
    fix = nmea.SimFix(
        t_ms=T0 + 250, lat=-34.9, lon=-56.2, speed_mps=10.0, course_deg=45.5, hdop=0.9,
        pdop=1.6, vdop=1.2, prns=(3, 14, 22, 7), std_lat_m=1.25, std_lon_m=1.5, std_alt_m=2.0,
        rms_m=1.1, semi_major_m=1.6, semi_minor_m=1.2, orientation_deg=190.0,
    )
    vtg = _fields(nmea.vtg(fix))
    assert vtg == ["GNVTG", "45.50", "T", "", "M", "19.438", "N", "36.000", "K", "A"]
    gsa = _fields(nmea.gsa(fix))
    assert gsa[:3] == ["GNGSA", "A", "3"] and len(gsa) == 18
    assert gsa[3:7] == ["03", "14", "22", "07"] and gsa[7:15] == [""] * 8
    assert gsa[15:] == ["1.60", "0.90", "1.20"]
    gst = _fields(nmea.gst(fix))
    # time, rms, semi-major, semi-minor, orientation (0..180), lat, lon, alt std dev
    assert gst == ["GNGST", "221320.25", "1.10", "1.60", "1.20", "10.0", "1.25", "1.50", "2.00"]


def test_no_fix_epoch_keeps_talking_with_a_time() -> None:
    fix = nmea.SimFix(t_ms=T0, lat=0.0, lon=0.0, quality=0, sats=0)
    lines = nmea.epoch_bytes(fix).decode().splitlines(keepends=True)
    assert [line[3:6] for line in lines] == list(nmea.SENTENCES)
    gga, rmc, vtg, gsa, gst = (_fields(x) for x in lines)
    assert gga[1] == "221320.00" and gga[2:6] == ["", "", "", ""] and gga[6] == "0"
    assert rmc[1] == "221320.00" and rmc[2] == "V" and rmc[3:7] == [""] * 4
    assert rmc[9] == "141123" and rmc[-1] == "N"
    assert vtg[-1] == "N" and gsa[2] == "1" and gst[1] == "221320.00" and gst[2:] == [""] * 7
    never = nmea.SimFix(t_ms=T0, lat=0.0, lon=0.0, quality=0, time_valid=False)
    assert _fields(nmea.gga(never))[1] == "" and _fields(nmea.rmc(never))[9] == ""


def test_sentence_selection_keeps_wire_order() -> None:
    fix = nmea.SimFix(t_ms=T0, lat=1.0, lon=2.0)
    text = nmea.epoch_bytes(fix, sentences=("GST", "GGA")).decode()
    assert [x[3:6] for x in text.splitlines()] == ["GGA", "GST"]
    with pytest.raises(ValueError):
        nmea.epoch_bytes(fix, sentences=("GGA", "ZDA"))


def test_stops_and_speed_zones() -> None:
    route = _route(1000.0)
    motion = Motion(route, 10.0, zones=[SpeedZone(0, 200, 5.0)], stops=[Stop(600, 30.0)])
    # 200 m at 5 m/s (40 s) + 400 m at 10 (40 s) + 30 s stop + 400 m at 10 (40 s)
    assert motion.duration_s == pytest.approx(150.0)
    assert motion.at(20.0).distance_m == pytest.approx(100.0)
    assert motion.at(20.0).speed_mps == 5.0
    during = [motion.at(t) for t in (80.0, 95.0, 109.9)]
    assert {(p.lon, p.lat) for p in during} == {(during[0].lon, during[0].lat)}
    assert all(p.speed_mps == 0.0 and not p.finished for p in during)
    assert during[0].distance_m == pytest.approx(600.0)
    assert motion.at(120.0).distance_m == pytest.approx(700.0)
    assert motion.at(500.0).finished
    with pytest.raises(ValueError, match="within the route"):
        Motion(route, stops=[Stop(5000, 1.0)])


def test_parked_truck_jitters_but_reports_a_stop() -> None:
    motion = Motion(_route(100.0), stops=[Stop(50.0, 60.0)])
    model = FixModel(motion, PositionNoise(2.0, seed=3), seed=3)
    fixes = [model.fix(t, T0 + round(t * 1000)) for t in range(10, 60)]
    speeds = [f.speed_mps for f in fixes]
    assert all(0 <= s < 0.5 for s in speeds) and len(set(speeds)) > 40
    spread = max(f.lat for f in fixes) - min(f.lat for f in fixes)
    assert spread > 1e-6  # positions scatter around the parked point


def test_jamming_ramps_down_loses_fix_and_recovers() -> None:
    jam = Jamming(Window(10.0, 40.0), ramp_s=10.0)
    model = FixModel(Motion(_route(5000.0)), conditions=Conditions(jamming=(jam,)), sats=14)
    fixes = {t: model.fix(t, T0 + t * 1000) for t in range(0, 60)}
    before, ramp_in = fixes[9], [fixes[t] for t in range(10, 20)]
    assert before.sats == 14 and before.hdop == pytest.approx(0.8)
    sats = [f.sats for f in ramp_in]
    hdops = [f.hdop for f in ramp_in]
    sds = [f.std_lat_m for f in ramp_in]
    assert sats == sorted(sats, reverse=True) and sats[-1] < sats[0]
    assert hdops == sorted(hdops) and hdops[-1] > 5 * hdops[0]
    assert sds == sorted(sds) and sds[-1] > 5 * sds[0]
    assert all(f.std_lat_m >= 0.3 for f in fixes.values() if f.has_fix)
    assert all(not fixes[t].has_fix for t in range(20, 41))
    assert all(fixes[t].time_valid for t in range(20, 41))
    recovery = [fixes[t] for t in range(41, 50)]
    assert all(f.has_fix for f in recovery)
    assert [f.sats for f in recovery] == sorted(f.sats for f in recovery)
    assert fixes[50].sats == 14 and fixes[50].hdop == pytest.approx(0.8)


def test_clock_skew_and_dropout_windows(tmp_path: Path) -> None:
    conditions = Conditions(
        dropouts=(Window(0.0, 2.0), Window(5.0, 3.0)),
        skews=(ClockSkew(-7_000, Window(10.0, 2.0)),),
    )
    route = _route(200.0, 10.0)  # 20 s at 1 Hz -> 21 epochs
    out = tmp_path / "gps.nmea"
    with out.open("wb") as fh:
        rx = GpsReceiver(route, fh.fileno(), 1.0, realtime=False, t0_ms=T0, conditions=conditions)
        rx.run()
    lines = out.read_bytes().decode().splitlines(keepends=True)
    gga = [_fields(x) for x in lines if x.startswith("$GNGGA")]
    assert len(gga) == epochs_per_pass(route, 1.0) == 21
    quality = [g[6] for g in gga]
    assert quality[:2] == ["0", "0"] and quality[5:8] == ["0"] * 3
    assert quality.count("0") == 5
    assert gga[0][1] == gga[1][1] == ""  # no time before the first fix ever
    assert gga[5][1] == "221325.00"  # a tunnel: time kept
    assert [g[1] for g in gga[9:13]] == ["221329.00", "221323.00", "221324.00", "221332.00"]
