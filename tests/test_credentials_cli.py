"""The credential commands: attest, verify-credential, status-list, did-document.

Run in process through ``main`` (the same parser ``sealtrail customs`` mounts), with key
files made at run time. Every refusal must be one line on stderr that names the file, and
its documented exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.credentials import facts_json, write_key

from customs.credentials.cli import main
from customs.credentials.keys import public_bytes
from customs.credentials.multikey import did_key

WEB = "did:web:customs.example.gov:offices:uymvd"
LIST_URL = "https://customs.example.gov/status/1"


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], code: int, name: str, *argv: Any) -> str:
    got, _, err = run(capsys, *argv)
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def rig(tmp_path: Path) -> dict[str, Any]:
    key = write_key(tmp_path / "customs.key")
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(facts_json()))
    return {"dir": tmp_path, "key": tmp_path / "customs.key", "facts": facts,
            "did": did_key(public_bytes(key)), "pk": key}


def test_attest_then_verify(capsys: pytest.CaptureFixture[str], rig: dict[str, Any]) -> None:
    out_file = rig["dir"] / "trip.vc.json"
    code, out, _ = run(capsys, "attest", "--facts", rig["facts"], "--key", rig["key"],
                       "--issuer", rig["did"], "-o", out_file)
    assert code == 0 and "TransitTripCredential" in out
    code, out, err = run(capsys, "verify-credential", out_file, "--pin", rig["did"])
    assert code == 0, err
    assert out.startswith("verified: TransitTripCredential urn:uuid:")
    assert f"issuer   {rig['did']}" in out and "status   none" in out
    code, out, _ = run(capsys, "verify-credential", out_file, "--pin", rig["did"], "--json")
    report = json.loads(out)
    assert report["verified"] is True and report["code"] == 0
    assert report["issuer"] == rig["did"] and report["types"][1] == "TransitTripCredential"


def test_did_web_issuer_with_its_published_document(capsys: pytest.CaptureFixture[str],
                                                    rig: dict[str, Any]) -> None:
    did_doc, cred = rig["dir"] / "did.json", rig["dir"] / "trip.vc.json"
    code, out, _ = run(capsys, "did-document", "--did", WEB, "--key", rig["key"], "-o", did_doc)
    assert code == 0
    assert "https://customs.example.gov/offices/uymvd/did.json" in out
    assert run(capsys, "attest", "--facts", rig["facts"], "--key", rig["key"], "--issuer", WEB,
               "-o", cred)[0] == 0
    code, out, err = run(capsys, "verify-credential", cred, "--pin", did_doc)
    assert code == 0, err
    line = refused(capsys, 23, str(cred), "verify-credential", cred, "--pin", rig["did"])
    assert "not pinned" in line


def test_each_refusal_has_its_exit_code(capsys: pytest.CaptureFixture[str],
                                        rig: dict[str, Any]) -> None:
    d = rig["dir"]
    good = d / "trip.vc.json"
    run(capsys, "attest", "--facts", rig["facts"], "--key", rig["key"], "--issuer", rig["did"],
        "-o", good)
    cred = json.loads(good.read_text())

    def variant(name: str, change: Any) -> Path:
        doc = json.loads(json.dumps(cred))
        change(doc)
        path = d / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    (d / "badjson.json").write_text("{not json")
    cases = [  # the others need a re-signed credential: test_credentials_verify.py has them
        (2, d / "missing.json"),
        (2, d),
        (20, d / "badjson.json"),
        (20, variant("model", lambda c: c.pop("issuer"))),
        (21, variant("suite", lambda c: c["proof"].update(cryptosuite="eddsa-rdfc-2022"))),
        (24, variant("tampered", lambda c: c["credentialSubject"].update(identifier="PLAN-X"))),
        (27, variant("context", lambda c: c["@context"].append("https://x.example/c"))),
    ]
    for code, path in cases:
        line = refused(capsys, code, str(path), "verify-credential", path, "--pin", rig["did"])
        assert line.startswith("sealtrail customs verify-credential: ")
    refused(capsys, 23, str(good), "verify-credential", good)  # nobody pinned
    code, out, _ = run(capsys, "verify-credential", d / "tampered.json", "--pin", rig["did"],
                       "--json")
    report = json.loads(out)
    assert (report["verified"], report["code"], report["error"]) == \
        (False, 24, "InvalidSignature")


def test_status_list_revoke_and_unrevoke(capsys: pytest.CaptureFixture[str],
                                         rig: dict[str, Any]) -> None:
    d, key = rig["dir"], rig["key"]
    status, cred = d / "status-1.json", d / "trip.vc.json"
    assert run(capsys, "status-list", "make", "--id", LIST_URL, "--issuer", rig["did"],
               "--key", key, "-o", status)[0] == 0
    assert run(capsys, "attest", "--facts", rig["facts"], "--key", key, "--issuer", rig["did"],
               "--status-list-url", LIST_URL, "--status-index", 42, "-o", cred)[0] == 0
    verify = ("verify-credential", cred, "--pin", rig["did"])
    line = refused(capsys, 30, str(cred), *verify)
    assert "--status-list" in line
    code, out, _ = run(capsys, *verify, "--ignore-status")
    assert code == 0 and "NOT CHECKED" in out
    code, out, _ = run(capsys, *verify, "--status-list", status)
    assert code == 0 and "active" in out

    code, out, _ = run(capsys, "status-list", "revoke", status, "--index", 42, "--key", key)
    assert code == 0 and "revoked index 42" in out
    line = refused(capsys, 28, str(cred), *verify, "--status-list", status)
    assert "revoked" in line
    code, out, _ = run(capsys, "status-list", "revoke", status, "--index", 42, "--key", key)
    assert code == 0 and "already" in out

    assert run(capsys, "status-list", "unrevoke", status, "--index", 42, "--key", key)[0] == 0
    assert run(capsys, *verify, "--status-list", status)[0] == 0

    refused(capsys, 2, str(status), "status-list", "make", "--id", LIST_URL, "--issuer",
            rig["did"], "--key", key, "-o", status)  # never overwrite a published list
    refused(capsys, 29, str(status), "status-list", "revoke", status, "--index", 10**7,
            "--key", key)
    other = json.loads(status.read_text())
    other["id"] = LIST_URL + "-b"
    (d / "other.json").write_text(json.dumps(other))
    refused(capsys, 29, str(cred), *verify, "--status-list", d / "other.json")


def test_key_file_problems_name_the_file(capsys: pytest.CaptureFixture[str],
                                         rig: dict[str, Any]) -> None:
    d = rig["dir"]
    loose = d / "loose.key"
    write_key(loose, mode=0o644)
    attest = ("attest", "--facts", rig["facts"], "--issuer", rig["did"], "-o", d / "o.json")
    line = refused(capsys, 2, str(loose), *attest, "--key", loose)
    assert "chmod 600" in line
    refused(capsys, 2, str(d / "nokey"), *attest, "--key", d / "nokey")
    garbage = d / "garbage.key"
    garbage.write_text("hello")
    os.chmod(garbage, 0o600)
    refused(capsys, 2, str(garbage), *attest, "--key", garbage)
    raw = d / "raw.key"
    key = write_key(raw, raw_hex=True)
    mine = did_key(public_bytes(key))
    code, _, err = run(capsys, "attest", "--facts", rig["facts"], "--issuer", mine, "--key",
                       raw, "-o", d / "raw.vc.json")
    assert code == 0, err
    line = refused(capsys, 2, str(raw), *attest, "--key", raw)  # the key is not that DID's
    assert "is a did:key of another key" in line


def test_facts_and_pin_problems_name_the_file(capsys: pytest.CaptureFixture[str],
                                              rig: dict[str, Any]) -> None:
    d = rig["dir"]
    bad_facts = d / "bad-facts.json"
    doc = facts_json()
    doc["alerts"][0]["record"]["seq"] = -1
    bad_facts.write_text(json.dumps(doc))
    line = refused(capsys, 2, str(bad_facts), "attest", "--facts", bad_facts, "--key",
                   rig["key"], "--issuer", rig["did"], "-o", d / "o.json")
    assert "alerts[0].record" in line
    cred = d / "trip.vc.json"
    run(capsys, "attest", "--facts", rig["facts"], "--key", rig["key"], "--issuer", rig["did"],
        "-o", cred)
    bad_pin = d / "pin.json"
    bad_pin.write_text(json.dumps({"id": "not-a-did"}))
    refused(capsys, 2, str(bad_pin), "verify-credential", cred, "--pin", bad_pin)
    refused(capsys, 2, "did:web", "verify-credential", cred, "--pin", WEB)


def test_help_is_light(tmp_path: Path) -> None:
    # `sealtrail customs --help` must answer at once: building the parser imports no crypto.
    probe = ("import sys; from customs.credentials.cli import build_parser; build_parser(); "
             "heavy = [m for m in ('cryptography', 'customs.credentials.verify', "
             "'customs.credentials.proof') if m in sys.modules]; print(heavy)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.strip() == "[]"
    done = subprocess.run([sys.executable, "-m", "customs.credentials", "verify-credential",
                           "--help"], capture_output=True, text=True, env=env, check=True)
    assert "30 status not checked" in done.stdout.replace("\n", " ").replace("  ", " ")
