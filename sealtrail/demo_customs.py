"""The demo's last step: the customs office takes the truck's journal into its store and has a
console ready to open on the trip.

The journal goes through `customs import` (customs.importer: every record verified against the
gateway key registered on the demo's ledger, exactly as if it had come over MQTT); an officer
account is made with a random password written to a 0600 file; a customs.toml for a
console-only service is written beside them. The demo prints the one command that serves it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from customs.importer import import_file
from customs.receive import Receiver
from customs.store import open_store
from customs.trust import LedgerTrust
from customs.users import add_user
from ledger_client.chain import AnchorRegistry

OFFICER = "officer"
PORT = 8080


def customs_office(workdir: Path, registry: AnchorRegistry, plan_id: str, *,
                   temporary: bool) -> list[str]:
    """Import the journal into workdir/customs.db; the lines to print."""
    store = open_store(workdir / "customs.db")
    try:
        report = import_file(workdir / "journal.db", Receiver(store, LedgerTrust(registry)))
        password = secrets.token_urlsafe(12)
        add_user(store, OFFICER, "supervisor", password, replace=True)
    finally:
        store.close()
    secret = workdir / "officer.password"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    config = workdir / "customs.toml"
    config.write_text(f"""# The demo customs office: console only (data from `customs import`).
[office]
audit_id = "customs-audit-demo"
service_key = "{workdir / 'customs.key'}"

[store]
target = "{workdir / 'customs.db'}"

[console]
listen = "127.0.0.1:{PORT}"
secure_cookie = false   # loopback only, no TLS: a demo
""")
    lines = [f"[customs] imported the journal: {report.summary()}",
             f"[customs] officer {OFFICER!r} (supervisor), password in {secret}",
             "[customs] open the trip in the console:",
             f"  sealtrail customs serve -c {config}",
             f"  then http://127.0.0.1:{PORT}/trip?plan={plan_id}"]
    if temporary:
        lines.append("  (this run's directory is removed when the demo ends: run `sealtrail "
                     "demo --workdir DIR` to keep the store and open it)")
    return lines
