"""`sealtrail demo` as a newcomer runs it, only faster: exit 0 and the `verified` line."""

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
    assert out.rstrip().splitlines()[-1] == "verified"
    assert "ALERT CRITICAL routeDeviation" in out
    assert out.count("signature: ok") == out.count("[verify]") >= 2
    assert (tmp_path / "gateway.key").stat().st_mode & 0o777 == 0o600
    audit = subprocess.run([sys.executable, "-m", "sealtrail.cli", "journal", "verify",
                            str(tmp_path / "journal.db")], capture_output=True, text=True)
    assert audit.returncode == 0 and audit.stdout.startswith("ok:"), audit.stdout
