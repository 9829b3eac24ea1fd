"""The `sealtrail` command's own behaviour: what a user sees when a command cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKED = """
import sys
sys.modules["argon2"] = None  # as on a gateway, installed without the customs extra
from sealtrail.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_command_whose_extra_is_not_installed_says_which_extra_in_one_line(
        tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, "customs", "user", "add", "ana", "--role", "officer",
         "--password-file", str(password), "--db", str(tmp_path / "customs.db")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("sealtrail customs user: needs argon2")
    assert "pip install 'sealtrail[customs]'" in lines[0]


def test_any_other_missing_module_is_a_bug_and_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED.replace('"argon2"', '"cryptography"'), "keys", "show",
         "--key", "/nonexistent.key"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 70, done.stderr
    assert "internal error: ModuleNotFoundError" in done.stderr
