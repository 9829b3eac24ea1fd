"""Rules: the journal consumer that turns readings into alerts (see engine.py).

Pure per-asset state machines live in their own modules (vehicle, zonewatch, motion, health,
seals, trip) and return ``alerts.Alert`` values; ``engine.RulesEngine`` feeds them committed
records, builds alert records and commits alerts, state and cursor together.
"""

from edge_agent.rules.alerts import ALERT_NAMESPACE, CLOSES, SEVERITY, Alert, alert_id
from edge_agent.rules.engine import CURSOR, RulesEngine
from edge_agent.rules.params import LIMIT_KEYS, RuleParams, RuleParamsError

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
