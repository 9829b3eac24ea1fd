"""The `sealtrail` command: one entry point for gateway installers, customs and test engineers.

Each side owns its subcommands (``edge_agent`` the gateway's, ``customs`` the customs office's,
``ledger_client`` the ledger's, ``firmware_sim`` the simulator's); this module only knows their
names, one line of help each, and where they live. A command's module is imported only when that
command runs, so ``sealtrail --help`` costs no web3, EVM or map code, and a gateway that never
runs the console never imports it. Modules named here keep their own top-level imports light
for the same reason (``sealtrail X --help`` loads X's module, not X's work).

Errors: every failure a user can act on is a ``sealtrail.errors.SealTrailError``; it is printed
as one line and its ``exit_code`` returned. Anything else is a bug: one line that says so, exit
70, and the traceback only with ``--debug`` (or ``SEALTRAIL_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NamedTuple

from sealtrail.errors import EXIT_FAILED, EXIT_INTERNAL, SealTrailError

EXTRAS = {"psycopg": "customs", "psycopg_pool": "customs", "starlette": "customs",
          "uvicorn": "customs", "argon2": "customs", "web3": "customs", "eth_account": "customs",
          "eth_tester": "demo"}
"""Modules of optional dependency groups (pyproject.toml): a gateway install has none of them,
so a command that needs one says which extra to install instead of failing on an import."""


class Command(NamedTuple):
    summary: str
    mount: str  # "module:function" that adds the command's parser(s) to the subparsers


COMMANDS: dict[str, Command] = {
    "demo": Command("run a simulated truck through the real agent and a customs office",
                    "sealtrail.demo_cli:add_parser"),
    "agent": Command("run the gateway agent from gateway.toml, or check that file",
                     "edge_agent.agent_cli:add_parser"),
    "keys": Command("make or show an Ed25519 signing key (gateway or customs)",
                    "edge_agent.keys_cli:add_parser"),
    "journal": Command("audit a gateway journal file offline (signatures, links, batch roots)",
                       "edge_agent.journal_cli:add_parser"),
    "plan": Command("sign, verify and show transit plans and fence bundles (customs)",
                    "edge_agent.plan_cli:add_parser"),
    "evidence": Command("export records with their proofs from a journal, for customs",
                        "edge_agent.ledger_cli:add_parsers"),
    "ledger": Command("the anchor registry on the EVM ledger (customs administration)",
                      "edge_agent.ledger_cli:add_parsers"),
    "verify": Command("verify records against the ledger (evidence file, or record + proof)",
                      "edge_agent.ledger_cli:add_parsers"),
    "customs": Command("the customs office: receive, verify, store and report gateway alerts",
                       "customs.cli:add_parser"),
    "sim": Command("simulated sensor firmware for tests and demos",
                   "firmware_sim.cli:add_parser"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The command word in ``argv`` (the first argument not starting with '-')."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser for the command named in ``argv``; the others are one-line stubs."""
    parser = argparse.ArgumentParser(
        prog="sealtrail",
        description="SealTrail: signed, hash-chained, ledger-anchored e-seal and GPS readings "
                    "for customs transit control. `sealtrail COMMAND --help` explains each.",
        epilog="Exit codes: 0 ok, 1 refused or failed, 2 bad input, 3 a service is unreachable, "
               "10-19 a record did not verify, 20-30 a credential did not verify, 70 internal "
               "error (re-run with --debug for the traceback).")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also SEALTRAIL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen(argv)
    if chosen is not None:
        module, function = COMMANDS[chosen].mount.split(":")
        getattr(importlib.import_module(module), function)(sub)
    for name, command in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=command.summary, add_help=False)
    return parser


def _where(argv: Sequence[str], args: argparse.Namespace | None) -> str:
    """'sealtrail plan verify': the command and, once parsed, its action (``<command>_command``
    by the convention every command's subparsers follow), so the line says which one failed."""
    command = _chosen(argv)
    action = getattr(args, f"{command}_command", None) if command else None
    return " ".join(word for word in ("sealtrail", command, action) if word)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SEALTRAIL_DEBUG") == "1"
    args = None
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args))
    except SealTrailError as exc:
        print(f"{_where(argv, args)}: {exc}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last resort: a bug, not a user error
        if isinstance(exc, ModuleNotFoundError) and (extra := EXTRAS.get(
                (exc.name or "").partition(".")[0])) is not None:
            print(f"{_where(argv, args)}: needs {exc.name}, which this installation lacks: "
                  f"install SealTrail with its '{extra}' extra (pip install "
                  f"'sealtrail[{extra}]')", file=sys.stderr)
            return EXIT_FAILED
        if debug:
            traceback.print_exc()
        print(f"{_where(argv, args)}: internal error: {type(exc).__name__}: {exc} "
              "(re-run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
