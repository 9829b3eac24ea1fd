"""Tests for the simulated GPS receiver (firmware_sim): geometry, NMEA encoding, pty, pacing.

Geometry is checked against a haversine written here, independently of firmware_sim.route;
the pty tests use a real pseudo-terminal read through pyserial, no mocks.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pynmea2
import pytest
import serial
from shapely.geometry import LineString, Point

from firmware_sim import cli, nmea
from firmware_sim.gps import GpsReceiver, epochs_per_pass
from firmware_sim.pty import PtyPair, reader_attached
from firmware_sim.route import PositionNoise, Route, load_linestring

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "firmware_sim" / "scenarios"


def ref_haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Independent reference (textbook form with atan2)."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.atan2(math.sqrt(a), math.sqrt(1 - a))


# --- route ----------------------------------------------------------------------------------

MVD = [(-56.2105, -34.904), (-56.2083854, -34.9019332), (-56.2045477, -34.8964813)]


def test_route_length_matches_independent_haversine() -> None:
    route = Route(MVD, 20.0)
    expected = sum(ref_haversine(*a, *b) for a, b in pairwise(MVD))
    assert math.isclose(route.length_m, expected, rel_tol=1e-9)
    assert math.isclose(route.duration_s, expected / 20.0)


def test_route_start_and_end() -> None:
    route = Route(MVD, 20.0)
    start = route.position_at(0.0)
    assert (start.lon, start.lat) == MVD[0]
    assert not start.finished and start.speed_mps == 20.0
    end = route.position_at(route.duration_s + 5)
    assert (end.lon, end.lat) == MVD[-1]
    assert end.finished and end.speed_mps == 0.0
    assert route.position_at(-3) == start


def test_route_midpoint_of_meridian_segment() -> None:
    route = Route([(10.0, 0.0), (10.0, 1.0)], 10.0)
    mid = route.position_at(route.duration_s / 2)
    assert math.isclose(mid.lat, 0.5, abs_tol=1e-9)
    assert math.isclose(mid.lon, 10.0, abs_tol=1e-9)
    assert math.isclose(mid.course_deg, 0.0, abs_tol=1e-6)
    east = Route([(0.0, 0.0), (0.01, 0.0)], 1.0).position_at(1.0)
    assert math.isclose(east.course_deg, 90.0, abs_tol=1e-6)


def test_route_point_lies_on_its_segment_at_the_right_distance() -> None:
    route = Route(MVD, 20.0)
    seg0 = ref_haversine(*MVD[0], *MVD[1])
    d = seg0 + 123.0  # inside the second segment
    p = route.position_at(d / 20.0)
    from_vertex = ref_haversine(*MVD[1], p.lon, p.lat)
    to_vertex = ref_haversine(p.lon, p.lat, *MVD[2])
    assert math.isclose(from_vertex, 123.0, abs_tol=1e-3)
    assert math.isclose(from_vertex + to_vertex, ref_haversine(*MVD[1], *MVD[2]), abs_tol=1e-3)
    assert math.isclose(p.distance_m, d)


def test_route_validation() -> None:
    with pytest.raises(ValueError):
        Route([(0.0, 0.0)], 1.0)
    with pytest.raises(ValueError):
        Route([(0.0, 0.0), (0.0, 0.0)], 1.0)  # duplicates collapse to one position
    with pytest.raises(ValueError):
        Route([(-34.9, -156.2), (-34.8, -156.2)], 1.0)  # lat/lon swapped: |lat| > 90
    with pytest.raises(ValueError):
        Route(MVD, 0.0)


def test_noise_is_seeded_and_has_the_requested_spread() -> None:
    route = Route(MVD, 20.0)
    p = route.position_at(10.0)
    a = [PositionNoise(5.0, seed=42).apply(p) for _ in range(3)]
    b = [PositionNoise(5.0, seed=42).apply(p) for _ in range(3)]
    assert a == b
    noise = PositionNoise(5.0, seed=1)
    errors = [ref_haversine(p.lon, p.lat, q.lon, q.lat) for q in map(noise.apply, [p] * 4000)]
    # 2-D isotropic Gaussian: RMS radial error = sigma * sqrt(2)
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert 0.9 * 5.0 * math.sqrt(2) < rms < 1.1 * 5.0 * math.sqrt(2)
    assert PositionNoise(0.0).apply(p) is p


def test_load_linestring_requires_exactly_one(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [0, 1]]}
    two = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": line}] * 2,
    }
    path = tmp_path / "two.geojson"
    path.write_text(json.dumps(two))
    with pytest.raises(ValueError, match="exactly one"):
        load_linestring(path)
    path.write_text(json.dumps(line))
    assert load_linestring(path) == [(0.0, 0.0), (0.0, 1.0)]


# --- demo scenario files --------------------------------------------------------------------


def _local_xy(origin: tuple[float, float]):
    lat0 = math.radians(origin[1])

    def xy(lon: float, lat: float) -> tuple[float, float]:
        k = math.radians(1) * 6_371_008.8
        return ((lon - origin[0]) * k * math.cos(lat0), (lat - origin[1]) * k)

    return xy


def test_demo_scenarios_meet_their_contract() -> None:
    corridor_doc = json.loads((SCENARIOS / "demo_corridor.geojson").read_text())
    assert corridor_doc["type"] == "FeatureCollection" and len(corridor_doc["features"]) == 1
    props = corridor_doc["features"][0]["properties"]
    assert props == {"kind": "corridor", "id": "corridor-mvd-01", "width_m": 60}
    corridor = load_linestring(SCENARIOS / "demo_corridor.geojson")
    truck = Route.from_geojson_file(SCENARIOS / "demo_truck_route.geojson", 20.0)
    assert 1200 < Route(corridor, 20.0).length_m < 1600
    assert truck.duration_s <= 90.0
    assert truck.coords[0] == corridor[0] and truck.coords[-1] == corridor[-1]
    xy = _local_xy(corridor[0])
    line = LineString([xy(*p) for p in corridor])
    distances = [
        line.distance(Point(xy(p.lon, p.lat)))
        for k in range(epochs_per_pass(truck, 10.0))
        for p in [truck.position_at(k / 10.0)]
    ]
    outside = [d > 60.0 for d in distances]
    assert sum(outside) / 10.0 >= 15.0  # seconds spent > 60 m from the corridor
    assert 200 < max(distances) < 320
    first_out = outside.index(True)
    assert 400 < first_out / 10.0 * 20.0 < 600  # follows the corridor ~500 m first
    assert not any(outside[-100:])  # back on the corridor for the end of the drive


# --- NMEA encoding --------------------------------------------------------------------------


def test_checksum_of_known_sentences() -> None:
    gga = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    rmc = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
    assert nmea.checksum(gga) == "47"
    assert nmea.checksum(rmc) == "6A"
    assert nmea.frame(gga) == f"${gga}*47\r\n"
    ubx = "GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,"
    assert nmea.checksum(ubx) == "5B"  # u-blox protocol specification example


def test_coordinate_formats() -> None:
    assert nmea.format_lat(48.1173) == ("4807.03800", "N")
    assert nmea.format_lon(11.516666667) == ("01131.00000", "E")
    assert nmea.format_lat(-34.904) == ("3454.24000", "S")
    assert nmea.format_lon(-56.2105) == ("05612.63000", "W")
    assert nmea.format_lat(10.99999999) == ("1100.00000", "N")  # no "1060.00000"
    assert nmea.format_lon(-179.9999999999) == ("18000.00000", "W")
    with pytest.raises(ValueError):
        nmea.format_lat(91.0)


def test_time_date_and_sentences() -> None:
    t_ms = 764_426_119_000 + 457  # 1994-03-23 12:35:19.457 UTC
    assert nmea.format_time(t_ms) == "123519.45"
    assert nmea.format_time(t_ms, 3) == "123519.457"
    assert nmea.format_date(t_ms) == "230394"
    fix = nmea.SimFix(t_ms=t_ms, lat=-34.904, lon=-56.2105, speed_mps=20.0, course_deg=359.999)
    gga = nmea.gga(fix)
    rmc = nmea.rmc(fix, talker="GP")
    assert gga == "$GNGGA,123519.45,3454.24000,S,05612.63000,W,1,12,0.80,30.0,M,14.0,M,,*79\r\n"
    # 20 m/s = 38.877 kn; 359.999 deg rounds to 0.00, never "360.00"
    assert rmc.startswith("$GPRMC,123519.45,A,3454.24000,S,05612.63000,W,38.877,0.00,230394,")
    assert rmc.endswith(f",,,A*{nmea.checksum(rmc[1:-5])}\r\n")
    no_fix = nmea.SimFix(t_ms=t_ms, lat=0.0, lon=0.0, quality=0)
    assert ",V,,,,,,,230394,,,N*" in nmea.rmc(no_fix)


# --- pseudo-terminal ------------------------------------------------------------------------


@pytest.mark.integration
def test_pty_lines_reach_pyserial_reader(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    with PtyPair(link) as pair:
        assert os.readlink(link) == pair.slave_path
        assert pair.path == str(link)
        assert not reader_attached(pair.master_fd)
        with serial.Serial(pair.path, 9600, timeout=2) as port:
            assert reader_attached(pair.master_fd)
            os.write(pair.master_fd, b"$GNGGA,one*00\r\n$GNRMC,two*00\r\n")
            assert port.readline() == b"$GNGGA,one*00\r\n"  # raw mode: CRLF untouched
            assert port.readline() == b"$GNRMC,two*00\r\n"
    assert not os.path.lexists(link)


def test_pty_link_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    victim = tmp_path / "gps0"
    victim.write_text("keep me")
    with pytest.raises(FileExistsError):
        PtyPair(victim)
    assert victim.read_text() == "keep me"


# --- receiver pacing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rmc:
    t_ms: int
    lat: float
    lon: float
    speed_mps: float


def _read_rmc(port: serial.Serial) -> _Rmc:
    """Read lines until an RMC arrives; decode it with pynmea2 (a third-party reference, so
    neither the simulator's encoder nor the agent's decoder grades its own work)."""
    while True:
        line = port.readline()
        assert line.endswith(b"\r\n"), f"timed out or partial line: {line!r}"
        msg = pynmea2.parse(line.decode("ascii").strip(), check=True)
        if isinstance(msg, pynmea2.types.talker.RMC):
            stamp = msg.datetime.replace(tzinfo=dt.UTC)
            return _Rmc(round(stamp.timestamp() * 1000), msg.latitude, msg.longitude,
                        float(msg.spd_over_grnd) / nmea.KNOTS_PER_MPS)


def _short_route(length_m: float, speed: float) -> Route:
    """A due-north route of the given length along a meridian (exact metres per degree)."""
    dlat = math.degrees(length_m / 6_371_008.8)
    return Route([(-56.2, -34.9), (-56.2, -34.9 + dlat)], speed)


def test_fast_mode_writes_the_right_number_of_epochs(tmp_path: Path) -> None:
    route = _short_route(1000.0, 10.0)  # 100 s at 10 Hz -> epochs at 0.0 .. 100.0 s
    assert epochs_per_pass(route, 10.0) == 1001
    out = tmp_path / "nmea.txt"
    seen: list[int] = []
    with open(out, "wb") as fh:
        rx = GpsReceiver(
            route,
            fh.fileno(),
            10.0,
            realtime=False,
            t0_ms=1_700_000_000_000,
            loop=2,
            on_epoch=lambda i, _fix: seen.append(i),
        )
        assert rx.run() == 2002
    assert rx.epochs_written == 2002 and rx.epochs_dropped == 0
    assert seen == list(range(2002))
    lines = out.read_bytes().splitlines()
    assert len(lines) == 5 * 2002  # GGA, RMC, VTG, GSA, GST per epoch
    assert [line[3:6] for line in lines[:5]] == [b"GGA", b"RMC", b"VTG", b"GSA", b"GST"]
    assert lines[0].startswith(b"$GNGGA,221320.00,") and lines[1].startswith(b"$GNRMC,221320.00,")
    assert lines[5].startswith(b"$GNGGA,221320.10,")
    assert lines[-1].startswith(b"$GNGST,221640.10,")  # t0 + 2001 * 100 ms = +200.1 s


@pytest.mark.integration
def test_fast_mode_through_pty_decodes_back_to_the_route() -> None:
    route = _short_route(200.0, 20.0)
    n = epochs_per_pass(route, 10.0)
    with PtyPair() as pair:
        rx = GpsReceiver(route, pair.master_fd, 10.0, realtime=False, t0_ms=1_700_000_000_000)
        thread = threading.Thread(target=rx.run)
        with serial.Serial(pair.slave_path, timeout=2) as port:
            thread.start()
            fixes = [_read_rmc(port) for _ in range(n)]
            thread.join(5)
    assert not thread.is_alive()
    for k, fix in enumerate(fixes):
        truth = route.position_at(k / 10.0)
        assert fix.t_ms == 1_700_000_000_000 + 100 * k
        assert abs(fix.lat - truth.lat) < 1e-6
        assert abs(fix.lon - truth.lon) < 1e-6
        if k < n - 1:  # the last epoch may be exactly at the end, parked
            assert fix.speed_mps == pytest.approx(20.0, abs=1e-3)


@pytest.mark.integration
def test_realtime_mode_keeps_schedule_and_wall_clock() -> None:
    route = _short_route(30.0, 20.0)  # 1.5 s at 20 Hz -> 31 epochs
    n = epochs_per_pass(route, 20.0)
    with PtyPair() as pair, serial.Serial(pair.slave_path, timeout=2) as port:
        rx = GpsReceiver(route, pair.master_fd, 20.0)
        started = time.monotonic()
        thread = threading.Thread(target=rx.run)
        thread.start()
        fixes = []
        while len(fixes) < n:
            fixes.append(_read_rmc(port))
            assert abs(fixes[-1].t_ms - time.time() * 1000) < 250  # current, not replayed
        thread.join(5)
        elapsed = time.monotonic() - started
    assert rx.epochs_written == n and rx.epochs_dropped == 0
    assert (n - 1) / 20.0 <= elapsed < (n - 1) / 20.0 + 0.5
    gaps = [b.t_ms - a.t_ms for a, b in pairwise(fixes)]
    assert all(30 <= g <= 80 for g in gaps), gaps


@pytest.mark.integration
def test_realtime_without_reader_drops_and_stop_is_prompt() -> None:
    route = _short_route(10_000.0, 20.0)
    stop = threading.Event()
    with PtyPair() as pair:
        rx = GpsReceiver(route, pair.master_fd, 50.0, stop=stop)
        thread = threading.Thread(target=rx.run)
        thread.start()
        time.sleep(0.3)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()  # stop is honoured (how fast is not a test's business)
    assert rx.epochs_written == 0 and rx.epochs_dropped >= 5


# --- CLI and independence -------------------------------------------------------------------


def test_cli_fast_to_existing_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "capture.nmea"
    out.touch()
    route_file = SCENARIOS / "demo_truck_route.geojson"
    rc = cli.main(
        ["sim", "gps", "--route", str(route_file), "--fast", "--device", str(out), "--t0-ms", "0"]
    )
    assert rc == 0
    n = epochs_per_pass(Route.from_geojson_file(route_file, 20.0), 10.0)
    assert len(out.read_bytes().splitlines()) == 5 * n
    assert f"{n} epochs written" in capsys.readouterr().err


def test_cli_rejects_bad_route(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Point", "coordinates": [0, 0]}')
    assert cli.main(["sim", "gps", "--route", str(bad), "--device", "-"]) == 2


@pytest.mark.integration
def test_cli_pty_link_subprocess(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    route = tmp_path / "short.geojson"
    route.write_text(
        json.dumps({"type": "LineString", "coordinates": [[-56.2, -34.9], [-56.2, -34.899]]})
    )
    cmd = [sys.executable, "-m", "firmware_sim.cli", "sim", "gps", "--route", str(route)]
    cmd += ["--fast", "--pty-link", str(link), "--speed-mps", "20", "--rate-hz", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(link)
        with serial.Serial(str(link), timeout=30) as port:  # hang guards, not timings: a
            lines = [port.readline() for _ in range(5 * 6)]  # loaded CI machine is slow
        assert all(line.endswith(b"\r\n") for line in lines)  # 111 m at 20 m/s: 6 epochs
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.lexists(link)


def test_production_modules_stay_independent() -> None:
    forbidden_sim = {"edge_agent", "ledger_client", "geofences"}
    for path in (ROOT / "firmware_sim").rglob("*.py"):
        for name in _imported_roots(path):
            assert name not in forbidden_sim, f"{path.name} imports {name}"
    assert "firmware_sim" not in _imported_roots(ROOT / "edge_agent" / "sources" / "nmea.py")


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots
