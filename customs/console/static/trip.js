"use strict";
// One trip: plan, track with direction, playback, timeline, summary, custody, steps.
const T = {map: null, d: null, marker: null, timer: null};
const planId = new URLSearchParams(location.search).get("plan") || "";

function facts(node, pairs) {
  clear(node);
  for (const [k, v] of pairs) node.append(el("dt", {text: k}), el("dd", {text: v}));
}

function bearing(a, b) {
  const rad = Math.PI / 180, y = Math.sin((b[2] - a[2]) * rad) * Math.cos(b[1] * rad);
  const x = Math.cos(a[1] * rad) * Math.sin(b[1] * rad) - Math.sin(a[1] * rad) * Math.cos(b[1] * rad) * Math.cos((b[2] - a[2]) * rad);
  return Math.atan2(y, x) / rad;
}

function arrow(p, deg) {
  const icon = el("div", {class: "arrow"});
  icon.style.transform = "rotate(" + (deg - 90) + "deg)";
  icon.textContent = "➤";
  return L.marker([p[1], p[2]], {icon: L.divIcon({html: icon, className: "arrowicon", iconSize: [14, 14]}), interactive: false});
}

function place(i) {
  const p = T.d.track[i];
  if (!p) return;
  T.marker.setLatLng([p[1], p[2]]);
  document.getElementById("slider").value = String(i);
  document.getElementById("clock").textContent = utc(p[0]);
  document.getElementById("map").dataset.playhead = i + ":" + p[1].toFixed(6) + "," + p[2].toFixed(6);
}

function play() {
  const btn = document.getElementById("play");
  if (T.timer) { clearInterval(T.timer); T.timer = null; btn.textContent = "▶ Play"; return; }
  const n = T.d.track.length;
  let i = Number(document.getElementById("slider").value);
  if (i >= n - 1) i = 0;
  const step = Math.max(1, Math.round(n / 300)); // about 15 s for any trip
  btn.textContent = "❚❚ Pause";
  T.timer = setInterval(() => {
    i = Math.min(n - 1, i + step);
    place(i);
    if (i >= n - 1) play();
  }, 50);
}

function timeline() {
  const box = clear(document.getElementById("timeline"));
  const tr = T.d.track;
  if (!tr.length) { box.append(el("p", {class: "muted", text: "no verified fix yet"})); return; }
  const t0 = tr[0][0], t1 = Math.max(tr[tr.length - 1][0], t0 + 1);
  const bar = el("div", {class: "bar"});
  const put = (t, cls, label, onclick) => {
    const x = Math.min(100, Math.max(0, 100 * (t - t0) / (t1 - t0)));
    const m = el("span", {class: "tick " + cls, title: utc(t) + " " + label, onclick});
    m.style.left = x + "%";
    bar.append(m);
  };
  for (const e of T.d.events) put(e.t_ms, e.kind === "seal" ? "seal" : "status", e.what);
  for (const a of T.d.alerts) put(a.t_ms, "alert " + a.severity, a.title, () => showAlert(a.gw, a.alert_id, load));
  const rows = el("ol", {class: "events"});
  const items = [...T.d.events.map((e) => ({t: e.t_ms, cls: e.kind, text: e.what + " (" + e.src + ")"})),
    ...T.d.alerts.map((a) => ({t: a.t_ms, cls: "alert " + a.severity, text: a.title + " — " + a.state}))]
    .sort((a, b) => a.t - b.t);
  for (const it of items.slice(-300)) rows.append(el("li", {class: it.cls}, el("span", {class: "mono", text: utc(it.t)}), " ", it.text));
  box.append(el("div", {class: "ends"}, el("span", {text: utc(t0)}), el("span", {text: utc(t1)})), bar, rows);
}

function actions() {
  const box = clear(document.getElementById("actions"));
  const msg = el("p", {class: "error"});
  if (can("supervise")) {
    const placeIn = el("input", {name: "place", placeholder: "office / checkpoint"});
    const note = el("input", {name: "step-note", placeholder: "note"});
    const step = (s) => async () => {
      try { await postJson("/api/trip/step", {plan_id: planId, step: s, place: placeIn.value, note: note.value}); await load(); }
      catch (e) { msg.textContent = e.message; }
    };
    box.append(el("div", {class: "group"}, placeIn, note),
      el("button", {type: "button", name: "released", text: "Seals checked, trip released", onclick: step("released")}),
      el("button", {type: "button", name: "inspected", text: "Inspected at checkpoint", onclick: step("inspected")}),
      el("button", {type: "button", name: "terminated", text: "Trip terminated", onclick: step("terminated")}));
  }
  box.append(el("a", {class: "button", href: "/api/evidence/trip?plan=" + encodeURIComponent(planId), text: "Evidence file"}),
    el("a", {class: "button", href: "/trip/print?plan=" + encodeURIComponent(planId), text: "Print report"}));
  if (can("act")) {
    box.append(el("button", {type: "button", name: "credential", text: "Issue trip credential", onclick: async () => {
      try { await download("/api/credential", {plan_id: planId}, "credential.json"); await load(); }
      catch (e) { msg.textContent = e.message; } }}));
  }
  box.append(msg);
}

async function load() {
  const d = T.d = await api("/api/trip?plan=" + encodeURIComponent(planId));
  const p = d.plan;
  document.getElementById("title").textContent = "Trip " + p.plan_id + (p.verified ? "" : " (plan NOT verified)");
  facts(document.getElementById("plan"), p.verified ? [
    ["declaration", p.declaration_ref], ["vehicle", p.vehicle], ["gateway", d.gw || "—"],
    ["containers", p.containers.map((c) => c.container_id + " (seals " + c.seal_ids.join(", ") + ")").join("; ")],
    ["from", p.departure_office], ["to", p.destination_office], ["deadline", utc(p.deadline_ms)],
    ["signed by", (p.signer || "").slice(0, 16) + "…"]] : [["plan", p.error || "not verified"]]);
  const s = d.summary || {};
  facts(document.getElementById("summary"), [
    ["departure", utc(s.departure_ms)], ["arrival", s.arrival_ms ? utc(s.arrival_ms) : "not yet"],
    ["duration", duration(s.duration_ms)], ["distance", s.distance_m !== undefined ? (s.distance_m / 1000).toFixed(2) + " km" : "—"],
    ["outside the corridor", s.outside_ms !== undefined ? duration(s.outside_ms) + ", at most " + s.max_outside_m + " m beyond its edge" : "—"],
    ["fixes", String(s.fixes || 0)]]);
  const al = clear(document.getElementById("alerts"));
  for (const a of d.alerts || []) {
    al.append(el("li", {class: "alert " + a.severity + " " + a.state, "data-alert": a.alert_id, onclick: () => showAlert(a.gw, a.alert_id, load)},
      el("span", {class: "badge " + a.severity, text: a.severity}), " ", el("b", {text: a.title}),
      el("div", {class: "meta", text: utc(a.t_ms) + " · " + a.state})));
  }
  const cu = clear(document.getElementById("custody"));
  for (const e of d.audit) cu.append(custodyItem(e));
  actions();
  draw();
  timeline();
}

function draw() {
  if (T.layer) T.layer.remove();
  T.layer = L.layerGroup().addTo(T.map);
  const line = drawPlan(T.map, T.d.geometry, T.layer);
  widen(T.layer);
  const tr = T.d.track || [];
  const bounds = line ? line.getBounds() : null;
  if (tr.length) {
    const pts = tr.map((p) => [p[1], p[2]]);
    const path = L.polyline(pts, {color: "#d84315", weight: 3, className: "track"}).addTo(T.layer);
    const every = Math.max(1, Math.floor(tr.length / 12));
    for (let i = every; i < tr.length - 1; i += every) arrow(tr[i], bearing(tr[i - 1], tr[i + 1])).addTo(T.layer);
    L.circleMarker(pts[0], {radius: 7, color: "#fff", weight: 2, fillColor: "#2e7d32", fillOpacity: 1})
      .bindTooltip(el("span", {text: "start " + utc(tr[0][0])})).addTo(T.layer);
    L.circleMarker(pts[pts.length - 1], {radius: 7, color: "#fff", weight: 2, fillColor: "#212121", fillOpacity: 1})
      .bindTooltip(el("span", {text: "end " + utc(tr[tr.length - 1][0])})).addTo(T.layer);
    for (const a of T.d.alerts) if (a.lat !== null) {
      L.circleMarker([a.lat, a.lon], {radius: 5, color: "#000", weight: 1, fillColor: SEVERITY_COLOURS[a.severity], fillOpacity: 0.9})
        .bindTooltip(el("span", {text: a.title})).on("click", () => showAlert(a.gw, a.alert_id, load)).addTo(T.layer);
    }
    T.marker = L.circleMarker(pts[0], {radius: 9, color: "#000", weight: 2, fillColor: "#ffeb3b", fillOpacity: 1, className: "playhead"}).addTo(T.layer);
    const slider = document.getElementById("slider");
    slider.max = String(tr.length - 1);
    place(0);
    const b = path.getBounds();
    if (bounds) b.extend(bounds);
    for (const a of T.d.alerts) if (a.lat !== null) b.extend([a.lat, a.lon]);
    T.map.fitBounds(b.pad(0.1), {maxZoom: 16});
  } else if (bounds) {
    T.map.fitBounds(bounds.pad(0.1));
  }
}

(async () => {
  await header("trip");
  T.map = await baseMap("map");
  document.getElementById("slider").addEventListener("input", (e) => place(Number(e.target.value)));
  document.getElementById("play").addEventListener("click", play);
  await load();
  document.body.dataset.ready = "1";
})();
