"""`sealtrail sim gateways`: a fleet of simulated gateways publishing signed records to customs."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from pathlib import Path
from typing import Any

Sub = argparse._SubParsersAction  # type: ignore[type-arg]


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from firmware_sim.gateways import GatewayFleet, GatewayOptions, load_passwords
    from sealtrail.errors import UsageError

    if args.count < 1 or args.rate <= 0 or args.duration <= 0:
        raise UsageError("--count, --rate and --duration must be positive")
    if len(bytes.fromhex(args.seed)) < 16:
        raise UsageError("--seed: at least 16 bytes of hex")
    try:
        passwords = load_passwords(args.passwords) if args.passwords else {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"--passwords {args.passwords}: {exc}") from None
    tls = None
    if args.ca is not None:
        try:
            tls = ssl.create_default_context(cafile=str(args.ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca {args.ca}: {exc}") from None

    def progress(doc: dict[str, Any]) -> None:
        if not args.quiet and (doc["tick"] % max(1, round(args.rate * 5)) == 0
                               or doc["tick"] == doc["of"]):
            print(json.dumps({"progress": doc}), file=sys.stderr, flush=True)

    options = GatewayOptions(args.broker, args.port, args.count, bytes.fromhex(args.seed),
                             passwords, tls, args.rate, args.duration, args.prefix,
                             args.sent_log)
    summary = asyncio.run(GatewayFleet(options, progress).run())
    print(json.dumps(summary), flush=True)
    return 0


def add_parser(sim_sub: Sub) -> None:
    p = sim_sub.add_parser(
        "gateways", help="many gateways publishing signed alerts and readings to customs",
        description="Simulate COUNT gateways, each with its own MQTT connection and account "
                    "(user name = gateway id), each publishing, RATE times a second, one signed "
                    "alert on sealtrail/v1/<gw>/alerts and one readings message on .../readings "
                    "for DURATION seconds, as a real agent's customs sink would. Keys are "
                    "derived from --seed and the gateway id (firmware_sim.gateways.gateway_key), "
                    "so customs' trust can be computed without passing files. Prints progress "
                    "as JSON on stderr and a summary as one JSON line on stdout.")
    p.add_argument("--broker", default="127.0.0.1", metavar="HOST")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--ca", type=Path, metavar="FILE", help="broker CA (TLS); default: plain")
    p.add_argument("--passwords", type=Path, metavar="FILE",
                   help='JSON {"<gateway id>": "<password>"} (mode 0600)')
    p.add_argument("--count", type=int, default=100, help="gateways (default 100)")
    p.add_argument("--rate", type=float, default=1.0, metavar="HZ",
                   help="alerts (and readings messages) per second per gateway (default 1)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="default 10")
    p.add_argument("--seed", required=True, metavar="HEX", help="key seed (>= 16 bytes hex)")
    p.add_argument("--prefix", default="gw-sim", help="gateway id prefix (default gw-sim)")
    p.add_argument("--sent-log", type=Path, metavar="FILE",
                   help="SQLite file recording every record sent (gw, seq, kind, signed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)
