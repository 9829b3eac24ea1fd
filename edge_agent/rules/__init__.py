"""Rules: the journal consumer that turns readings into alerts (see engine.py).

Pure per-asset state machines live in their own modules (vehicle, zonewatch, motion, health,
seals, trip) and return ``alerts.Alert`` values; ``engine.RulesEngine`` feeds them committed
records, builds alert records and commits alerts, state and cursor together.

The names below are loaded when first used: the gateway's configuration needs ``params`` (the
thresholds' schema) to load a gateway.toml without [rules], and must not pay for the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.rules.alerts import ALERT_NAMESPACE, CLOSES, SEVERITY, Alert, alert_id
    from edge_agent.rules.engine import CURSOR, RulesEngine
    from edge_agent.rules.params import LIMIT_KEYS, RuleParams, RuleParamsError

_WHERE = {
    "ALERT_NAMESPACE": "alerts", "CLOSES": "alerts", "SEVERITY": "alerts", "Alert": "alerts",
    "alert_id": "alerts", "CURSOR": "engine", "RulesEngine": "engine", "LIMIT_KEYS": "params",
    "RuleParams": "params", "RuleParamsError": "params",
}

__all__ = [
    "ALERT_NAMESPACE",
    "CLOSES",
    "CURSOR",
    "LIMIT_KEYS",
    "SEVERITY",
    "Alert",
    "RuleParams",
    "RuleParamsError",
    "RulesEngine",
    "alert_id",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
