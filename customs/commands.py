"""The handlers of `sealtrail customs ...` (their parsers are in ``customs.cli``).

``watch`` is the long-running receiver (a systemd service at the customs office), ``alerts``
lists what it stored, ``recheck`` re-verifies quarantined messages once their trust problem is
fixed, ``report`` makes the offline trip report of one transit plan.

Exit codes: 0 ok; 2 bad input (a file, an option); 3 the ledger node cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from customs.receive import Outcome, Receiver
from customs.report import build_report, degrees, utc
from customs.store import AlertRow, Part, PlanEnvelope, Quota, Store, open_store
from customs.trust import LedgerTrust, Trust, TrustFile
from customs.watch import Watcher
from customs.webhook import WebhookForwarder, alert_payload
from geofences import TransitPlan
from ledger_client.keys import load_key
from sealtrail.errors import SealTrailError, Unreachable, UsageError
from sealtrail.mqtt import MqttSettings

Handler = Callable[[argparse.Namespace], int]


def guarded(name: str, handler: Handler) -> Handler:
    """Errors are SealTrailErrors (one line and an exit code, printed by the `sealtrail`
    command's last-resort handler); a bad value met in an option is a UsageError."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ValueError as exc:
            if isinstance(exc, SealTrailError):
                raise
            raise UsageError(str(exc)) from None
    return run


def read_secret(path: Path, what: str) -> str:
    """First line of a secret file; refused when group or others can read it (like ssh)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{what} {path}: permissions {stat.filemode(mode)} are too open; "
                         f"run `chmod 600 {path}`")
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise UsageError(f"{what} {path} is empty")
    return secret


def store_of(args: argparse.Namespace, *, create: bool) -> Store:
    """The store named by --db: an SQLite file path, or a postgresql:// URL."""
    default = Quota()
    quota = Quota(rows=getattr(args, "quarantine_rows", default.rows),
                  bytes=int(getattr(args, "quarantine_mb", default.bytes / 2**20) * 2**20))
    return open_store(args.db, quota=quota, create=create)


def make_trust(args: argparse.Namespace) -> Trust:
    if (args.trust is None) == (args.rpc is None):
        raise UsageError("give the trusted gateway keys: --trust FILE, or --rpc URL with "
                         "--contract ADDR (the ledger's gateway registry)")
    if args.trust is not None:
        return TrustFile(args.trust)
    if not args.contract:
        raise UsageError("--rpc needs --contract ADDR (or $SEALTRAIL_CONTRACT)")
    from ledger_client import chain
    from ledger_client.errors import ChainError
    try:
        w3 = chain.connect(args.rpc, poa=args.poa, chain_id=args.chain_id)
        registry = chain.AnchorRegistry(w3, args.contract)
        registry.check_deployed()
    except ChainError as exc:
        raise UsageError(f"ledger: {exc}") from None
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise Unreachable(f"cannot reach the ledger at {args.rpc}: {exc}") from None
    return LedgerTrust(registry, ttl_s=args.trust_ttl)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.plain:
        return None
    try:
        context = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
        if args.cert:
            context.load_cert_chain(str(args.cert), str(args.key) if args.key else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"TLS files: {exc}") from None
    return context


def alert_line(row: AlertRow) -> str:
    plan = f" plan={row.plan_id}" if row.plan_id else ""
    where = "no fix" if row.lat_e7 is None else f"at {degrees(row.lat_e7, row.lon_e7)}"
    return (f"ALERT {utc(row.t_ms)} {row.severity.upper():8} {row.type} gw={row.gw} "
            f"seq={row.seq}{plan} {where} id={row.alert_id} [verified]"
            + ("" if row.state == "open" else f" {row.state}"))


def show(outcome: Outcome, as_json: bool) -> None:
    """Live display: verified alerts on stdout (one line each), gateway state changes too."""
    if outcome.kind == "alert" and outcome.alert is not None:
        line = json.dumps(alert_payload(outcome.alert)) if as_json else alert_line(outcome.alert)
    elif outcome.kind == "status" and outcome.state != outcome.previous and not as_json:
        line = f"GATEWAY {outcome.gw} {outcome.state}"
    else:
        return
    print(line, flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trust = make_trust(args)
    password = read_secret(args.password_file, "--password-file") if args.password_file else None
    token = (read_secret(args.webhook_token_file, "--webhook-token-file")
             if args.webhook_token_file else None)
    settings = MqttSettings(args.broker, args.port, client_id=args.client_id,
                            username=args.username, password=password, tls=tls_context(args),
                            backoff_s=(args.backoff_min, args.backoff_max))
    store = store_of(args, create=True)
    receiver = Receiver(store, trust, forward=args.webhook is not None)
    webhook = WebhookForwarder(store, args.webhook, token=token) if args.webhook else None
    service_key = load_key(args.service_key) if args.service_key else None
    watcher = Watcher(settings, receiver, on_outcome=lambda o: show(o, args.json),
                      webhook=webhook, recheck_s=args.recheck_s, group=args.group,
                      service_key=service_key)
    logging.getLogger(__name__).info("trusting %s; database %s", trust.describe(), args.db)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await watcher.run(stop)

    try:
        asyncio.run(main())
    finally:
        store.close()
        c = receiver.counts
        quarantined = {k.removeprefix("quarantined_"): v for k, v in sorted(c.items())
                       if k.startswith("quarantined_")}
        print(f"stopped: {c['alerts']} alerts, {c['duplicates']} duplicates dropped, "
              f"{c['quarantined']} quarantined {quarantined or ''}, {c['overflowed']} over "
              f"quota, {c['readings']} readings, {watcher.connections} connections, "
              f"{watcher.acks_sent} acknowledgements", file=sys.stderr)
        if webhook is not None:
            print(f"webhook: {webhook.sent} sent, {webhook.rejected} rejected, "
                  f"{webhook.failures} failed attempts", file=sys.stderr)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    store = store_of(args, create=False)
    try:
        if args.quarantine:
            for q in store.quarantined(plan_id=args.plan):
                doc = {"id": q.id, "received_ms": q.received_ms, "topic": q.topic,
                       "reason": q.reason, "detail": q.detail, "gw": q.gw, "seq": q.seq}
                print(json.dumps(doc) if args.json else
                      f"QUARANTINED {utc(q.received_ms)} {q.topic} {q.reason}: {q.detail}")
            return 0
        for row in store.alerts(plan_id=args.plan, gw=args.gateway):
            print(json.dumps(alert_payload(row)) if args.json else alert_line(row))
        if not args.json:
            print(f"summary: {json.dumps(store.counts(), sort_keys=True)}", file=sys.stderr)
    finally:
        store.close()
    return 0


def cmd_recheck(args: argparse.Namespace) -> int:
    trust = make_trust(args)
    store = store_of(args, create=False)
    try:
        receiver = Receiver(store, trust, forward=False)
        outcomes = receiver.recheck()
        for outcome in outcomes:
            if outcome.alert is not None:
                print(alert_line(outcome.alert))
        left = store.counts()["quarantine"]
        print(f"released {len(outcomes)} message(s); still quarantined: {left}",
              file=sys.stderr)
    finally:
        store.close()
    return 0


def load_plan(args: argparse.Namespace, store: Store) -> tuple[TransitPlan | None, str | None]:
    """The verified TransitPlan for --plan, from --plan-file or the envelope the receiver kept."""
    if args.no_plan:
        return None, "(--no-plan)"
    import geofences

    if args.plan_file is not None:
        try:
            envelope = args.plan_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"--plan-file {args.plan_file}: {exc.strerror}") from None
        source = str(args.plan_file)
    else:
        stored = store.plan_envelope(args.plan)
        if stored is None:
            raise UsageError(f"plan {args.plan!r}: no --plan-file given and the receiver has "
                             "not seen it on MQTT; pass --plan-file SIGNED.json (or --no-plan "
                             "for the track and alerts only)")
        envelope, source = stored, f"the envelope received on MQTT for {args.plan}"
    if args.customs_keys is None:
        raise UsageError("--customs-keys FILE is needed to verify the plan's signature")
    keys = geofences.load_trusted_keys(args.customs_keys)
    try:
        plan = geofences.open_envelope(envelope, keys, source=source)
    except geofences.SignatureError as exc:  # for the report, an untrusted plan is bad input
        raise UsageError(str(exc)) from None
    if not isinstance(plan, geofences.TransitPlan):
        raise UsageError(f"{source} is a fence bundle, not a transit plan")
    if plan.plan_id != args.plan:
        raise UsageError(f"{source} holds plan {plan.plan_id!r}, not {args.plan!r}")
    if args.plan_file is not None:
        store.write([Part(plans=[PlanEnvelope(args.plan, envelope, source)])])
    return plan, f"Source: {source}."


def cmd_report(args: argparse.Namespace) -> int:
    store = store_of(args, create=False)
    try:
        plan, note = load_plan(args, store)
        page = build_report(store, args.plan, plan, gateways=args.gateway or (),
                            from_ms=args.from_ms, to_ms=args.to_ms, plan_note=note)
        alerts = len(store.alerts(plan_id=args.plan))
    finally:
        store.close()
    tmp = args.html.with_name(args.html.name + ".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, args.html)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsageError(f"--html {args.html}: {exc.strerror}") from None
    print(f"wrote {args.html}: plan {args.plan}, {alerts} alert(s); open it in any browser "
          "(works offline)")
    return 0
