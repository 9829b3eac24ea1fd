"""What the console, the CLI and the webhook read from the customs store (both engines).

Alerts are listed per gateway by ``seq`` and across gateways by time, never by arrival: several
receivers may store a gateway's alerts out of order, and the order an officer sees must be the
order the gateway signed them in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from customs.store.rows import (
    AlertRow,
    AnchorClaim,
    GatewayRow,
    OverflowRow,
    QuarantineRow,
    RecordRow,
)

if TYPE_CHECKING:
    from customs.store.base import Tx

ALERT_SELECT = (
    "SELECT a.gw, a.seq, a.alert_id, a.t_ms, a.type, a.severity, a.plan_id, a.lat_e7, a.lon_e7, "
    "a.prev_alert, a.trust, a.received_ms, r.signed, a.duplicates, a.note, a.state, a.assignee, "
    "a.resolution FROM alerts a JOIN records r ON r.gw = a.gw AND r.seq = a.seq")
QUARANTINE_SELECT = ("SELECT id, received_ms, topic, reason, detail, gw, seq, alert_id, plan_id, "
                     "payload, size, sha256, released_ms FROM quarantine")
GATEWAY_SELECT = ("SELECT gw, state, t_ms, head_seq, alerts_pending, received_ms, acked_seq, "
                  "last_fix_seq, last_fix_ms, last_lat_e7, last_lon_e7 FROM gateways")
SEVERITY_RANK = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"


def _alert(row: Sequence[Any]) -> AlertRow:
    values = list(row)
    values[12] = bytes(values[12])
    return AlertRow(*values)


class Queries:
    """The read half of a store; ``_read`` is supplied by the backend."""

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read() as tx:
            return tx.all(sql, params)

    # -- alerts ----------------------------------------------------------------------------------

    def alert(self, gw: str, alert_id: str) -> AlertRow | None:
        rows = self._all(f"{ALERT_SELECT} WHERE a.gw = ? AND a.alert_id = ?", (gw, alert_id))
        return _alert(rows[0]) if rows else None

    def alerts(self, *, plan_id: str | None = None, gw: str | None = None,
               since_ms: int | None = None, types: Iterable[str] | None = None,
               severities: Iterable[str] | None = None, states: Iterable[str] | None = None,
               queue: bool = False, limit: int | None = None) -> list[AlertRow]:
        """Alerts by signed time (per gateway by seq); ``queue``: the officers' order instead,
        open before handled, critical first, newest first."""
        where, params = ["1 = 1"], []
        for column, value in (("a.plan_id = ?", plan_id), ("a.gw = ?", gw),
                              ("a.t_ms >= ?", since_ms)):
            if value is not None:
                where.append(column)
                params.append(value)
        for column, values in (("a.type", types), ("a.severity", severities),
                               ("a.state", states)):
            if values is not None:
                wanted = list(values)
                where.append(f"{column} IN ({', '.join('?' * len(wanted)) or 'NULL'})")
                params += wanted
        order = (f"CASE a.state WHEN 'resolved' THEN 1 ELSE 0 END, {SEVERITY_RANK}, a.t_ms DESC, "
                 "a.gw, a.seq DESC" if queue else "a.t_ms, a.gw, a.seq")
        sql = f"{ALERT_SELECT} WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_alert(r) for r in self._all(sql, params)]

    def alert_ids_after(self, gw: str, seq: int) -> list[tuple[int, str]]:
        """(seq, alert_id) of a gateway's alerts after ``seq``, in the order it signed them."""
        return [(int(s), str(a)) for s, a in self._all(
            "SELECT seq, alert_id FROM alerts WHERE gw = ? AND seq > ? ORDER BY seq", (gw, seq))]

    # -- records ---------------------------------------------------------------------------------

    def signed_at(self, gw: str, seq: int) -> bytes | None:
        """The verified record this gateway signed as ``seq``, if held."""
        rows = self._all("SELECT signed FROM records WHERE gw = ? AND seq = ?", (gw, seq))
        return bytes(rows[0][0]) if rows else None

    def records(self, gw: str, kind: str | None = None, *, first_seq: int = 0,
                last_seq: int = 2**62) -> list[RecordRow]:
        sql = ("SELECT gw, seq, t_ms, kind, src, lat_e7, lon_e7, received_ms, signed FROM records "
               "WHERE gw = ? AND seq >= ? AND seq <= ?")
        params: list[Any] = [gw, first_seq, last_seq]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return [RecordRow(*r[:8], bytes(r[8])) for r in self._all(sql + " ORDER BY seq", params)]

    def track(self, gw: str, from_ms: int | None = None,
              to_ms: int | None = None) -> list[tuple[str, int, int, int]]:
        """A gateway's verified GPS fixes as (src, t_ms, lat_e7, lon_e7), in time order."""
        rows = self._all(
            "SELECT src, t_ms, lat_e7, lon_e7 FROM records WHERE gw = ? AND kind = 'gps' AND "
            "lat_e7 IS NOT NULL AND t_ms >= ? AND t_ms <= ? ORDER BY t_ms, seq",
            (gw, -(2**62) if from_ms is None else from_ms, 2**62 if to_ms is None else to_ms))
        return [(str(s), int(t), int(a), int(o)) for s, t, a, o in rows]

    # -- quarantine ------------------------------------------------------------------------------

    def quarantined(self, *, reasons: Iterable[str] | None = None, plan_id: str | None = None,
                    released: bool = False, limit: int | None = None) -> list[QuarantineRow]:
        sql = f"{QUARANTINE_SELECT} WHERE released_ms IS {'NOT ' if released else ''}NULL"
        params: list[Any] = []
        if reasons is not None:
            wanted = list(reasons)
            sql += f" AND reason IN ({', '.join('?' * len(wanted)) or 'NULL'})"
            params += wanted
        if plan_id is not None:
            sql += " AND plan_id = ?"
            params.append(plan_id)
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        return [QuarantineRow(*r[:9], bytes(r[9]), *r[10:]) for r in self._all(sql, params)]

    def overflow(self) -> list[OverflowRow]:
        """Per gateway and reason, what was past the quarantine quota (counted, not kept)."""
        return [OverflowRow(*r) for r in self._all(
            "SELECT account, reason, count, bytes, first_ms, last_ms, last_sha256, last_size, "
            "last_topic FROM quarantine_overflow ORDER BY account, reason")]

    # -- gateways, plans -------------------------------------------------------------------------

    def gateways(self) -> dict[str, GatewayRow]:
        return {r[0]: GatewayRow(*r) for r in self._all(f"{GATEWAY_SELECT} ORDER BY gw")}

    def gateway(self, gw: str) -> GatewayRow | None:
        rows = self._all(f"{GATEWAY_SELECT} WHERE gw = ?", (gw,))
        return GatewayRow(*rows[0]) if rows else None

    def plan_envelope(self, plan_id: str) -> bytes | None:
        rows = self._all("SELECT envelope FROM plans WHERE plan_id = ?", (plan_id,))
        return bytes(rows[0][0]) if rows else None

    def plan_ids(self) -> list[str]:
        return [str(r[0]) for r in self._all("SELECT plan_id FROM plans ORDER BY plan_id")]

    def anchor_of(self, gw: str, seq: int) -> AnchorClaim | None:
        """The gateway's claim of the batch that holds its record ``seq``, if it sent one."""
        rows = self._all(
            "SELECT gw, batch_seq, first_seq, tree_size, root, chain_id, contract, tx_hash, "
            "block_number, block_hash, log_index FROM anchors WHERE gw = ? AND first_seq <= ? "
            "ORDER BY first_seq DESC LIMIT 1", (gw, seq))
        claim = AnchorClaim(*rows[0]) if rows else None
        return claim if claim is not None and seq <= claim.last_seq else None

    # -- webhook outbox --------------------------------------------------------------------------

    def webhook_pending(self, limit: int = 100) -> list[AlertRow]:
        rows = self._all(
            f"{ALERT_SELECT} JOIN webhook_outbox w ON w.gw = a.gw AND w.alert_id = a.alert_id "
            "WHERE w.state = 'pending' ORDER BY a.received_ms, a.gw, a.seq LIMIT ?", (limit,))
        return [_alert(r) for r in rows]

    def webhook_states(self) -> dict[tuple[str, str], str]:
        return {(g, a): s for g, a, s in self._all("SELECT gw, alert_id, state FROM "
                                                    "webhook_outbox")}

    # -- the change feed -------------------------------------------------------------------------

    def changes_since(self, after_id: int, limit: int = 1000) -> list[tuple[int, int, str,
                                                                             str | None,
                                                                             str | None]]:
        """(id, t_ms, kind, gw, ref) of what was committed after feed position ``after_id``."""
        return [(int(i), int(t), str(k), g, r) for i, t, k, g, r in self._all(
            "SELECT id, t_ms, kind, gw, ref FROM changes WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit))]

    def last_change(self) -> int:
        return int(self._all("SELECT COALESCE(MAX(id), 0) FROM changes")[0][0])

    # -- totals ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """What the store holds, for `customs alerts` and tests."""
        one: dict[str, Any] = {name: int(self._all(f"SELECT COUNT(*) FROM {name}")[0][0])
                               for name in ("alerts", "records", "gateways", "plans")}
        one["readings"] = int(self._all("SELECT COUNT(*) FROM records WHERE kind <> 'alert'")
                              [0][0])
        one["duplicates"] = int(self._all("SELECT COALESCE(SUM(duplicates), 0) FROM alerts")[0][0])
        one["quarantine"] = {str(r): int(n) for r, n in self._all(
            "SELECT reason, COUNT(*) FROM quarantine WHERE released_ms IS NULL GROUP BY reason "
            "ORDER BY reason")}
        one["overflow"] = {f"{a}/{r}": int(n) for a, r, n in self._all(
            "SELECT account, reason, count FROM quarantine_overflow ORDER BY account, reason")}
        return one
