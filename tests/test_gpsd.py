"""gpsd source: real gpsd + gpsfake replays, reconnects, hostile input, and the JSON mapping.

The integration tests replay NMEA through Debian's gpsfake (which starts its own gpsd on a
free port: the system gpsd on 2947, if any, is never used) and compare what the agent signed
with an independent pynmea2 + Decimal decode of the same log.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pynmea2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.agent import Agent, Item
from edge_agent.journal import Draft, Journal
from edge_agent.sources.gnss_health import HealthParams
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.gps_fix import GpsFix, NoFix
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.gpsd import GpsdSource
from edge_agent.sources.gpsd_decode import STATUS_QUALITY, GpsdDecoder

REPO = Path(__file__).resolve().parents[1]
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
GPSD = shutil.which("gpsd", path=SBIN_PATH)
GPSFAKE = shutil.which("gpsfake", path=SBIN_PATH)
needs_gpsd = pytest.mark.skipif(
    GPSD is None or GPSFAKE is None,
    reason="gpsd/gpsfake not installed (Debian: apt-get install gpsd gpsd-clients; "
           "deploy/install.sh does it)")

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
REPLAY_FILTERS = FixFilterParams(max_age_ms=None, max_future_ms=None)
"""A replayed log has no "now". Without GSV gpsd 3.22 reports no satellites or HDOP: unknown,
which the default satellite and HDOP filters do not judge."""


# ---------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a counter (no event exists for it) with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class _Fake:
    """gpsfake replaying ``log`` once (-1) through its own gpsd on a port of ours.

    gpsfake feeds its pty at once and gpsd flushes a device's input when it opens it, so a
    client that subscribes late would miss the start. With -i gpsfake asks before each
    sentence: we answer once the source's ?WATCH is confirmed, and the replay is exact.
    -p adds gpsfake's own watcher, which is how it notices the end and exits (status 0).
    """

    def __init__(self, proc: asyncio.subprocess.Process, sentences: int):
        self.proc = proc
        self.sentences = sentences

    async def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n" * (self.sentences + 16))
        await self.proc.stdin.drain()
        self.proc.stdin.close()

    async def finished(self, timeout: float = 120) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


@contextlib.asynccontextmanager
async def _gpsfake(log: Path, port: int) -> AsyncIterator[_Fake]:
    assert GPSFAKE is not None
    proc = await asyncio.create_subprocess_exec(
        GPSFAKE, "-1", "-p", "-i", "-q", "-P", str(port), str(log),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PATH": SBIN_PATH},
        start_new_session=True)
    try:
        yield _Fake(proc, len(log.read_bytes().splitlines()))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own group: gpsfake and its gpsd
            await asyncio.wait_for(proc.wait(), 10)


async def _replay(fake: _Fake, source: GpsdSource, watches_before: int = 0) -> None:
    """Start the replay once ``source`` is subscribed; return when gpsfake is done."""
    await _until(lambda: source.decoder.counts["watch"] > watches_before, "the ?WATCH reply")
    await fake.release()
    assert await fake.finished() == 0


def _simulate(path: Path, *args: str) -> None:
    """Let the simulator write an NMEA log (its CLI, as a separate program would)."""
    with path.open("wb") as out:
        subprocess.run([sys.executable, "-m", "firmware_sim.cli", "sim", "gps", "--fast",
                        "--device", "-", *args], stdout=out, stderr=subprocess.DEVNULL,
                       check=True, cwd=REPO, timeout=60)


def _nmea(body: str) -> str:
    checksum = 0
    for ch in body.encode("ascii"):
        checksum ^= ch
    return f"${body}*{checksum:02X}\r\n"


def _rnd(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def _angle_e7(text: str, hemi: str) -> int:
    whole, _, frac = text.partition(".")  # [d]ddmm.mmmmm
    degrees, minutes = int(whole[:-2]), Decimal(f"{whole[-2:]}.{frac}")
    e7 = _rnd((degrees + minutes / 60) * 10_000_000)
    return -e7 if hemi in "SW" else e7


def _reference(log: Path) -> list[dict[str, Any]]:
    """Independent decode of the log (pynmea2 + Decimal): one dict per epoch, in order."""
    epochs: dict[str, dict[str, Any]] = {}
    gsv = False
    for line in log.read_text().splitlines():
        msg = pynmea2.parse(line, check=True)
        kind = msg.sentence_type
        gsv |= kind == "GSV"
        if kind not in ("GGA", "RMC", "GST"):
            continue
        ep = epochs.setdefault(msg.data[0], {})
        if (kind, msg.data[5 if kind == "GGA" else 1]) in (("GGA", "0"), ("RMC", "V")):
            ep["no_fix"] = True  # a dropout: gpsd reports mode 1, no reading is signed
        elif kind == "GGA":
            ep["lat_e7"], ep["lon_e7"] = (_angle_e7(msg.lat, msg.lat_dir),
                                          _angle_e7(msg.lon, msg.lon_dir))
            ep["fix_quality"] = int(msg.gps_qual)
            ep["alt_cm"] = _rnd(Decimal(msg.data[8]) * 100)
        elif kind == "RMC":
            hms, dmy = msg.data[0], msg.data[8]
            secs = calendar.timegm((2000 + int(dmy[4:]), int(dmy[2:4]), int(dmy[:2]),
                                    int(hms[:2]), int(hms[2:4]), 0))
            ep["t_ms"] = secs * 1000 + _rnd(Decimal(hms[4:]) * 1000)
            ep["speed_cmps"] = _rnd(Decimal(msg.data[6]) * 185_200 / 3600)  # knots
            ep["course_cdeg"] = _rnd(Decimal(msg.data[7]) * 100) % 36_000
        else:
            ep["err"] = tuple(_rnd(Decimal(msg.data[i]) * 100) for i in (5, 6, 7))
    out = [ep for ep in epochs.values() if not ep.get("no_fix")]
    for ep in out:
        ep["gsv"] = gsv
    return out


def _drafts_sink() -> tuple[list[Draft], Callable[[Item], Any]]:
    got: list[Draft] = []

    async def emit(item: Item) -> None:
        assert isinstance(item, Draft)
        got.append(item)

    return got, emit


# ------------------------------------------------- real gpsd + gpsfake integration


@needs_gpsd
@pytest.mark.integration
def test_replayed_simulator_drive_is_signed_as_the_nmea_log_says(tmp_path: Path) -> None:
    log = tmp_path / "drive.nmea"
    _simulate(log, "--rate-hz", "4", "--noise-m", "2.5", "--seed", "7",
              "--t0-ms", str(T0_MS))
    expected = _reference(log)
    assert len(expected) >= 300  # a few hundred epochs along the demo route

    port = _free_port()
    journal = Journal(tmp_path / "j.db", gateway_id="gw-gpsd", key=Ed25519PrivateKey.generate())
    source = GpsdSource(port=port, stream=GpsStream("gps0", REPLAY_FILTERS),
                        backoff_s=(0.05, 0.5))
    agent = Agent(journal, [source], [])

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.run(stop))
        async with _gpsfake(log, port) as fake:
            await _replay(fake, source)
        await _until(lambda: source.counts["disconnects"] >= 1, "gpsd to go away")
        stop.set()
        await runner

    asyncio.run(scenario())
    records = [s.record() for s in journal.read_after(0, 100_000)]
    fixes = [r for r in records if r["kind"] == "gps"]
    assert [r["t_ms"] for r in fixes] == [e["t_ms"] for e in expected]
    worst = {"pos": 0, "speed": 0}
    for rec, exp in zip(fixes, expected, strict=True):
        body = rec["body"]
        # gpsd prints degrees with 9 decimals (from a double within ~1e-14 of the exact
        # value); rounding that to 7 decimals is off the exact rounding by at most 1 unit.
        worst["pos"] = max(worst["pos"], abs(body["lat_e7"] - exp["lat_e7"]),
                           abs(body["lon_e7"] - exp["lon_e7"]))
        # gpsd converts knots to m/s in binary and prints mm/s: at most 1 cm/s off.
        worst["speed"] = max(worst["speed"], abs(body["speed_cmps"] - exp["speed_cmps"]))
        assert body["course_cdeg"] == exp["course_cdeg"]
        assert body["alt_cm"] == exp["alt_cm"]
        assert body["fix_quality"] == exp["fix_quality"]
        assert body["fix_mode"] == 3
        if "err" in exp:
            assert (body["err_lat_cm"], body["err_lon_cm"], body["err_alt_cm"]) == exp["err"]
        if not exp["gsv"]:  # gpsd 3.22 sends SKY (satellites, DOPs) only for GSV
            assert not {"sats", "hdop_x10", "pdop_x10"} & body.keys()  # unknown, not 0
        else:
            assert body["sats"] > 0 and body["hdop_x10"] < 999
    assert worst["pos"] <= 1 and worst["speed"] <= 1, worst
    stats = source.stats()
    assert stats.added == len(expected) and stats.written == len(expected)
    print(f"\ngpsd replay: {len(fixes)} fixes compared, max |d lat/lon| {worst['pos']} e-7 deg,"
          f" max |d speed| {worst['speed']} cm/s")


def _quality_log(path: Path) -> list[tuple[int, int | None]]:
    """A u-blox-like log (RMC VTG GGA GSA GSV GSV GST each second) walking through every GGA
    quality, with a 3 s no-fix gap; returns (t_ms, quality or None for no fix) per epoch."""
    lines: list[str] = []
    plan: list[tuple[int, int | None]] = []
    day_ms = calendar.timegm((2024, 3, 23, 0, 0, 0)) * 1000
    for i, quality in enumerate([1, 1, 2, 3, 4, 5, 6, None, None, None, 7, 8, 1, 1]):
        t = f"1200{i:02d}.00"
        lat = f"4807.{38 + i:02d}000"
        plan.append((day_ms + 12 * 3_600_000 + i * 1000, quality))
        if quality is None:
            lines += [_nmea(f"GNRMC,{t},V,,,,,,,230324,,,N"), _nmea("GNVTG,,,,,,,,,N"),
                      _nmea(f"GNGGA,{t},,,,,0,00,99.99,,,,,,"),
                      _nmea("GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")]
        else:
            lines += [_nmea(f"GNRMC,{t},A,{lat},N,01131.00000,E,022.4,084.4,230324,,,A"),
                      _nmea("GNVTG,084.4,T,,M,022.4,N,041.5,K,A"),
                      _nmea(f"GNGGA,{t},{lat},N,01131.00000,E,{quality},08,1.0,545.4,M,46.9,M,,"),
                      _nmea("GNGSA,A,3,04,05,09,12,24,25,29,31,,,,,1.8,1.0,1.5")]
        lines += [_nmea("GPGSV,2,1,08,04,40,083,46,05,10,100,42,09,50,120,40,12,30,200,38"),
                  _nmea("GPGSV,2,2,08,24,20,250,35,25,60,300,44,29,15,010,30,31,45,045,41"),
                  _nmea(f"GNGST,{t},1.2,2.5,1.5,45.0,1.6,1.25,2.4")]
    path.write_text("".join(lines))
    return plan


@needs_gpsd
@pytest.mark.integration
def test_real_gpsd_reports_merge_into_one_fix_per_epoch_with_sky_gst_and_status(
        tmp_path: Path) -> None:
    log = tmp_path / "qualities.nmea"
    plan = _quality_log(log)
    port = _free_port()
    stream = GpsStream("gps0", FixFilterParams(rejected_qualities=frozenset(), max_age_ms=None,
                                               max_future_ms=None),
                       HealthParams(lost_after_ms=1000))
    source = GpsdSource(port=port, stream=stream, backoff_s=(0.05, 0.5))
    got, emit = _drafts_sink()

    async def scenario() -> None:
        task = asyncio.create_task(source.run(emit))
        async with _gpsfake(log, port) as fake:
            await _replay(fake, source)
        await _until(lambda: source.counts["disconnects"] >= 1, "gpsd to go away")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    fixes = [d for d in got if d.kind == "gps"]
    want = [(t, q) for t, q in plan if q is not None]
    assert [(d.t_ms, d.body["fix_quality"]) for d in fixes] == want  # status round trip
    for d in fixes:
        # SKY (from GSA/GSV) and GST of the same cycle merged into every fix
        assert {k: d.body[k] for k in ("sats", "hdop_x10", "pdop_x10", "vdop_x10")} == \
            {"sats": 8, "hdop_x10": 10, "pdop_x10": 18, "vdop_x10": 15}
        assert (d.body["err_lat_cm"], d.body["err_lon_cm"], d.body["err_alt_cm"]) == \
            (160, 125, 240)
        assert (d.body["alt_cm"], d.body["speed_cmps"], d.body["course_cdeg"]) == \
            (54540, 1152, 8440)  # 22.4 kn = 11.5236 m/s; gpsd prints 11.524
    events = [d.body["event"] for d in got if d.kind == "status"]
    assert events.index("gnssLost") < events.index("gnssRestored")
    assert source.stats().events["no_fixes"] == 3


@needs_gpsd
@pytest.mark.integration
def test_source_rides_out_gpsd_down_and_restarted_without_a_restart(tmp_path: Path) -> None:
    route = tmp_path / "short.geojson"
    route.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "LineString", "coordinates": [[-56.2105, -34.904], [-56.2083854, -34.9019332]]}}))
    logs = [tmp_path / "first.nmea", tmp_path / "second.nmea"]
    for n, log in enumerate(logs):
        _simulate(log, "--route", str(route), "--rate-hz", "2",
                  "--t0-ms", str(T0_MS + n * 3_600_000))
    times = [[e["t_ms"] for e in _reference(log)] for log in logs]
    port = _free_port()
    source = GpsdSource(port=port, stream=GpsStream("gps0", REPLAY_FILTERS),
                        backoff_s=(0.05, 0.2))
    got, emit = _drafts_sink()

    async def scenario() -> None:
        task = asyncio.create_task(source.run(emit))
        await _until(lambda: source.counts["connect_failed"] >= 2, "refused connects")
        for n, log in enumerate(logs):  # gpsd comes up, serves one log, dies; twice
            async with _gpsfake(log, port) as fake:
                await _replay(fake, source, watches_before=n)
            await _until(lambda n=n: source.counts["disconnects"] > n, "the drop")
        assert not task.done()  # never gave up, never raised
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [d.t_ms for d in got if d.kind == "gps"] == times[0] + times[1]
    events = [(d.body["event"], d.body.get("reason")) for d in got if d.kind == "status"]
    assert events == [("sensorDisconnected", "eof"), ("sensorConnected", None),
                      ("sensorDisconnected", "eof")]
    assert source.counts["connects"] >= 2


@needs_gpsd
@pytest.mark.integration
def test_a_silent_gpsd_is_dropped_and_redialled_without_journal_noise(tmp_path: Path) -> None:
    """Real gpsd with no receiver answers ?WATCH and then says nothing, like a hung one."""
    assert GPSD is not None
    port = _free_port()
    source = GpsdSource(port=port, stall_s=0.3, backoff_s=(0.05, 0.1))
    got, emit = _drafts_sink()

    async def scenario() -> None:
        daemon = await asyncio.create_subprocess_exec(  # no device, so a control socket
            GPSD, "-N", "-S", str(port), "-F", str(tmp_path / "gpsd.sock"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        task = asyncio.create_task(source.run(emit))
        try:
            await _until(lambda: source.counts["stalls"] >= 2, "two stalls")
            assert source.counts["connects"] >= 2 and source.decoder.version is not None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if daemon.returncode is None:
                daemon.terminate()
            await daemon.wait()

    asyncio.run(scenario())
    assert got == []  # nothing ever flowed: no status records either


# -------------------------------------------------- hostile gpsd over a real socket


def test_garbage_from_the_socket_is_counted_and_the_held_epoch_flushed_in_time() -> None:
    fix_seen = asyncio.Event()
    tpv = (b'{"class":"TPV","device":"/dev/ttyS0","mode":3,"time":"2024-03-23T12:00:00.000Z",'
           b'"lat":48.1173,"lon":11.516666667,"speed":1.5}\n')

    served = 0

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        if served > 1:  # the source redials after the hang-up: nothing more to say
            writer.close()
            return
        writer.write(b'{"class":"VERSION","release":"3.22","proto_major":3,"proto_minor":14}\n')
        writer.write(b"x" * 100_000 + b"\n")  # a line far past max_line
        writer.write(b"\xff\xfe\x00\x01binary\n" + b"[" * 15_000 + b"\n" + b"{nope\n")
        writer.write(b'{"class":"TPV","mode":3,"time":"2024-03-23T11:59:59Z","lat":1e999999999,'
                     b'"lon":0}\n')
        writer.write(tpv)  # held for SKY/GST until the merge window closes it
        await writer.drain()
        await fix_seen.wait()  # only then hang up: the fix came from the timer, not the EOF
        writer.close()

    got: list[Draft] = []

    async def emit(item: Item) -> None:
        assert isinstance(item, Draft)
        got.append(item)
        if item.kind == "gps":
            fix_seen.set()

    async def scenario() -> GpsdSource:
        server = await asyncio.start_server(hostile, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        source = GpsdSource(port=port, stream=GpsStream("gps0", REPLAY_FILTERS),
                            merge_window_s=0.05, backoff_s=(0.05, 0.1))
        task = asyncio.create_task(source.run(emit))
        await asyncio.wait_for(fix_seen.wait(), 10)
        await _until(lambda: source.counts["disconnects"] >= 1, "the hang-up")
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        return source

    source = asyncio.run(scenario())
    stats = source.stats().dropped
    assert stats["line_too_long"] == 1 and stats["gpsd_not_utf8"] == 1
    assert stats["gpsd_bad_json"] == 2 and stats["gpsd_bad_position"] == 1
    assert [(d.t_ms, d.body["lat_e7"], d.body["speed_cmps"]) for d in got if d.kind == "gps"] \
        == [(1_711_195_200_000, 481_173_000, 150)]


# ---------------------------------------- the JSON mapping, by hand from gpsd_json(5)


def _feed(dec: GpsdDecoder, *reports: dict[str, Any] | str) -> list[GpsFix | NoFix]:
    out: list[GpsFix | NoFix] = []
    for r in reports:
        out += dec.feed((r if isinstance(r, str) else json.dumps(r)).encode())
    return out


DOC_TPV = ('{"class":"TPV","device":"/dev/pts/1","time":"2005-06-08T10:34:48.283Z",'
           '"ept":0.005,"lat":46.498293369,"lon":7.567411672,"alt":1343.127,"eph":36.000,'
           '"epv":32.321,"track":10.3788,"speed":0.091,"climb":-0.085,"mode":3}')
DOC_SKY = ('{"class":"SKY","device":"/dev/pts/1","xdop":1.55,"hdop":1.24,"pdop":1.99,'
           '"satellites":[{"PRN":23,"el":6,"az":84,"ss":0,"used":false},'
           '{"PRN":28,"el":7,"az":160,"ss":0,"used":false},'
           '{"PRN":8,"el":66,"az":189,"ss":44,"used":true},'
           '{"PRN":29,"el":13,"az":273,"ss":0,"used":false},'
           '{"PRN":10,"el":51,"az":304,"ss":29,"used":true},'
           '{"PRN":4,"el":15,"az":199,"ss":36,"used":true},'
           '{"PRN":2,"el":34,"az":241,"ss":43,"used":true},'
           '{"PRN":27,"el":71,"az":76,"ss":43,"used":true}]}')
DOC_GST = ('{"class":"GST","device":"/dev/pts/1","time":"2005-06-08T10:34:48.283Z",'
           '"rms":2.440,"major":1.660,"minor":1.120,"orient":68.989,'
           '"lat":1.600,"lon":1.200,"alt":2.520}')  # the doc's GST, retimed to the TPV's epoch


def test_doc_examples_map_to_integer_units_by_hand() -> None:
    dec = GpsdDecoder()
    assert _feed(dec, DOC_TPV, DOC_SKY, DOC_GST) == []  # first epoch: held, nothing learned
    [fix] = dec.flush()
    assert fix == GpsFix(
        t_ms=1_118_226_888_283,  # timegm(2005-06-08 10:34:48) = 1118226888 s, + 283 ms
        lat_e7=464_982_934,  # 46.498293369 * 1e7 = 464982933.69 -> 464982934
        lon_e7=75_674_117,  # 7.567411672 * 1e7 = 75674116.72 -> 75674117
        fix_quality=1,  # no "status": a plain GPS fix
        sats=5,  # no uSat: five satellites flagged "used"
        hdop_x10=12,  # 1.24 * 10 = 12.4 -> 12
        alt_cm=134_313,  # no altMSL: deprecated "alt" 1343.127 m = 134312.7 cm -> 134313
        speed_cmps=9,  # 0.091 m/s = 9.1 cm/s -> 9
        course_cdeg=1038,  # 10.3788 deg = 1037.88 cdeg -> 1038
        fix_mode=3,
        pdop_x10=20,  # 1.99 * 10 = 19.9 -> 20
        vdop_x10=None,  # not reported: left out of the record
        err_lat_cm=160, err_lon_cm=120, err_alt_cm=252)  # GST std devs in m * 100
    assert "vdop_x10" not in fix.body()


@pytest.mark.parametrize(("status", "quality"), sorted(STATUS_QUALITY.items()))
def test_gpsd_status_maps_back_to_the_gga_quality_scale(status: int, quality: int) -> None:
    dec = GpsdDecoder()
    _feed(dec, {"class": "TPV", "mode": 3, "status": status, "time": "2024-03-23T12:00:00Z",
                "lat": 1, "lon": 2})
    [fix] = dec.flush()
    assert isinstance(fix, GpsFix) and fix.fix_quality == quality


def test_rounding_is_exact_half_even_not_binary_float() -> None:
    # 40.05132145 * 1e7 is exactly 400513214.5 -> even 400513214; as a float product it is
    # 400513214.50000006 and would round to ...215. Likewise 34.38379935 -> ...3993.5 -> 3994
    # (float: 343837993.49999994 -> ...3993). Negative ties go to even too: -2.5 -> -2.
    dec = GpsdDecoder()
    _feed(dec, '{"class":"TPV","mode":2,"time":"2024-03-23T12:00:00.0005Z",'
               '"lat":40.05132145,"lon":-0.00000025,"altMSL":0.125,"speed":0.015,"track":0.005}')
    [fix] = dec.flush()
    assert isinstance(fix, GpsFix)
    assert (fix.lat_e7, fix.lon_e7, fix.alt_cm, fix.speed_cmps, fix.course_cdeg) == \
        (400_513_214, -2, 12, 2, 0)  # 12.5 -> 12, 1.5 -> 2, 0.5 -> 0
    assert fix.t_ms == calendar.timegm((2024, 3, 23, 12, 0, 0)) * 1000  # 0.5 ms -> 0
    assert fix.fix_mode == 2
    [fix] = _feed(dec, '{"class":"TPV","mode":3,"time":"2024-03-23T12:00:01Z",'
                       '"lat":34.38379935,"lon":0,"track":360}')  # learned: no SKY/GST to wait for
    assert isinstance(fix, GpsFix) and fix.lat_e7 == 343_837_994 and fix.course_cdeg == 0


def test_no_fix_reports_and_gpsd_errors() -> None:
    dec = GpsdDecoder()
    out = _feed(dec, {"class": "TPV", "mode": 1, "time": "2024-03-23T12:00:00.000Z"},
                {"class": "TPV", "mode": 1, "time": "2024-03-23T12:00:00.000Z"},  # again
                {"class": "TPV", "mode": 0},
                {"class": "ERROR", "message": "Unrecognized request '?FOO'"},
                {"class": "TPV", "mode": 3, "lat": 1, "lon": 2},  # a fix without a time
                {"class": "PPS", "real_sec": 1})
    assert out == [NoFix(1_711_195_200_000), NoFix(None)]
    assert dec.last_error == "Unrecognized request '?FOO'"
    assert (dec.counts["repeat_epoch"], dec.counts["gpsd_error"], dec.counts["no_time"],
            dec.counts["other_class"]) == (1, 1, 1, 1)


def _tpv(sec: int, **extra: Any) -> dict[str, Any]:
    return {"class": "TPV", "device": "/dev/ttyACM0", "mode": 3, "lat": 10, "lon": 20,
            "time": f"2024-03-23T12:00:{sec:02d}.000Z", **extra}


def _sky(used: int) -> dict[str, Any]:
    return {"class": "SKY", "device": "/dev/ttyACM0", "uSat": used, "hdop": 0.9}


def _gst(sec: int, lat: float = 1.0) -> dict[str, Any]:
    return {"class": "GST", "device": "/dev/ttyACM0", "time": f"2024-03-23T12:00:{sec:02d}Z",
            "lat": lat, "lon": 1.0, "alt": 2.0}


def test_once_learned_an_epoch_goes_out_with_its_last_report_not_the_next_tpv() -> None:
    dec = GpsdDecoder()
    assert _feed(dec, _tpv(0), _sky(9), _gst(0)) == []  # learning
    [first] = _feed(dec, _tpv(1))
    assert (first.t_ms % 60_000, first.sats) == (0, 9)  # type: ignore[union-attr]
    assert _feed(dec, _sky(8)) == []
    [second] = _feed(dec, _gst(1))  # complete: out now, no wait for the TPV of 12:00:02
    assert isinstance(second, GpsFix) and (second.sats, second.err_lat_cm) == (8, 100)


def test_cumulative_tpvs_merge_and_repeats_after_emission_are_dropped() -> None:
    dec = GpsdDecoder()
    _feed(dec, _tpv(0, mode=2, speed=1), _tpv(0, altMSL=5))  # gpsd refining one epoch
    fix, _ = _feed(dec, _tpv(1))  # closes epoch 0; epoch 1 goes at once (no SKY/GST seen)
    assert isinstance(fix, GpsFix) and (fix.fix_mode, fix.alt_cm, fix.speed_cmps) == (3, 500, 100)
    assert _feed(dec, _tpv(1, altMSL=7)) == [] and dec.counts["repeat_epoch"] == 1


def test_a_report_after_its_epoch_serves_the_next_epoch_only() -> None:
    dec = GpsdDecoder()
    for sec in range(3):  # learn: gpsd sends a GST after every TPV
        _feed(dec, _tpv(sec), _gst(sec))
    [three] = _feed(dec, _tpv(3), _gst(3))  # closed at its GST
    assert three.sats is None  # type: ignore[union-attr]  # no SKY: unknown
    # a SKY after epoch 3 closed: one cycle old at most, so it serves epoch 4 ...
    _feed(dec, _sky(7))
    [with_late] = _feed(dec, _tpv(4), _gst(4))
    assert with_late.sats == 7  # type: ignore[union-attr]
    [without] = _feed(dec, _tpv(5), _gst(5))  # ... and not epoch 5
    assert without.sats is None  # type: ignore[union-attr]
    # a GST that comes ahead of its TPV waits for exactly that TPV
    _feed(dec, _gst(7, lat=3.0))
    [six] = _feed(dec, _tpv(6), _gst(6))
    [seven] = _feed(dec, _tpv(7))
    assert (six.err_lat_cm, seven.err_lat_cm) == (100, 300)  # type: ignore[union-attr]
    assert _feed(dec, _gst(5)) == [] and dec.counts["late_report"] == 1


def test_one_receiver_only_until_gpsd_says_it_is_gone() -> None:
    dec = GpsdDecoder()
    _feed(dec, _tpv(0), _tpv(1, device="/dev/ttyUSB9"))
    assert dec.counts["other_device"] == 1
    out = _feed(dec, {"class": "DEVICE", "path": "/dev/ttyACM0", "activated": 0},
                _tpv(2, device="/dev/ttyUSB9"))
    assert [f.t_ms % 60_000 for f in out] == [0, 2000]  # type: ignore[operator]
    pinned = GpsdDecoder(device="/dev/ttyUSB9")
    assert _feed(pinned, _tpv(0)) == [] and pinned.counts["other_device"] == 1


def test_bad_optional_fields_lose_the_field_and_bad_required_ones_the_report() -> None:
    dec = GpsdDecoder()
    _feed(dec, _tpv(0, speed=-3, track="north", altMSL=True, status=[1]),
          {"class": "SKY", "uSat": 2.5, "hdop": 99.99, "pdop": -1},
          _tpv(1, lat=91), _tpv(2, mode=2.0), _tpv(3, time="2024-02-30T00:00:00Z"),
          '{"class":"TPV","mode":3,"time":"2024-03-23T12:00:04Z","lat":NaN,"lon":0}',
          '{"class":"TPV","mode":3,"time":"2024-03-23T12:00:04Z","lat":1' + "0" * 5000 + "}")
    [fix] = dec.flush()
    assert isinstance(fix, GpsFix)
    assert (fix.speed_cmps, fix.course_cdeg, fix.alt_cm, fix.fix_quality) == (
        None, None, None, 1)  # lost with their bad values: unknown, not 0
    # no satellite count (uSat 2.5, no list) is unknown; 99.99 is "no DOP", kept as failing
    assert (fix.sats, fix.hdop_x10, fix.pdop_x10) == (None, 999, None)
    assert dec.counts["bad_field"] == 4 and dec.counts["unknown_status"] == 1
    assert (dec.counts["bad_position"], dec.counts["bad_mode"], dec.counts["bad_time"],
            dec.counts["bad_json"]) == (1, 1, 1, 2)


# ------------------------------------------------------------------- fuzzing


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)
_TIMES = st.sampled_from(["2024-03-23T12:00:00.000Z", "2024-03-23T12:00:01Z",
                          "2024-03-23T12:00:01.5Z", "1970-01-01T00:00:00Z"])
_FIELDS = {  # each a plausible value or any JSON value at all
    "status": st.integers(-2, 12) | _JSON, "device": st.sampled_from(["/a", "/b"]) | _JSON,
    "altMSL": st.floats(-1e6, 1e6) | _JSON, "alt": st.integers() | _JSON,
    "speed": st.floats(-1, 1e5) | _JSON, "track": st.floats(-1, 400) | _JSON,
    "uSat": st.integers(-1, 2000) | _JSON, "hdop": st.floats(0, 200) | _JSON,
    "pdop": st.floats(-1, 1e300) | _JSON, "vdop": st.floats(0, 1e9) | _JSON,
    "satellites": st.lists(st.fixed_dictionaries({"used": st.booleans() | _JSON})) | _JSON,
    "activated": st.sampled_from([0, "2024"]) | _JSON, "path": st.sampled_from(["/a"]) | _JSON,
    "message": _JSON, "time": _TIMES | _JSON, "mode": st.sampled_from([0, 1, 2, 3]) | _JSON,
    "lat": st.floats(-91, 91) | _JSON, "lon": st.floats(-181, 181) | _JSON}
_FIX = st.fixed_dictionaries(  # a fix gets through, so its fuzzed fields reach the record
    {"class": st.just("TPV"), "mode": st.sampled_from([2, 3]), "time": _TIMES,
     "lat": st.floats(-90, 90), "lon": st.floats(-180, 180)},
    optional={k: v for k, v in _FIELDS.items() if k not in ("mode", "time", "lat", "lon")})
_SIGMA = st.floats(0, 1e5)  # GST standard deviations, metres
_EXTRA = st.fixed_dictionaries(
    {"class": st.just("SKY")},
    optional={k: _FIELDS[k] for k in ("device", "time", "uSat", "hdop", "pdop", "vdop",
                                       "satellites")},
) | st.fixed_dictionaries(
    {"class": st.just("GST"), "lat": _SIGMA, "lon": _SIGMA},
    optional={"alt": _SIGMA | _JSON, "time": _TIMES, "device": _FIELDS["device"]})
_ANY = st.fixed_dictionaries(
    {"class": st.sampled_from(["TPV", "SKY", "GST", "DEVICE", "ERROR", "VERSION"]) | _JSON},
    optional=_FIELDS)
_REPORT = _FIX | _EXTRA | _ANY


def _sane(out: list[GpsFix | NoFix]) -> None:
    for obs in out:
        if isinstance(obs, NoFix):
            assert obs.t_ms is None or type(obs.t_ms) is int
            continue
        assert type(obs.t_ms) is int
        body = obs.body()
        assert all(type(v) is int for v in body.values())  # signable: no Decimal, no bool
        assert abs(body["lat_e7"]) <= 900_000_000 and abs(body["lon_e7"]) <= 1_800_000_000
        assert 0 <= body.get("course_cdeg", 0) < 36_000 and 0 <= body.get("hdop_x10", 0) <= 999


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_fuzz_arbitrary_bytes_never_raise(lines: list[bytes]) -> None:
    dec = GpsdDecoder()
    for line in lines:
        _sane(dec.feed(line))
    _sane(dec.flush())
    assert dec.counts["internal_error"] == 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_REPORT, max_size=25))
def test_fuzz_arbitrary_json_reports_never_raise_and_give_signable_fixes(
        reports: list[dict[str, Any]]) -> None:
    dec = GpsdDecoder()
    for report in reports:
        _sane(dec.feed(json.dumps(report).encode()))
    _sane(dec.flush())
    assert dec.counts["internal_error"] == 0
