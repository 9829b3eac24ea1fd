"""`sealtrail customs ...`: the customs office's side of the alert stream.

``watch`` is the long-running receiver (a systemd service at the customs office), ``alerts``
lists what it stored, ``recheck`` re-verifies quarantined messages once their trust problem is
fixed, ``report`` makes the offline trip report of one transit plan.

Only the parsers live here; each handler is imported from ``customs.commands`` when it runs, so
``sealtrail customs --help`` does not load web3, the map code or the MQTT client.

Exit codes: 0 ok; 2 bad input (a file, an option); 3 the ledger node cannot be reached.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from pathlib import Path

DEFAULT_CLIENT_ID = "sealtrail-customs"
Handler = Callable[[argparse.Namespace], int]


def guarded(name: str, handler: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        commands = importlib.import_module("customs.commands")
        return int(commands.guarded(name, getattr(commands, handler))(args))
    return run


# --- parsers -----------------------------------------------------------------------------------

def _store_options(p: argparse.ArgumentParser, *, create: bool) -> None:
    p.add_argument("--db", required=True, metavar="FILE|URL",
                   help="the customs store: an SQLite file" + (" (created if missing)" if create
                                                               else "") +
                        ", or a postgresql://user@host/db URL")
    if create:
        p.add_argument("--quarantine-rows", type=int, default=1000, metavar="N",
                       help="quarantined messages kept per gateway (default 1000); past this "
                            "or --quarantine-mb they are counted and summarised, not kept")
        p.add_argument("--quarantine-mb", type=float, default=8.0, metavar="MB",
                       help="quarantined bytes kept per gateway (default 8)")


def _trust_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trusted gateway keys (one of)")
    g.add_argument("--trust", type=Path, metavar="FILE",
                   help='trust file: {"gateways": {"<gateway id>": "<public key hex>"}}; '
                        "re-read when it changes")
    g.add_argument("--rpc", metavar="URL", help="ledger JSON-RPC endpoint: keys and revocations "
                                                "from the anchor registry")
    g.add_argument("--contract", metavar="ADDR", default=os.environ.get("SEALTRAIL_CONTRACT"),
                   help="anchor registry address (default $SEALTRAIL_CONTRACT)")
    g.add_argument("--chain-id", type=int, metavar="N", help="refuse a node on another chain")
    g.add_argument("--poa", action=argparse.BooleanOptionalAction, default=None,
                   help="force the POA extra-data middleware (default: detected)")
    g.add_argument("--trust-ttl", type=float, default=60.0, metavar="S",
                   help="seconds a ledger answer is reused; a revocation takes effect within "
                        "this (default 60)")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    customs = subparsers.add_parser(
        "customs", help="receive, verify and report gateway alerts (customs office side)",
        description="The customs office's side: a receiver that verifies every alert's gateway "
                    "signature before showing it, and offline trip reports.")
    sub = customs.add_subparsers(dest="customs_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "watch", help="receive alerts from the broker, verify, store, show, forward",
        description="Subscribe to sealtrail/v1/+/alerts, +/readings, +/status and +/plans "
                    "(QoS 1, persistent session: what gateways publish while this receiver is "
                    "down arrives when it is back). Each alert's signature is checked with the "
                    "gateway key from --trust or the ledger registry (--rpc/--contract); "
                    "verified alerts are stored in --db, printed one per line on stdout and "
                    "POSTed to --webhook; duplicates (same gateway and seq or alert_id) are "
                    "dropped and counted. "
                    "Anything that does not verify is quarantined in --db with its reason "
                    "(logged on stderr), never shown as an alert. Stop with Ctrl-C or SIGTERM.")
    g = p.add_argument_group("broker")
    g.add_argument("--broker", required=True, metavar="HOST", help="MQTT broker host")
    g.add_argument("--port", type=int, default=8883, help="broker port (default 8883, TLS)")
    g.add_argument("--ca", type=Path, metavar="FILE",
                   help="CA certificate of the broker (default: the system's CAs)")
    g.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (optional)")
    g.add_argument("--key", type=Path, metavar="FILE", help="client certificate's key")
    g.add_argument("--plain", action="store_true",
                   help="no TLS: only for a broker on loopback in a lab or test")
    g.add_argument("--username", default="customs", help="broker user (default customs)")
    g.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the broker password (mode 0600)")
    g.add_argument("--client-id", default=DEFAULT_CLIENT_ID,
                   help="MQTT client id; the broker keeps this id's queue while the receiver "
                        f"is down, so keep it stable (default {DEFAULT_CLIENT_ID})")
    g.add_argument("--backoff-min", type=float, default=0.5, metavar="S",
                   help="first reconnect delay (doubles up to --backoff-max)")
    g.add_argument("--backoff-max", type=float, default=30.0, metavar="S",
                   help="longest reconnect delay (default 30)")
    _trust_options(p)
    _store_options(p, create=True)
    p.add_argument("--group", metavar="NAME",
                   help="share the stream with the other receivers of this group (MQTT 5 "
                        "shared subscription $share/NAME/...): each message goes to one of them")
    p.add_argument("--service-key", type=Path, metavar="FILE",
                   help="the customs service's Ed25519 key (`sealtrail keys init`): signs the "
                        "acknowledgements that tell each gateway which alerts customs holds; "
                        "without it gateways keep re-sending their alerts")
    p.add_argument("--webhook", metavar="URL",
                   help="POST each verified alert as JSON here (retried until accepted)")
    p.add_argument("--webhook-token-file", type=Path, metavar="FILE",
                   help="bearer token for the webhook (mode 0600)")
    p.add_argument("--recheck-s", type=float, default=60.0, metavar="S",
                   help="re-verify quarantined 'unknown gateway' / 'trust unavailable' "
                        "messages this often (default 60)")
    p.add_argument("--json", action="store_true",
                   help="print verified alerts as JSON lines (the webhook document)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=guarded("watch", "cmd_watch"))

    p = sub.add_parser("alerts", help="list stored alerts (or quarantined messages)",
                       description="Print the verified alerts in --db, oldest first, one line "
                                   "each (or JSON lines); --quarantine lists what failed "
                                   "verification, with the reason.")
    _store_options(p, create=False)
    p.add_argument("--plan", metavar="ID", help="only this plan's")
    p.add_argument("--gateway", metavar="ID", help="only this gateway's")
    p.add_argument("--quarantine", action="store_true", help="list quarantined messages")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(func=guarded("alerts", "cmd_alerts"))

    p = sub.add_parser("recheck", help="re-verify quarantined messages after fixing trust",
                       description="Messages quarantined because their gateway was unknown or "
                                   "the ledger was unreachable are verified again with the "
                                   "current trust; those that now verify become alerts.")
    _store_options(p, create=False)
    _trust_options(p)
    p.set_defaults(func=guarded("recheck", "cmd_recheck"))

    p = sub.add_parser(
        "report", help="offline HTML trip report of one plan: map and alert table",
        description="Write one self-contained HTML file (no network, no tile server): the "
                    "plan's corridor and zones, the vehicle's verified track and a marker per "
                    "alert, drawn in the plan's local metric projection, plus a table of the "
                    "alerts with their verification status and of quarantined messages that "
                    "claimed the plan. The plan comes from --plan-file (a signed envelope, "
                    "checked against --customs-keys) or from the envelope the receiver saw on "
                    "MQTT.")
    _store_options(p, create=False)
    p.add_argument("--plan", required=True, metavar="ID", help="plan id")
    p.add_argument("--plan-file", type=Path, metavar="SIGNED.json",
                   help="the plan's signed envelope (`sealtrail plan sign`)")
    p.add_argument("--customs-keys", type=Path, metavar="FILE",
                   help="customs public keys (hex, one per line) the plan must be signed by")
    p.add_argument("--no-plan", action="store_true",
                   help="draw the track and alerts without the plan's corridor and zones")
    p.add_argument("--gateway", action="append", metavar="ID",
                   help="also draw this gateway's track (default: the gateways that raised "
                        "the plan's alerts); repeatable")
    p.add_argument("--from-ms", type=int, metavar="T", help="track from (Unix ms; default: "
                                                             "the plan's valid_from)")
    p.add_argument("--to-ms", type=int, metavar="T", help="track until (Unix ms; default: the "
                                                           "deadline or the last alert)")
    p.add_argument("--html", type=Path, required=True, metavar="OUT", help="file to write")
    p.set_defaults(func=guarded("report", "cmd_report"))

    from customs.credentials.cli import add_commands as add_credentials  # light: parsers only
    add_credentials(sub)
    add_service_parsers(sub)


def _service(name: str, handler: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module("customs.service_commands")
        commands = importlib.import_module("customs.commands")
        return int(commands.guarded(name, getattr(module, handler))(args))
    return run


def _store_or_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, metavar="customs.toml",
                   help="take the store (and keys, trust) from the service's config")
    p.add_argument("--db", metavar="FILE|URL", help="the customs store (overrides -c)")


def add_service_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """serve, import, user, audit: the monitoring centre's commands."""
    p = sub.add_parser(
        "serve", help="the receiver and the officers' web console, as one service",
        description="Run the customs service from customs.toml (deploy/customs.toml documents "
                    "every key): the MQTT receiver ([mqtt]; as `customs watch`), the web "
                    "console for officers ([console]), the live change feed, and the audit "
                    "chain's anchoring ([ledger] with [audit] evm_key). The file is checked "
                    "first; every problem is listed (exit 78). Stop with SIGTERM or Ctrl-C.")
    p.add_argument("-c", "--config", type=Path, required=True, metavar="customs.toml")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_service("serve", "cmd_serve"))

    p = sub.add_parser(
        "import", help="bring a gateway journal or an evidence file into the customs store",
        description="For gateways whose data arrives offline: every record of a gateway's "
                    "journal (its SQLite file) or of an evidence file (sealtrail-evidence/1) "
                    "is verified exactly like an MQTT message (trusted key, signature, "
                    "duplicates) and stored, or quarantined with its reason.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _store_or_config(p)
    p.add_argument("--trust", type=Path, metavar="FILE", help="trust file of gateway keys")
    p.add_argument("--public-key", action="append", metavar="GW=HEX",
                   help="trust this key for this gateway (repeatable)")
    p.set_defaults(func=_service("import", "cmd_import"))

    user = sub.add_parser("user", help="officer accounts of the console",
                          description="Officers log in to the console with these accounts.")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = usub.add_parser("add", help="add an officer (or --replace a password or role)",
                        description="Roles: auditor reads only; officer acknowledges, "
                                    "resolves and annotates alerts; supervisor also assigns "
                                    "alerts and records trip steps. The password is asked "
                                    "twice, or read from --password-file (mode 0600); "
                                    "stored as an argon2id hash.")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("officer", "supervisor", "auditor"))
    p.add_argument("--password-file", type=Path, metavar="FILE")
    p.add_argument("--replace", action="store_true", help="set a new password and role")
    _store_or_config(p)
    p.set_defaults(func=_service("user add", "cmd_user_add"))
    p = usub.add_parser("disable", help="disable an officer and end their sessions")
    p.add_argument("name")
    _store_or_config(p)
    p.set_defaults(func=_service("user disable", "cmd_user_disable"))

    audit = sub.add_parser("audit", help="the officers' audit chain",
                           description="The signed, hash-chained log of officer actions.")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    p = asub.add_parser("verify", help="check the audit chain offline",
                        description="Every entry's signature (customs service key), chain "
                                    "link, that the store's columns match the signed "
                                    "entries, and every batch root. Exit 0 intact, 1 broken, "
                                    "2 bad input.")
    _store_or_config(p)
    p.add_argument("--public-key", metavar="HEX", help="the customs service key (default: "
                                                       "the one -c names)")
    p.add_argument("--audit-id", metavar="ID", help="the chain's id (default: from -c, or "
                                                     "customs-audit)")
    p.set_defaults(func=_service("audit verify", "cmd_audit_verify"))
