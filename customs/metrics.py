"""The customs receiver's figures in Prometheus text format (served by `customs serve`).

What an operator must see without reading logs: how much arrives and is verified, what is
quarantined and why, and, per gateway, what was past its quarantine quota (counted and
summarised, not kept): a gateway sending garbage shows up here long before anyone looks at the
quarantine table. Only gateways that overflowed get a series, so the label set stays small for
a fleet of thousands.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from customs.store import OverflowRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(counts: Counter[str], overflow: Iterable[OverflowRow], *, connected: bool,
           groups: int, acks_sent: int, store_waits: int) -> str:
    """The exposition text for one receiver's counters and the store's overflow summary."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            out.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    metric("sealtrail_customs_messages_total", "counter", "MQTT messages handled",
           [({}, counts["messages"])])
    metric("sealtrail_customs_alerts_total", "counter", "verified alerts stored (new)",
           [({}, counts["alerts"])])
    metric("sealtrail_customs_alert_duplicates_total", "counter",
           "alerts received again (redelivery or re-raised id)", [({}, counts["duplicates"])])
    metric("sealtrail_customs_readings_total", "counter", "verified records stored (new)",
           [({}, counts["readings"])])
    reasons = {k.removeprefix("quarantined_"): v for k, v in counts.items()
               if k.startswith("quarantined_")}
    metric("sealtrail_customs_quarantined_total", "counter",
           "messages quarantined with their payload, by reason",
           [({"reason": r}, n) for r, n in sorted(reasons.items())])
    metric("sealtrail_customs_quarantine_overflow_total", "counter",
           "messages past a gateway's quarantine quota: counted, not kept",
           [({"gateway": o.account, "reason": o.reason}, o.count) for o in overflow])
    metric("sealtrail_customs_dropped_poison_total", "counter",
           "messages the store refused even as a quarantine row", [({}, counts["dropped_poison"])])
    metric("sealtrail_customs_groups_total", "counter", "groups stored (one transaction each)",
           [({}, groups)])
    metric("sealtrail_customs_acks_total", "counter", "acknowledgements sent to gateways",
           [({}, acks_sent)])
    metric("sealtrail_customs_store_waits_total", "counter",
           "times a group waited for an unavailable store", [({}, store_waits)])
    metric("sealtrail_customs_broker_connected", "gauge", "1 while connected to the broker",
           [({}, 1 if connected else 0)])
    return "\n".join(out) + "\n"
