"""firmware_sim.trace: the traces and geometry the rule scenarios are built from.

The traces must be what the simulated devices really send (the same bytes as GpsReceiver, seal
messages the agent authenticates), and the geometry helpers must put a truck where a scenario
says, measured independently by geofences' projection.
"""

from __future__ import annotations

import os
import threading

from edge_agent.sources.seal_codec import decode_sentence
from firmware_sim.gnss import Conditions, Window
from firmware_sim.gps import GpsReceiver
from firmware_sim.motion import Motion, Stop
from firmware_sim.route import PositionNoise, Route, haversine_m
from firmware_sim.trace import (
    drop_window,
    gps_trace,
    merge,
    offset_line,
    parked,
    point_along,
    seal_trace,
    sub_line,
)
from geofences import corridor_from_degrees
from tests.helpers.rules_rig import CORRIDOR, T0, e7, seal, seal_key

CENTRE = corridor_from_degrees("c", 60, CORRIDOR)


def _distance(point: tuple[float, float]) -> float:
    return CENTRE.distance_m(*e7(point))


def test_gps_trace_is_byte_for_byte_what_the_receiver_writes() -> None:
    route = Route(CORRIDOR, 15.0)
    motion = Motion(route, stops=[Stop(400, 5)])
    conditions = Conditions(dropouts=(Window(10, 4),))
    trace = gps_trace(motion, t0_ms=T0, rate_hz=10.0, noise=PositionNoise(3.0, seed=2),
                      conditions=conditions, seed=2)
    read_fd, write_fd = os.pipe()
    receiver = GpsReceiver(route, write_fd, 10.0, realtime=False, t0_ms=T0, motion=motion,
                           noise=PositionNoise(3.0, seed=2), conditions=conditions, seed=2)
    writer = threading.Thread(target=lambda: (receiver.run(), os.close(write_fd)))
    writer.start()
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    writer.join()
    os.close(read_fd)
    assert b"".join(chunks) == b"".join(item.data for item in trace)
    assert [i.t_ms for i in trace[:3]] == [T0, T0 + 100, T0 + 200]
    assert trace[-1].t_ms == T0 + round(motion.duration_s * 10) * 100


def test_offset_lines_and_points_are_where_they_say() -> None:
    for offset in (55.0, -30.0):
        line = Route(offset_line(CORRIDOR, offset), 1.0)
        for d in range(0, int(line.length_m), 25):
            p = line.point_at_distance(d, 1.0)
            assert abs(_distance((p.lon, p.lat)) - abs(offset)) < 0.5, (offset, d)
    for along, offset in ((100, 0), (700, -50), (600, 250)):
        p = point_along(CORRIDOR, along, offset)
        assert abs(_distance(p) - abs(offset)) < 0.5
        assert abs(CENTRE.along_m(*e7(p)) - along) < 2  # sphere vs ellipsoid, 250 m out
    part = sub_line(CORRIDOR, 250, 900)
    assert abs(Route(part, 1.0).length_m - 650) < 0.01


def test_parked_stands_still_and_seal_traces_count_like_firmware() -> None:
    at = point_along(CORRIDOR, 300)
    motion = parked(at, 60)
    assert all(motion.at(t).speed_mps == 0 and haversine_m(at, (motion.at(t).lon,
               motion.at(t).lat)) < 1e-6 for t in (0, 30, 59.9))
    s = seal("SEAL-A")
    trace = seal_trace(s, t0_ms=T0, duration_s=300, heartbeat_s=60, phase_s=10,
                       events=[(100.0, "O")], silent=[(150.0, 100.0)])
    msgs = [decode_sentence(i.lines()[0]) for i in trace]
    # heartbeats at 10, 70, 130, 190 (out of range: sent, not heard), 250; opened at 100
    assert [(m.ctr, m.state) for m in msgs] == [(1, "C"), (2, "C"), (3, "O"), (4, "O"),
                                                 (6, "O")]
    assert [i.t_ms - T0 for i in trace] == [10_000, 70_000, 100_000, 130_000, 250_000]
    assert all(m.expected_mac(seal_key("SEAL-A")) == m.mac for m in msgs)
    merged = merge(trace, gps_trace(motion, t0_ms=T0, duration_s=120))
    assert [i.t_ms for i in merged] == sorted(i.t_ms for i in merged)
    assert len(drop_window(merged, T0 + 60_000, T0 + 101_000)) == len(merged) - 2 - 41
