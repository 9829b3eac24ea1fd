"""`sealtrail agent run|check -c gateway.toml`: the gateway daemon as systemd runs it.

`check` validates the file (every problem, each naming its key) and prints the effective
configuration, defaults filled in. `run` validates the same way before opening anything, then
runs the agent until SIGTERM or SIGINT, when it stops the sources, commits what they emitted,
lets rules and alert sinks catch up (bounded), and exits 0. Logs go to stderr, with syslog
priority prefixes when stderr is the systemd journal. With Type=notify it reports READY once
the journal is open and the metrics port is bound, and pings the watchdog from the event loop,
so a wedged loop is restarted by systemd.

Nothing but argparse is imported until a command runs (`sealtrail agent --help` stays fast),
and `run` imports only what the configuration uses (assemble.py).

Exit codes: 0 stopped cleanly, 78 configuration error (EX_CONFIG; the unit does not restart
on it: a restart cannot fix a config file), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.config import Config

DEFAULT_CONFIG = Path("/etc/sealtrail/gateway.toml")
EX_CONFIG = 78
log = logging.getLogger("sealtrail.agent")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = subparsers.add_parser(
        "agent", help="run the gateway agent from gateway.toml, or check that file",
        description="The gateway daemon: sources -> signed journal -> rules -> customs sinks "
                    "-> ledger anchoring, configured by one TOML file (see "
                    "deploy/gateway.toml).")
    sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the agent until SIGTERM/SIGINT",
                         description="Validate the configuration, then run the agent until "
                                     "SIGTERM or SIGINT. Exit 78 on a configuration error.")
    check = sub.add_parser("check", help="validate gateway.toml and print the effective config",
                           description="Check every key and every file the agent would open "
                                       "(keys, keystore, journal, signed plans), report all "
                                       "problems at once (exit 78), else print the effective "
                                       "configuration with defaults filled in.")
    for p in (run, check):
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                       help=f"configuration file (default {DEFAULT_CONFIG})")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"], help="default info")
    run.set_defaults(func=cmd_run)
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from edge_agent.config import ConfigError, load_config
    from sealtrail.tomlschema import dump
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"# {args.config}: valid; effective configuration (defaults filled in)")
    print("\n".join(dump(config)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.config import ConfigError, load_config
    setup_logging(args.log_level.upper())
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            log.error("%s", line)
        return EX_CONFIG
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        return asyncio.run(serve(config))
    except Exception:
        log.exception("the agent stopped on an error")
        return 1


async def serve(config: Config) -> int:
    from edge_agent.assemble import assemble  # what the configuration uses: only when running
    from edge_agent.config import parse_listen
    from edge_agent.metrics import MetricsServer

    assembly = assemble(config)
    # Everything imported and built so far lives as long as the process (the geofence stack
    # is thousands of objects): keep the collector from walking it again and again. (What is
    # loaded later is not frozen: with web3 loaded at the first batch, each reading cost ~40 %
    # more CPU in bench/agent_soak.py; the ledger client is now small.) Readings make
    # short-lived containers by the thousand a second, few of them cyclic: a larger first
    # generation lets the collector run far less often (about 10 % of the CPU per reading).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        await asyncio.to_thread(assembly.retention.prepare)
        watched = assembly.watched
        server = None
        if config.metrics.enabled:
            host, port = parse_listen(config.metrics.listen)
            server = MetricsServer(watched, host, port)
            try:
                await server.start()
            except OSError as exc:
                log.error("metrics.listen %s: cannot listen: %s", config.metrics.listen, exc)
                return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopper(stop, sig))
        agent = assembly.agent
        log.info("gateway %s: journal %s at seq %d; sources: %s; consumers: %s%s",
                 config.gateway.id, config.gateway.journal, agent.tail.head,
                 ", ".join(s.name for s in agent.sources) or "none",
                 ", ".join(c.name for c in agent.consumers) or "none",
                 f"; metrics on http://{config.metrics.listen}/metrics" if server else "")
        helpers = [asyncio.create_task(assembly.retention.run(config.gateway.prune_interval_s),
                                       name="retention")]
        helpers += _watchdog()
        watched.running = True
        sd_notify("READY=1\nSTATUS=running")
        try:
            await agent.run(stop)
        finally:
            watched.running = False
            sd_notify("STOPPING=1")
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if server is not None:
                await server.close()
        log.info("stopped at journal seq %d", agent.tail.head)
        return 0
    finally:
        assembly.close()


def _stopper(stop: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def handle() -> None:
        if stop.is_set():
            log.warning("%s again while stopping: still settling consumers", sig.name)
        else:
            log.info("%s: stopping", sig.name)
        stop.set()
    return handle


# --- systemd integration ----------------------------------------------------------------------

def sd_notify(message: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))


def _watchdog() -> list[asyncio.Task[None]]:
    """Ping systemd's watchdog from the event loop at half its interval (WatchdogSec=)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return []
    interval = int(usec) / 2e6

    async def ping() -> None:
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    return [asyncio.create_task(ping(), name="watchdog")]


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournaldFormatter(logging.Formatter):
    """`<priority>logger: message`: journald reads the prefix as the syslog priority and adds
    its own timestamp, so the agent does not print one."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
