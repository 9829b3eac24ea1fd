"""A transit's trip report: one self-contained HTML file, a map plus the table of its alerts.

It must open offline, in any browser, from an e-mail attachment or a USB stick: no tile server,
no CDN, no external script or stylesheet (a Content-Security-Policy in the page forbids any
fetch). The map is inline SVG drawn in the plan's own local metric projection (the transverse
Mercator the gateway evaluated the corridor in), so what customs sees is the geometry the rules
used, north up, with a scale bar in metres: the corridor buffer, its centre line, the zones by
role, the vehicle's verified track (one line per GPS sensor, broken where fixes stop for more
than ``GAP_MS``), and a marker per alert with a tooltip. The alert table gives each alert's
verification status; messages that claimed this plan but failed verification are listed apart,
as quarantined, never drawn as alerts. The data is embedded as JSON for anyone who wants it.

The plan is the TransitPlan ``geofences.open_envelope`` returned after checking its customs
signature; zones and corridor are already in its projected metres. Without a plan the report
still draws the track and alerts, in a projection centred on them.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely import Geometry

from customs.report_assets import CSP, ROLE_STYLES, SCRIPT, SEVERITY_COLOURS, STYLE
from customs.store import AlertRow, QuarantineRow, Store, now_ms
from geofences import LocalProjection, TransitPlan, Zone

WIDTH = 1000.0
"""SVG user units across the map; the height follows the data's aspect ratio."""
PAD = 0.06
GAP_MS = 5 * 60_000
"""A longer pause between fixes breaks the track line (GNSS lost, gateway off)."""
MIN_STEP = 0.75
"""Track vertices closer than this (SVG units) to the last kept one are dropped."""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def utc(t_ms: int | None) -> str:
    if t_ms is None:
        return "—"
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def degrees(lat_e7: int | None, lon_e7: int | None) -> str:
    if lat_e7 is None or lon_e7 is None:
        return "no fix"
    return f"{lat_e7 / 1e7:.6f}, {lon_e7 / 1e7:.6f}"


@dataclass
class Frame:
    """Plane metres to SVG units: north up, the data's bounding box padded by PAD."""

    minx: float
    maxy: float
    scale: float
    height: float

    @classmethod
    def around(cls, bounds: Sequence[float]) -> Frame:
        minx, miny, maxx, maxy = bounds
        dx, dy = max(maxx - minx, 50.0), max(maxy - miny, 50.0)
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
        dx, dy = dx * (1 + 2 * PAD), dy * (1 + 2 * PAD)
        scale = WIDTH / dx
        height = min(max(dy * scale, 250.0), 1.6 * WIDTH)
        scale = min(scale, height / dy)
        return cls(cx - WIDTH / scale / 2, cy + height / scale / 2, scale, height)

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.minx) * self.scale, (self.maxy - y) * self.scale

    def pt(self, x: float, y: float) -> str:
        sx, sy = self.xy(x, y)
        return f"{sx:.1f} {sy:.1f}"

    def path(self, geom: Geometry) -> str:
        """SVG path data of a (Multi)Polygon or (Multi)LineString."""
        parts: list[str] = []
        for g in getattr(geom, "geoms", [geom]):
            if g.is_empty:
                continue
            if g.geom_type == "Polygon":
                for ring in [g.exterior, *g.interiors]:
                    coords = list(ring.coords)[:-1]
                    parts.append("M" + "L".join(self.pt(x, y) for x, y in coords) + "Z")
            else:
                parts.append("M" + "L".join(self.pt(x, y) for x, y in g.coords))
        return "".join(parts)


class Projector:
    """wire integers -> plane metres, with the plan's projection or one around the data."""

    def __init__(self, projection: LocalProjection):
        self.projection = projection

    def xy(self, lat_e7: int, lon_e7: int) -> tuple[float, float]:
        return self.projection.forward(lat_e7 / 1e7, lon_e7 / 1e7)


def _track_paths(frame: Frame, fixes: list[tuple[int, float, float]]) -> tuple[str, int]:
    """(path data, vertices drawn) for one sensor's fixes (t_ms, x, y), thinned and broken at
    long gaps."""
    out: list[str] = []
    last_t: int | None = None
    last: tuple[float, float] | None = None
    drawn = 0
    for t, x, y in fixes:
        sx, sy = frame.xy(x, y)
        if last_t is None or last is None or t - last_t > GAP_MS:
            out.append(f"M{sx:.1f} {sy:.1f}")
        elif math.hypot(sx - last[0], sy - last[1]) >= MIN_STEP:
            out.append(f"L{sx:.1f} {sy:.1f}")
        else:
            last_t = t
            continue
        last, last_t = (sx, sy), t
        drawn += 1
    return "".join(out), drawn


def _nice_length(metres: float) -> float:
    exp = 10 ** math.floor(math.log10(max(metres, 1.0)))
    return max(m * exp for m in (1, 2, 5) if m * exp <= metres) if metres >= 1 else 1.0


def _zone_svg(frame: Frame, zone: Zone) -> str:
    fill, stroke, label = ROLE_STYLES.get(zone.role, ("#9e9e9e", "#616161", zone.role))
    title = f"{zone.name or zone.zone_id} — {label} ({zone.zone_id})"
    if zone.valid_from_ms is not None or zone.valid_until_ms is not None:
        title += f", valid {utc(zone.valid_from_ms)} to {utc(zone.valid_until_ms)}"
    attrs = (f'class="zone role-{esc(zone.role)}" data-zone-id="{esc(zone.zone_id)}" '
             f'data-role="{esc(zone.role)}" fill="{fill}" stroke="{stroke}"')
    if zone.radius_m is not None:
        cx, cy = frame.xy(zone.geometry.x, zone.geometry.y)
        r = zone.radius_m * frame.scale
        return (f'<circle {attrs} cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}">'
                f"<title>{esc(title)}</title></circle>")
    return (f'<path {attrs} fill-rule="evenodd" d="{frame.path(zone.geometry)}">'
            f"<title>{esc(title)}</title></path>")


def _marker_svg(frame: Frame, proj: Projector, index: int, alert: AlertRow) -> str:
    assert alert.lat_e7 is not None and alert.lon_e7 is not None
    cx, cy = frame.xy(*proj.xy(alert.lat_e7, alert.lon_e7))
    colour = SEVERITY_COLOURS.get(alert.severity, "#6a1b9a")
    title = (f"{alert.type} ({alert.severity}) at {utc(alert.t_ms)}\n{alert.gw} seq {alert.seq}"
             f"\n{degrees(alert.lat_e7, alert.lon_e7)}\nverified: {alert.trust}")
    return (f'<g class="alert-marker severity-{esc(alert.severity)}" id="marker-{index}" '
            f'data-alert-id="{esc(alert.alert_id)}"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" '
            f'fill="{colour}"/><text class="marker-label" x="{cx + 9:.1f}" y="{cy - 8:.1f}">'
            f"{index}</text><title>#{index} {esc(title)}</title></g>")


def _alert_row(index: int, alert: AlertRow) -> str:
    details = alert.body.get("details")
    evidence = alert.body.get("evidence") or []
    note = f"<br><span class=small>{esc(alert.note)}</span>" if alert.note else ""
    return (f'<tr class="alert-row" id="row-{index}" data-alert-id="{esc(alert.alert_id)}">'
            f"<td>{index}</td><td>{esc(utc(alert.t_ms))}</td><td>{esc(alert.type)}</td>"
            f'<td class="sev-{esc(alert.severity)}">{esc(alert.severity)}</td>'
            f"<td>{esc(alert.gw)} seq {alert.seq}</td>"
            f"<td>{esc(degrees(alert.lat_e7, alert.lon_e7))}</td>"
            f'<td class="verification verified" data-status="verified">'
            f"verified<br><span class=small>{esc(alert.trust)}</span>{note}</td>"
            f"<td class=small>evidence seqs {esc(', '.join(map(str, evidence)) or '—')}"
            f"{'<br>' + esc(json.dumps(details, sort_keys=True)) if details else ''}</td>"
            f"<td class=small><code>{esc(alert.alert_id)}</code></td></tr>")


def _quarantine_row(row: QuarantineRow) -> str:
    return (f'<tr class="quarantine-row" data-reason="{esc(row.reason)}">'
            f"<td>{esc(utc(row.received_ms))}</td><td>{esc(row.topic)}</td>"
            f'<td class="verification quarantined">quarantined: {esc(row.reason)}</td>'
            f"<td class=small>{esc(row.detail)}</td></tr>")


def build_report(store: Store, plan_id: str, plan: TransitPlan | None, *,
                 gateways: Iterable[str] = (), from_ms: int | None = None,
                 to_ms: int | None = None, plan_note: str | None = None) -> str:
    """The report page for one plan. ``gateways`` adds tracks of gateways that raised no alert;
    the track window defaults to the plan's validity up to its deadline (or the last alert)."""
    alerts = store.alerts(plan_id=plan_id)
    quarantined = store.quarantined(plan_id=plan_id)
    gws = sorted({a.gw for a in alerts} | set(gateways))
    if plan is not None:
        from_ms = plan.valid_from_ms if from_ms is None else from_ms
        if to_ms is None:
            to_ms = max([plan.deadline_ms, *(a.t_ms for a in alerts)])
    raw_tracks: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for gw in gws:
        for src, t, lat, lon in store.track(gw, from_ms, to_ms):
            raw_tracks.setdefault((gw, src), []).append((t, lat, lon))

    if plan is not None:
        projection = plan.corridor.projection
    else:
        pts = [(lat / 1e7, lon / 1e7) for fixes in raw_tracks.values() for _, lat, lon in fixes]
        pts += [(a.lat_e7 / 1e7, a.lon_e7 / 1e7) for a in alerts if a.lat_e7 is not None
                and a.lon_e7 is not None]
        projection = LocalProjection.around(pts or [(0.0, 0.0)])
    proj = Projector(projection)
    tracks = {key: [(t, *proj.xy(lat, lon)) for t, lat, lon in fixes]
              for key, fixes in raw_tracks.items()}
    placed = [a for a in alerts if a.lat_e7 is not None and a.lon_e7 is not None]

    geoms: list[Geometry] = []
    corridor_buffer = None
    if plan is not None:
        corridor_buffer = plan.corridor.line.buffer(plan.corridor.width_m)
        geoms.append(corridor_buffer)
        geoms += [z.geometry.buffer(z.radius_m) if z.radius_m is not None else z.geometry
                  for z in plan.zones]
    points = [(x, y) for fixes in tracks.values() for _, x, y in fixes]
    points += [proj.xy(a.lat_e7, a.lon_e7) for a in placed]  # type: ignore[arg-type]
    if points:
        geoms.append(shapely.multipoints(points))
    bounds = shapely.GeometryCollection(geoms).bounds if geoms else (0.0, 0.0, 0.0, 0.0)
    frame = Frame.around(bounds)

    svg = [f'<svg id="map" viewBox="0 0 {WIDTH:.0f} '
           f'{frame.height:.0f}" role="img" aria-label="map of plan {esc(plan_id)}">']
    if plan is not None and corridor_buffer is not None:
        tolerance = 0.4 / frame.scale
        svg.append(f'<g id="corridor" data-corridor-id="{esc(plan.corridor.corridor_id)}">'
                   f'<path id="corridor-buffer" class="corridor" d="'
                   f'{frame.path(corridor_buffer.simplify(tolerance))}"><title>corridor '
                   f"{esc(plan.corridor.corridor_id)}: {plan.corridor.width_m:g} m either side"
                   f'</title></path><path id="corridor-centre" class="corridor-line" d="'
                   f'{frame.path(plan.corridor.line.simplify(tolerance))}"/></g>')
        svg.append('<g id="zones">' + "".join(_zone_svg(frame, z) for z in plan.zones) + "</g>")
    svg.append('<g id="tracks">')
    for (gw, src), fixes in sorted(tracks.items()):
        d, drawn = _track_paths(frame, fixes)
        sx, sy = frame.xy(fixes[-1][1], fixes[-1][2])
        svg.append(f'<path class="track" data-gw="{esc(gw)}" data-src="{esc(src)}" '
                   f'data-fixes="{len(fixes)}" data-vertices="{drawn}" d="{d}"><title>track of '
                   f"{esc(gw)} / {esc(src)}: {len(fixes)} verified fixes, {esc(utc(fixes[0][0]))}"
                   f" to {esc(utc(fixes[-1][0]))}</title></path>"
                   f'<circle class="track-end" cx="{sx:.1f}" cy="{sy:.1f}" r="4" fill="#37474f">'
                   f"<title>last fix {esc(utc(fixes[-1][0]))}</title></circle>")
    svg.append("</g>")
    svg.append('<g id="alerts">' + "".join(_marker_svg(frame, proj, i, a) for i, a in
                                           enumerate(alerts, start=1) if a in placed) + "</g>")
    bar_m = _nice_length(WIDTH * 0.2 / frame.scale)
    y0 = frame.height - 18
    label = f"{bar_m / 1000:g} km" if bar_m >= 1000 else f"{bar_m:g} m"
    svg.append(f'<g class="scale"><line x1="20" y1="{y0:.0f}" x2="{20 + bar_m * frame.scale:.1f}"'
               f' y2="{y0:.0f}"/><text x="20" y="{y0 - 6:.0f}">{label}</text></g>'
               '<g class="north"><text x="975" y="24" text-anchor="middle">N ↑</text></g></svg>')

    data = {"plan_id": plan_id, "generated_ms": now_ms(),
            "alerts": [{"alert_id": a.alert_id, "gw": a.gw, "seq": a.seq, "t_ms": a.t_ms,
                        "type": a.type, "severity": a.severity, "lat_e7": a.lat_e7,
                        "lon_e7": a.lon_e7, "status": "verified", "trust": a.trust,
                        "record": a.signed.decode("utf-8")} for a in alerts],
            "quarantined": [{"reason": q.reason, "detail": q.detail, "topic": q.topic,
                             "received_ms": q.received_ms} for q in quarantined],
            "tracks": {f"{gw}/{src}": len(f) for (gw, src), f in tracks.items()}}
    return _page(plan_id, plan, plan_note, "".join(svg), alerts, quarantined, tracks, data)


def _plan_meta(plan: TransitPlan | None, plan_id: str, note: str | None) -> str:
    if plan is None:
        return (f'<div class="banner warn">No verified plan document for {esc(plan_id)}: '
                f"the map shows the track and alerts only. {esc(note or '')}</div>")
    rows = [("declaration", plan.declaration_ref), ("vehicle", plan.vehicle),
            ("departure office", plan.departure_office),
            ("destination office", plan.destination_office),
            ("valid from", utc(plan.valid_from_ms)), ("deadline", utc(plan.deadline_ms)),
            ("corridor", f"{plan.corridor.corridor_id}, {plan.corridor.width_m:g} m"),
            ("plan digest", plan.digest)]
    cells = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return (f'<table class="meta">{cells}</table><div class="banner ok">Plan signature verified'
            f" with a trusted customs key. {esc(note or '')}</div>")


def _page(plan_id: str, plan: TransitPlan | None, note: str | None, svg: str,
          alerts: list[AlertRow], quarantined: list[QuarantineRow],
          tracks: dict[tuple[str, str], list[Any]], data: dict[str, Any]) -> str:
    legend = "".join(f'<span><i style="background:{f}"></i>{esc(label)}</span>'
                     for f, _, label in ROLE_STYLES.values())
    legend += ('<span><i style="background:#fff59d"></i>corridor</span>'
               '<span><i style="background:#37474f"></i>verified track</span>')
    legend += "".join(f'<span><i style="background:{c};border-radius:50%"></i>{s} alert</span>'
                      for s, c in SEVERITY_COLOURS.items())
    no_fix = sum(1 for a in alerts if a.lat_e7 is None or a.lon_e7 is None)
    track_note = ", ".join(f"{gw}/{src}: {len(f)} fixes" for (gw, src), f in
                           sorted(tracks.items())) or "no verified GPS fixes for this plan"
    table = "".join(_alert_row(i, a) for i, a in enumerate(alerts, start=1))
    qtable = "".join(_quarantine_row(q) for q in quarantined)
    payload = json.dumps(data, sort_keys=True).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SealTrail trip report: {esc(plan_id)}</title><style>{STYLE}</style></head>
<body><h1>Trip report: plan {esc(plan_id)}</h1>
<p class="meta">Generated {esc(utc(now_ms()))} by <code>sealtrail customs report</code>.
Only alerts whose gateway signature verified are listed and drawn.</p>
{_plan_meta(plan, plan_id, note)}
<h2>Map</h2>{svg}
<p class="legend">{legend}</p><p class="small">Tracks: {esc(track_note)}.
{f"{no_fix} alert(s) carry no position and are not drawn." if no_fix else ""}</p>
<h2>Alerts ({len(alerts)})</h2>
<table class="data" id="alerts-table"><thead><tr><th>#</th><th>time (UTC)</th><th>type</th>
<th>severity</th><th>gateway</th><th>position</th><th>verification</th><th>evidence, details</th>
<th>alert id</th></tr></thead><tbody>{table}</tbody></table>
<h2>Quarantined messages claiming this plan ({len(quarantined)})</h2>
<p class="small">These failed verification and are not alerts; they are kept as evidence.</p>
<table class="data" id="quarantine-table"><thead><tr><th>received (UTC)</th><th>topic</th>
<th>status</th><th>detail</th></tr></thead><tbody>{qtable}</tbody></table>
<script type="application/json" id="report-data">{payload}</script>
<script>{SCRIPT}</script></body></html>
"""
