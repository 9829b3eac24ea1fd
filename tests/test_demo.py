"""`sealtrail demo` as a newcomer runs it, only faster: exit 0, the `verified` line, and a
customs store holding the trip with the one command that opens it in the console."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_command_ends_with_verified(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sealtrail.cli", "demo", "--workdir", str(tmp_path),
         "--speed-mps", "90", "--rate-hz", "20"],
        capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = out.rstrip().splitlines()
    assert "verified" in lines
    assert lines[-2].strip() == f"sealtrail customs serve -c {tmp_path / 'customs.toml'}"
    assert lines[-1].strip() == "then http://127.0.0.1:8080/trip?plan=plan-demo-0001"
    assert "ALERT CRITICAL routeDeviation" in out
    assert out.count("signature: ok") == out.count("[verify]") >= 2
    assert (tmp_path / "gateway.key").stat().st_mode & 0o777 == 0o600
    audit = subprocess.run([sys.executable, "-m", "sealtrail.cli", "journal", "verify",
                            str(tmp_path / "journal.db")], capture_output=True, text=True)
    assert audit.returncode == 0 and audit.stdout.startswith("ok:"), audit.stdout

    from customs.config import load_config
    from customs.store import open_store
    from customs.users import check_password

    assert load_config(tmp_path / "customs.toml").store.target == str(tmp_path / "customs.db")
    secret = tmp_path / "officer.password"
    assert secret.stat().st_mode & 0o777 == 0o600
    store = open_store(tmp_path / "customs.db", create=False)
    try:
        assert {a.type for a in store.alerts(plan_id="plan-demo-0001")} >= {
            "routeDeviation", "tripClosed"}
        assert store.plan_ids() == ["plan-demo-0001"] and store.counts()["quarantine"] == {}
        assert check_password(store, "officer", secret.read_text().strip()) == "supervisor"
    finally:
        store.close()
