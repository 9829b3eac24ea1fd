"use strict";
// The print-ready trip report for regulatory filing: map, plan, summary, alerts with their
// verification, and the chain of custody. "Print / save as PDF" uses the browser's printer.
const planId = new URLSearchParams(location.search).get("plan") || "";

function row(tbody, cells) { tbody.append(el("tr", {}, ...cells.map((c) => el("td", {text: c})))); }

(async () => {
  ST.me = await api("/api/me");
  document.getElementById("back").href = "/trip?plan=" + encodeURIComponent(planId);
  document.getElementById("doprint").addEventListener("click", () => window.print());
  const d = await api("/api/trip?plan=" + encodeURIComponent(planId));
  const p = d.plan, s = d.summary || {};
  document.getElementById("title").textContent = "Transit trip report — " + p.plan_id;
  document.getElementById("generated").textContent = "Generated " + utc(Date.now()) + " by " + ST.me.name +
    " from the customs store; every record below is a gateway-signed record verified on receipt.";
  const dlist = (id, pairs) => { const n = clear(document.getElementById(id)); for (const [k, v] of pairs) n.append(el("dt", {text: k}), el("dd", {text: v})); };
  dlist("plan", p.verified ? [["plan", p.plan_id + " (signature verified)"], ["declaration", p.declaration_ref], ["vehicle", p.vehicle],
    ["gateway", d.gw || "—"], ["containers", p.containers.map((c) => c.container_id + " (seals " + c.seal_ids.join(", ") + ")").join("; ")],
    ["offices", p.departure_office + " → " + p.destination_office], ["deadline", utc(p.deadline_ms)]] : [["plan", "NOT verified: " + (p.error || "")]]);
  dlist("summary", [["departure", utc(s.departure_ms)], ["arrival", s.arrival_ms ? utc(s.arrival_ms) : "not yet"],
    ["duration", duration(s.duration_ms)], ["distance", s.distance_m !== undefined ? (s.distance_m / 1000).toFixed(2) + " km" : "—"],
    ["outside the corridor", s.outside_ms !== undefined ? duration(s.outside_ms) + ", at most " + s.max_outside_m + " m beyond its edge" : "—"]]);
  const tb = document.querySelector("#alerts tbody");
  for (const a of d.alerts || []) {
    const v = await api("/api/alert?gw=" + encodeURIComponent(a.gw) + "&id=" + encodeURIComponent(a.alert_id));
    const an = v.verification.anchor;
    row(tb, [utc(a.t_ms), a.title + " — " + a.sentence, a.severity, a.lat === null ? "no fix" : a.lat.toFixed(5) + ", " + a.lon.toFixed(5),
      a.state + (a.resolution ? " (" + a.resolution.replace("_", " ") + ")" : ""), "verified; " + v.verification.key,
      an.status + (an.batch ? ", batch " + an.batch + ", block " + an.block : "")]);
  }
  const cb = document.querySelector("#custody tbody");
  for (const e of d.audit) row(cb, [String(e.seq), utc(e.t_ms), e.officer, e.action,
    [e.reason, e.assignee && "to " + e.assignee, e.place, e.note].filter(Boolean).join(" · ")]);
  const map = await baseMap("map", {zoomControl: false});
  const g = L.layerGroup().addTo(map);
  const line = drawPlan(map, d.geometry, g);
  const tr = d.track || [];
  let b = line ? line.getBounds() : null;
  if (tr.length) {
    const path = L.polyline(tr.map((x) => [x[1], x[2]]), {color: "#d84315", weight: 3}).addTo(g);
    b = b ? b.extend(path.getBounds()) : path.getBounds();
  }
  for (const a of d.alerts || []) if (a.lat !== null && b) b.extend([a.lat, a.lon]);
  for (const a of d.alerts || []) if (a.lat !== null) L.circleMarker([a.lat, a.lon], {radius: 5, color: "#000", weight: 1, fillColor: SEVERITY_COLOURS[a.severity], fillOpacity: 0.9}).addTo(g);
  if (b) map.fitBounds(b.pad(0.1), {maxZoom: 16});
  document.body.dataset.ready = "1";
})();
