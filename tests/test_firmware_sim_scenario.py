"""Scenario TOML: the shipped examples load, and every mistake is reported by key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.scenario import load_scenario
from firmware_sim.tomlcheck import ScenarioError

SCENARIOS = Path(__file__).resolve().parents[1] / "firmware_sim" / "scenarios"

GOOD = """
[run]
duration_s = 60
[[trucks]]
id = "t1"
[[readers]]
id = "r1"
[[seals]]
id = "S1"
via = "r1"
"""


def test_shipped_scenarios_load() -> None:
    gate = load_scenario(SCENARIOS / "port_gate.toml")
    assert len([s for s in gate.seals if s.via == "mqtt"]) == 1000
    assert gate.seals[0].heartbeat_s == 30 and gate.seals[0].drain_pct_per_h == 0.5
    assert {e.type for e in gate.events} >= {"seal_open", "replay", "forge", "garbage"}
    transit = load_scenario(SCENARIOS / "truck_transit.toml")
    assert transit.trucks[0].stops and transit.trucks[0].zones
    assert {e.type for e in transit.events} >= {"dropout", "seal_open", "unplug", "jamming"}
    assert load_scenario(SCENARIOS / "attacks.toml").seals


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("[run]\nduration_s = 60\n[run]\n", "not valid TOML"),
        ("[run]\nname = 'x'\n", "run.duration_s: missing (required)"),
        ("[run]\nduration_s = -1\n", "run.duration_s: must be > 0, got -1"),
        ("[run]\nduration_s = 'long'\n", "run.duration_s: must be a number, got string"),
        ("[run]\nduration_s = 9\nseeed = 1\n", "run.seeed: unknown key (did you mean 'seed'?)"),
        (GOOD + "[[trucks]]\nid = 't2'\nsped_mps = 3\n",
         "trucks[1].sped_mps: unknown key (did you mean 'speed_mps'?)"),
        (GOOD + "[[trucks]]\nid = 't2'\nroute = 'nope.geojson'\n",
         "trucks[1].route: file not found: nope.geojson"),
        (GOOD + "[[trucks]]\nid = 't2'\nstops = [{at_m = 5, duration_s = 0}]\n",
         "trucks[1].stops[0].duration_s: must be > 0"),
        (GOOD + "[[seals]]\nid = 'S2'\nvia = 'r9'\n",
         "seals[1].via: 'r9' is neither \"mqtt\" nor a reader id"),
        (GOOD + "[[seals]]\nid = 'S1'\n", "seals: id 'S1' is already used in seals"),
        (GOOD + "[[seals]]\nid = 'bad id'\n", "seals[1].id: ids must match"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'explode'\ntarget = 'S1'\n",
         "events[0].type: unknown event type 'explode'"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'seal_open'\ntarget = 'S9*'\n",
         "events[0].target: 'S9*' matches no seal"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'dropout'\ntarget = 'S1'\nduration_s = 3\n",
         "events[0].target: 'S1' matches no truck"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'unplug'\ntarget = 'r1'\n",
         "events[0].duration_s: missing (required)"),
        (GOOD + "[[events]]\nt_s = 70\ntype = 'seal_open'\ntarget = 'S1'\n",
         "events[0].t_s: is at or after the end of the run"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'jamming'\ntarget = 't1'\nduration_s = 10\n"
         "ramp_s = 5\n", "events[0].ramp_s: 2 * ramp_s must be less than duration_s"),
        (GOOD + "[[events]]\nt_s = 5\ntype = 'forge'\ntarget = 'S1'\nstate = 'X'\n",
         "events[0].state: must be one of"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, edit: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_cli_reports_scenario_errors_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nduration_s = 10\n[[seals]]\ncount = 2\nheartbeat_s = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "firmware_sim.cli", "sim", "fleet", "--scenario", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "seals[0].heartbeat_s: must be > 0, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
