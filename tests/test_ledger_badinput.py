"""Files that are not what a command expects, and endpoints that do not answer: one line naming
the file or endpoint, the documented exit code, never a traceback or an "internal error".

No ledger node is needed: the input is refused before anything is asked of one (or the node is
a closed port). One case runs the real `sealtrail verify` in a subprocess on JSON nested
100,000 deep, which used to kill the process with SIGSEGV (exit 139).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from anvil_node import free_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.evidence import Evidence, EvidenceRecord
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.records import GENESIS_PREV, sign_record
from sealtrail.cli import main

CONTRACT = "0x" + "22" * 20
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "binary": tmp_path / "random.bin",
        "toml": tmp_path / "customs.toml",
        "deep": tmp_path / "deep.json",
        "other": tmp_path / "other.json",
        "list": tmp_path / "list.json",
        "missing": tmp_path / "no-such-file.json",
        "sqlite": tmp_path / "other.db",
    }
    out["binary"].write_bytes(bytes(range(256)) * 4)
    out["toml"].write_text('[ledger]\nrpc = "http://127.0.0.1:8545"\n')
    out["deep"].write_text("[" * 100_000)
    out["other"].write_text('{"format": "sealtrail-plan/1"}')
    out["list"].write_text("[1, 2, 3]")
    sqlite3.connect(out["sqlite"]).execute("CREATE TABLE t (x)").connection.close()
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(code: int, err: str, path: Path | str, expected: int = 2) -> bool:
    """One line naming `path`, the expected exit code, no traceback, no internal error."""
    lines = err.strip().splitlines()
    assert code == expected, err
    assert len(lines) == 1 and str(path) in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    return True


def _evidence(tmp_path: Path, **change: object) -> Path:
    """A well-formed one-record evidence file (its anchor need not exist: nothing is asked)."""
    key = Ed25519PrivateKey.generate()
    _, signed = sign_record({"v": 1, "gw": "gw-x", "seq": 1, "t_ms": 1, "kind": "gps",
                             "src": "gps0", "body": {}, "prev": GENESIS_PREV}, key)
    anchor = AnchorRef(31337, CONTRACT, 1, "0x" + "33" * 32, 5, "0x" + "44" * 32, 0)
    doc = json.loads(Evidence("gw-x", [EvidenceRecord(1, signed, make_proof(
        [signed], 1, 1, anchor, "anchored"), "anchored")], 31337, CONTRACT).to_json())
    for path, value in change.items():
        target = doc
        *parents, last = path.split("__")
        for name in parents:
            target = target[int(name)] if name.isdigit() else target[name]
        target[int(last) if last.isdigit() else last] = value
    out = tmp_path / "evidence.json"
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("name, words", [
    ("binary", "not UTF-8"),
    ("toml", "not JSON"),
    ("deep", "nested 100000 deep"),
    ("other", "not a sealtrail-evidence/1 document (format 'sealtrail-plan/1')"),
    ("list", "not a sealtrail-evidence/1 document"),
    ("missing", "No such file or directory"),
])
def test_verify_refuses_a_file_that_is_not_evidence(files: dict[str, Path], name: str,
                                                    words: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", str(files[name]), "--contract", CONTRACT, "--rpc",
                         f"http://127.0.0.1:{free_port()}")
    assert refused(code, err, files[name]) and words in err and out == ""


@pytest.mark.parametrize("change, words", [
    ({"records__0__proof__audit_path": "ab"}, "audit_path"),
    ({"records__0__proof__leaf_index": "0"}, "leaf_index"),
    ({"records__0__proof__anchor__block_hash": 7}, "anchor.block_hash"),
    ({"records__0__proof__anchor": [1]}, "anchor"),
    ({"records__0__proof": "a proof"}, "must be a JSON object"),
    ({"records__0__record": {"not": "a string"}}, "records[0]"),
    ({"records__0__seq": True}, "records[0]"),
    ({"records": {}}, "records must be a list"),
    ({"records": []}, "holds no records"),
    ({"gateway_id": 5}, "gateway_id"),
    ({"contract": "0x1234"}, "is not an EVM address"),
])
def test_verify_refuses_evidence_with_fields_of_the_wrong_type(
        tmp_path: Path, change: dict[str, object], words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _evidence(tmp_path, **change)
    code, _, err = run(capsys, "verify", str(path), "--contract", CONTRACT, "--rpc",
                       f"http://127.0.0.1:{free_port()}")
    assert refused(code, err, path) and words in err


def test_record_and_proof_files_that_are_not_those(files: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ev = json.loads(_evidence(tmp_path).read_text())
    record, proof = tmp_path / "record.json", tmp_path / "proof.json"
    record.write_text(ev["records"][0]["record"] + "\n")
    proof.write_text(json.dumps(ev["records"][0]["proof"]))
    rpc = ["--contract", CONTRACT, "--rpc", f"http://127.0.0.1:{free_port()}"]
    for bad_record in (files["binary"], files["deep"], files["missing"]):
        code, _, err = run(capsys, "verify", "--record", str(bad_record), "--proof", str(proof),
                           *rpc)
        assert refused(code, err, bad_record)
    for bad_proof in (files["toml"], files["deep"], files["list"], files["missing"]):
        code, _, err = run(capsys, "verify", "--record", str(record), "--proof", str(bad_proof),
                           *rpc)
        assert refused(code, err, bad_proof)


def test_an_unreachable_node_is_exit_3_naming_the_endpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "verify", str(_evidence(tmp_path)), "--contract", CONTRACT,
                       "--rpc", url)
    assert refused(code, err, url, expected=3) and "cannot reach the ledger" in err
    code, _, err = run(capsys, "verify", str(_evidence(tmp_path)), "--contract", CONTRACT,
                       "--rpc", "ftp://example.org")
    assert refused(code, err, "ftp://example.org")


def test_deep_nesting_is_exit_2_in_the_real_command_not_a_crash(files: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """Through the installed entry point, in processes of their own: this test's process
    has loaded web3 (anvil_node), and there the simulator's JSON parsers would overflow."""
    scenario = tmp_path / "ok.toml"
    scenario.write_text("[run]\nduration_s = 5\n[[seals]]\ncount = 1\n")
    rpc = ["--contract", CONTRACT, "--rpc", f"http://127.0.0.1:{free_port()}"]
    deep = str(files["deep"])
    for argv in (["verify", deep, *rpc], ["verify", "--record", deep, "--proof", deep, *rpc],
                 ["sim", "gps", "--route", deep, "--device", "-"],
                 ["sim", "fleet", "--scenario", str(scenario), "--keys", deep, "--fast"]):
        proc = subprocess.run([sys.executable, "-m", "sealtrail.cli", *argv],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2, (argv, proc.returncode, proc.stderr)
        assert deep in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_the_other_commands_name_the_file_and_exit_2(files: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rpc = ["--contract", CONTRACT, "--rpc", f"http://127.0.0.1:{free_port()}"]
    scenario = tmp_path / "ok.toml"
    scenario.write_text("[run]\nduration_s = 5\n[[seals]]\ncount = 1\n")
    cases: list[tuple[list[str], Path | str]] = [
        (["journal", "verify", str(files["toml"])], files["toml"]),
        (["journal", "verify", str(files["binary"])], files["binary"]),
        (["journal", "verify", str(files["sqlite"])], files["sqlite"]),
        (["journal", "verify", str(files["missing"])], files["missing"]),
        (["journal", "verify", str(tmp_path)], tmp_path),
        (["evidence", "export", "--journal", str(files["toml"]), "-o", str(tmp_path / "x"),
          "--seq", "1"], files["toml"]),
        (["ledger", "status", "--journal", str(files["sqlite"]), *rpc], files["sqlite"]),
        (["verify", "--journal", str(files["binary"]), "--seq", "1", *rpc], files["binary"]),
        (["ledger", "deploy", "--key", str(files["missing"]), "--rpc", rpc[-1]],
         files["missing"]),
        (["plan", "show", str(files["deep"])], files["deep"]),
        (["plan", "show", str(files["binary"])], files["binary"]),
        (["plan", "verify", str(files["deep"]), "--trusted-keys", str(files["toml"])],
         files["deep"]),
        (["plan", "sign", str(files["deep"]), "--key", str(files["missing"])], files["deep"]),
        (["plan", "show", str(files["missing"])], files["missing"]),
        (["sim", "gps", "--route", str(files["binary"]), "--device", "-"], files["binary"]),
        (["sim", "fleet", "--scenario", str(files["binary"])], files["binary"]),
        (["sim", "fleet", "--scenario", str(files["missing"])], files["missing"]),
        (["sim", "keys", "--scenario", str(files["deep"]), "--out", str(tmp_path / "k")],
         files["deep"]),
    ]
    for argv, named in cases:
        code, _, err = run(capsys, *argv)
        assert refused(code, err, named), argv
        command = " ".join(w for w in argv[:2] if not w.startswith("-"))
        assert err.startswith(f"sealtrail {command}: "), err  # names the action that failed


def test_documented_non_2_codes_stay(files: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Keys: 1 for a missing or unsafe key (`keys --help`); the simulator: 1 for an I/O error
    such as an absent serial device (firmware_sim/README.md)."""
    code, _, err = run(capsys, "keys", "show", "--key", str(files["missing"]))
    assert refused(code, err, files["missing"], expected=1)
    code, _, err = run(capsys, "keys", "show", "--key", str(tmp_path))  # a directory
    assert refused(code, err, tmp_path, expected=1)
    under_a_file = files["toml"] / "gateway.key"  # its parent cannot be made
    code, _, err = run(capsys, "keys", "init", "--key", str(under_a_file))
    assert refused(code, err, files["toml"], expected=1)
    device = tmp_path / "ttyUSB9"
    code, _, err = run(capsys, "sim", "gps", "--device", str(device), "--fast")
    assert refused(code, err, device, expected=1)


def test_help_does_not_load_web3() -> None:
    """`sealtrail X --help` builds X's parser only; none of them may import web3 (1.5 s)."""
    script = ("import sys; from sealtrail.cli import COMMANDS, build_parser\n"
              "for name in COMMANDS: build_parser([name])\n"
              "sys.exit(100 if 'web3' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
