"""`sealtrail demo` on the command line; the demo itself (and its imports) load when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from sealtrail.demo import run_demo_command

    return run_demo_command(args)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo", help="run a simulated truck through the real agent and verify its alerts",
        description=_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--workdir", type=Path, default=None,
                      help="keep the key, journal and logs here (default: a temporary directory, "
                           "removed at the end)")
    demo.add_argument("--speed-mps", type=float, default=25.0,
                      help="truck speed in m/s (default 25: the drive takes about 75 s)")
    demo.add_argument("--rate-hz", type=float, default=10.0,
                      help="GPS fixes per second (default 10)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log the agent's internals")
    demo.set_defaults(func=_run)




def _description() -> str:
    return ("The whole product on one machine in about a minute and a half. Customs make a "
            "signing key and sign a transit plan; a simulated truck and its two container "
            "e-seals (firmware_sim) talk to the real agent over pseudo-terminals; the agent "
            "signs and journals every reading, evaluates the plan, raises alerts when the "
            "truck leaves its corridor, and anchors Merkle batches on an in-process EVM chain. "
            "Then each alert is verified the way customs would: signature with the key "
            "registered on chain, chain link, inclusion proof, and the root stored by the "
            "contract.")
