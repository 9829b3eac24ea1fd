"""Compile SealTrailAnchor.sol with solcjs into the committed SealTrailAnchor.json artifact.

Why committed: gateways and verifiers must not need a Solidity toolchain, and everybody must
deploy and verify against the same bytecode. Why `--check`: CI proves the committed artifact is
exactly what the committed source compiles to, with pinned settings (optimizer on, 200 runs,
via-IR, evmVersion "paris"). "paris" because it has no PUSH0 (Shanghai), so the bytecode also
runs on consortium Besu networks still on London/Berlin rules; anvil and eth-tester run it too.
via-IR because the legacy pipeline lands at ~60.2k gas per anchor, over the 60k budget.

    python -m ledger_client.contracts.build           # (re)write SealTrailAnchor.json
    python -m ledger_client.contracts.build --check   # exit 1 if the artifact is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTRACT = "SealTrailAnchor"
SOURCE_PATH = HERE / f"{CONTRACT}.sol"
ARTIFACT_PATH = HERE / f"{CONTRACT}.json"
SOLCJS = "solcjs"
SOLC_VERSION = "0.8.37"
INSTALL_HINT = f"install it with: npm install -g solc@{SOLC_VERSION}"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": True,
    "evmVersion": "paris",
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
    },
}


class BuildError(RuntimeError):
    """solcjs is missing, failed, or reported a compile error."""


def _solcjs() -> str:
    exe = shutil.which(SOLCJS)
    if exe is None:
        raise BuildError(f"{SOLCJS} not found on PATH; {INSTALL_HINT}")
    return exe


def compiler_version() -> str:
    """The exact solcjs version string, e.g. '0.8.37+commit.f401782d.Emscripten.clang'."""
    out = subprocess.run(
        [_solcjs(), "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    if out.returncode != 0:
        raise BuildError(f"{SOLCJS} --version failed: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1].strip()


def _parse_solcjs_json(stdout: str) -> dict[str, Any]:
    """solcjs may print notes (e.g. about SMT solvers) before the JSON document: skip them."""
    start = stdout.find("{")
    if start < 0:
        raise BuildError(f"{SOLCJS} printed no JSON: {stdout[:500]!r}")
    result: dict[str, Any] = json.loads(stdout[start:])
    return result


def build() -> dict[str, Any]:
    """Compile the source and return the artifact dict (nothing is written)."""
    source = SOURCE_PATH.read_text(encoding="utf-8")
    request = {
        "language": "Solidity",
        "sources": {SOURCE_PATH.name: {"content": source}},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        [_solcjs(), "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        raise BuildError(f"{SOLCJS} failed ({proc.returncode}): {proc.stderr.strip()}")
    out = _parse_solcjs_json(proc.stdout)
    problems = out.get("errors", [])
    errors = [p for p in problems if p.get("severity") == "error"]
    for p in problems:
        if p.get("severity") != "error":
            print(p.get("formattedMessage", p.get("message")), file=sys.stderr)
    if errors:
        msgs = "\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors)
        raise BuildError(f"compile errors:\n{msgs}")
    contract = out["contracts"][SOURCE_PATH.name][CONTRACT]
    return {
        "contractName": CONTRACT,
        "compiler": compiler_version(),
        "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        "sourceSha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
        "metadata": contract["metadata"],
    }


def render(artifact: dict[str, Any]) -> str:
    """Stable text form, so the committed file only changes when the build does."""
    return json.dumps(artifact, indent=2, sort_keys=False) + "\n"


def check(artifact: dict[str, Any]) -> list[str]:
    """Keys whose committed value differs from `artifact` (empty when up to date)."""
    if not ARTIFACT_PATH.exists():
        return [f"{ARTIFACT_PATH.name} is missing"]
    committed = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    keys = sorted(set(committed) | set(artifact))
    return [k for k in keys if committed.get(k) != artifact.get(k)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledger_client.contracts.build",
        description=(
            f"Compile {SOURCE_PATH.name} with solcjs {SOLC_VERSION} (--standard-json, optimizer "
            f"200 runs, via-IR, evmVersion paris) into {ARTIFACT_PATH.name}."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="build in memory and exit 1 if the committed artifact differs (CI)",
    )
    args = parser.parse_args(argv)
    try:
        artifact = build()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        stale = check(artifact)
        if stale:
            print(
                f"error: {ARTIFACT_PATH.name} does not match a fresh build of "
                f"{SOURCE_PATH.name} (differs: {', '.join(stale)}; compiler here: "
                f"{artifact['compiler']}). Run: python -m ledger_client.contracts.build",
                file=sys.stderr,
            )
            return 1
        print(f"{ARTIFACT_PATH.name} is up to date ({artifact['compiler']})")
        return 0
    ARTIFACT_PATH.write_text(render(artifact), encoding="utf-8")
    print(f"wrote {ARTIFACT_PATH} ({artifact['compiler']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
