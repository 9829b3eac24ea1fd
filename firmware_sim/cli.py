"""``sealtrail sim``: simulated sensor firmware; this module mounts the group and runs ``sim gps``.

The agent's CLI mounts this group with ``add_parser(subparsers)``; the module also runs on its
own (``python -m firmware_sim.cli sim gps ...``) because the simulator stands for independent
device firmware and must be usable without the agent installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from firmware_sim.cli_fleet import add_parsers
from firmware_sim.gnss import ClockSkew, Conditions, Jamming, Window
from firmware_sim.gps import GpsReceiver, epochs_per_pass
from firmware_sim.motion import Motion, Stop
from firmware_sim.nmea import SENTENCES
from firmware_sim.pty import PtyPair
from firmware_sim.route import PositionNoise, Route

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_ROUTE = SCENARIOS_DIR / "demo_truck_route.geojson"

_GPS_EPILOG = """\
output (choose one):
  --pty-link PATH   create a pseudo-terminal, symlink it at PATH and print PATH on stdout
  --device PATH     write to an existing serial device or pty slave ('-' = stdout)
  (neither)         create a pseudo-terminal and print its /dev/pts/N path on stdout

examples:
  sealtrail sim gps --pty-link /tmp/sealtrail-gps0            # real-time demo drive
  sealtrail sim gps --route my.geojson --speed-mps 15 --noise-m 2.5 --seed 7
  sealtrail sim gps --device /dev/ttyUSB1 --baud 9600          # feed a real gateway
  sealtrail sim gps --fast --device - | head                   # inspect the sentences

Each epoch is GGA, RMC, VTG, GSA, GST (talker GN, u-blox style; --sentences picks). In real time the
fix time is the UTC wall clock at emission; epochs written while nobody has the pty open are
dropped, like a receiver talking to an unconnected cable. --fast waits for a reader, then
writes as fast as it drains, with fix times t0, t0 + 1/rate, ...
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``sim`` command group (with ``gps`` under it) on a parent CLI."""
    sim = subparsers.add_parser(
        "sim",
        help="simulated sensor firmware for tests and demos",
        description="Simulated sensor firmware that drives a real agent through real ports.",
    )
    sim.set_defaults(func=lambda _args: _missing_subcommand(sim))
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="COMMAND")
    gps = sim_sub.add_parser(
        "gps",
        help="NMEA 0183 GPS receiver following a GeoJSON route",
        description=(
            "Simulate a GNSS receiver driving along a GeoJSON LineString (RFC 7946, lon/lat)\n"
            "at constant speed, emitting NMEA GGA+RMC on a pseudo-terminal or serial port."
        ),
        epilog=_GPS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gps.add_argument(
        "--route",
        type=Path,
        default=DEFAULT_ROUTE,
        metavar="FILE",
        help="GeoJSON Feature/FeatureCollection with exactly one LineString "
        "(default: the packaged demo truck route, scenarios/demo_truck_route.geojson)",
    )
    gps.add_argument(
        "--speed-mps",
        type=float,
        default=20.0,
        metavar="M_S",
        help="constant speed in m/s (default 20)",
    )
    gps.add_argument(
        "--rate-hz",
        type=float,
        default=10.0,
        metavar="HZ",
        help="fixes per second (default 10, max 1000)",
    )
    gps.add_argument(
        "--noise-m",
        type=float,
        metavar="METRES",
        default=0.0,
        help="Gaussian position noise, std dev in metres per axis (default 0: exact track)",
    )
    gps.add_argument(
        "--seed", type=int, default=None, metavar="N", help="noise seed, for reproducible runs"
    )
    out = gps.add_mutually_exclusive_group()
    out.add_argument(
        "--pty-link", type=Path, metavar="PATH", help="create a pty and symlink it at PATH"
    )
    out.add_argument(
        "--device", metavar="PATH", help="existing serial device or pty slave ('-' = stdout)"
    )
    gps.add_argument(
        "--baud",
        type=int,
        default=9600,
        help="line speed set on a real --device tty (default 9600; ignored by ptys)",
    )
    gps.add_argument(
        "--fast",
        action="store_true",
        help="no real-time pacing: write as fast as the reader drains, fix times from --t0-ms",
    )
    gps.add_argument(
        "--t0-ms",
        type=int,
        metavar="MS",
        default=None,
        help="with --fast: Unix ms UTC of the first fix (default: now, whole second)",
    )
    gps.add_argument(
        "--loop",
        type=int,
        default=1,
        metavar="N",
        help="passes over the route, each restarting at its start (0 = forever; default 1)",
    )
    gps.add_argument(
        "--wait-reader",
        action="store_true",
        help="real time: start driving only once a reader opens the pty (always on with --fast)",
    )
    gps.add_argument("--talker", default="GN", help="NMEA talker id: GN (default), GP, GL, GA, BD")
    gps.add_argument(
        "--linger",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="keep the pty open this long after the last epoch so the reader drains it (default 1)",
    )
    gps.add_argument(
        "--sentences",
        default=",".join(SENTENCES),
        metavar="LIST",
        help="sentences per epoch, comma-separated, sent in the order GGA,RMC,VTG,GSA,GST "
        "(default: all five)",
    )
    gps.add_argument(
        "--stop",
        action="append",
        default=[],
        type=_pair("AT_M:SECONDS", 2),
        metavar="AT_M:S",
        help="stand still S seconds once AT_M metres along the route (repeatable)",
    )
    gps.add_argument(
        "--dropout",
        action="append",
        default=[],
        type=_pair("START_S:SECONDS", 2),
        metavar="START:S",
        help="no fix for S seconds from START (a tunnel; repeatable)",
    )
    gps.add_argument(
        "--jamming",
        action="append",
        default=[],
        type=_pair("START_S:SECONDS[:RAMP_S]", 3),
        metavar="START:S[:RAMP]",
        help="jamming from START for S seconds: RAMP s of degradation (default 10), "
        "no fix, RAMP s of recovery (repeatable)",
    )
    gps.add_argument(
        "--clock-skew-ms",
        type=int,
        default=0,
        metavar="MS",
        help="the receiver's UTC is off by MS milliseconds (default 0)",
    )
    gps.set_defaults(func=run_sim_gps)
    add_parsers(sim_sub)
    from firmware_sim.cli_gateways import add_parser as add_gateways
    add_gateways(sim_sub)


def _pair(form: str, most: int) -> Callable[[str], tuple[float, ...]]:
    """An argparse type for ``a:b[:c]`` numbers, with a message showing the expected form."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            parts = tuple(float(x) for x in text.split(":"))
        except ValueError:
            parts = ()
        if not 2 <= len(parts) <= most:
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}")
        return parts

    parse.__name__ = form
    return parse


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _err(msg: str) -> None:
    print(f"sim gps: {msg}", file=sys.stderr, flush=True)


def _open_device(path: str, baud: int) -> int:
    """Open an existing device for writing; raw mode and ``baud`` if it is a terminal.

    ``O_NONBLOCK`` on open keeps a real UART from hanging on carrier detect.
    """
    if path == "-":
        return os.dup(sys.stdout.fileno())
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        if os.isatty(fd):
            tty.setraw(fd)
            speed = getattr(termios, f"B{baud}", None)
            if speed is None:
                raise ValueError(f"unsupported baud rate {baud}")
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Turn SIGTERM (systemd, test harnesses) into a clean stop that removes the symlink."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sim_gps(args: argparse.Namespace) -> int:
    """Run ``sim gps`` with parsed arguments; returns the process exit status."""
    try:
        route = Route.from_geojson_file(args.route, args.speed_mps)
        noise = PositionNoise(args.noise_m, args.seed) if args.noise_m > 0 else None
    except (OSError, ValueError) as exc:
        _err(f"cannot load route: {exc}")
        return 2
    try:
        motion = Motion(route, stops=[Stop(a, d) for a, d in args.stop])
        conditions = Conditions(
            dropouts=tuple(Window(a, d) for a, d in args.dropout),
            jamming=tuple(Jamming(Window(j[0], j[1]), *j[2:]) for j in args.jamming),
            skews=(ClockSkew(args.clock_skew_ms),) if args.clock_skew_ms else (),
        )
        sentences = tuple(s.strip().upper() for s in args.sentences.split(",") if s.strip())
        bad = [s for s in sentences if s not in SENTENCES]
        if bad or not sentences:
            raise ValueError(f"--sentences: unknown {bad}; choose from {','.join(SENTENCES)}")
    except ValueError as exc:
        _err(str(exc))
        return 2
    if args.t0_ms is not None and not args.fast:
        _err("--t0-ms only applies with --fast (real time uses the wall clock)")
        return 2
    stop = threading.Event()
    info = sys.stderr if args.device == "-" else sys.stdout
    try:
        with contextlib.ExitStack() as stack:
            if args.device is not None:
                fd = _open_device(args.device, args.baud)
                stack.callback(os.close, fd)
                pair = None
            else:
                pair = stack.enter_context(PtyPair(args.pty_link))
                fd = pair.master_fd
                print(pair.path, file=info, flush=True)
            receiver = GpsReceiver(
                route,
                fd,
                args.rate_hz,
                realtime=not args.fast,
                t0_ms=args.t0_ms,
                noise=noise,
                loop=args.loop,
                stop=stop,
                talker=args.talker,
                wait_reader=args.wait_reader,
                motion=motion,
                conditions=conditions,
                sentences=sentences,
                seed=args.seed,
            )
            _err(
                f"route {route.length_m:.0f} m, {motion.duration_s:.1f} s at "
                f"{args.speed_mps:g} m/s, {epochs_per_pass(motion, args.rate_hz)} epochs/pass"
            )
            with _stop_on_sigterm(stop):
                receiver.run()
                if pair is not None and not stop.is_set() and args.linger > 0:
                    stop.wait(args.linger)
    except BrokenPipeError:
        _err("reader closed the output; stopping")
        return 0
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except (OSError, ValueError) as exc:
        _err(str(exc))
        return 1
    _err(f"done: {receiver.epochs_written} epochs written, {receiver.epochs_dropped} dropped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m firmware_sim.cli sim gps ...``."""
    parser = argparse.ArgumentParser(prog="firmware_sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
