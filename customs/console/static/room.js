"use strict";
// The control room: every active trip on the map, the alert queue beside it, both kept live by
// the server's event stream (no polling).
const R = {map: null, vehicles: new Map(), alerts: new Map(), alertMarks: null, plans: null,
  trips: new Map(), stream: null, connected: false};
const SEV = {critical: 0, warning: 1, info: 2};

function queueOrder(a, b) {
  const ra = a.state === "resolved" ? 1 : 0, rb = b.state === "resolved" ? 1 : 0;
  if (ra !== rb) return ra - rb;
  if (SEV[a.severity] !== SEV[b.severity]) return (SEV[a.severity] ?? 3) - (SEV[b.severity] ?? 3);
  return b.t_ms - a.t_ms || (a.gw < b.gw ? -1 : a.gw > b.gw ? 1 : b.seq - a.seq);
}

function filters() {
  const f = new FormData(document.getElementById("filters"));
  const out = {};
  for (const [k, v] of f.entries()) if (v) out[k] = v.trim();
  return out;
}

function matches(a, f) {
  return (!f.state || a.state === f.state) && (!f.severity || a.severity === f.severity) &&
    (!f.type || a.type === f.type) && (!f.gw || a.gw === f.gw) && (!f.plan || a.plan_id === f.plan);
}

function renderQueue() {
  const f = filters();
  const list = [...R.alerts.values()].filter((a) => matches(a, f)).sort(queueOrder).slice(0, 300);
  const q = clear(document.getElementById("queue"));
  for (const a of list) {
    q.append(el("li", {class: "alert " + a.severity + " " + a.state, "data-alert": a.alert_id,
        "data-gw": a.gw, tabindex: "0", onclick: () => openAlert(a)},
      el("span", {class: "badge " + a.severity, text: a.severity}), " ",
      el("b", {class: "title", text: a.title}),
      el("div", {class: "sentence", text: a.sentence}),
      el("div", {class: "meta"}, el("span", {text: utc(a.t_ms)}), " · ",
        el("span", {class: "gw", text: a.gw}), a.plan_id ? " · " : "", a.plan_id ? el("span", {text: a.plan_id}) : "",
        " · ", el("span", {class: "state", text: a.state + (a.assignee ? " → " + a.assignee : "")}))));
  }
  document.getElementById("count").textContent = "(" + list.length + ")";
}

function markAlert(a) {
  if (a.lat === null || a.lat === undefined) return;
  const old = R.alertMarks.get(a.gw + "/" + a.alert_id);
  if (old) old.remove();
  if (a.state === "resolved") return;
  const m = L.circleMarker([a.lat, a.lon], {radius: 5, color: "#000", weight: 1,
    fillColor: SEVERITY_COLOURS[a.severity] || "#555", fillOpacity: 0.9, className: "alertmark"});
  m.bindTooltip(() => el("span", {text: a.title + " — " + a.gw}));
  m.on("click", () => openAlert(a));
  m.addTo(R.map);
  R.alertMarks.set(a.gw + "/" + a.alert_id, m);
}

function upsertAlert(a) {
  R.alerts.set(a.gw + "/" + a.alert_id, a);
  markAlert(a);
}

function vehicleTip(v) {
  const t = R.trips.get(v.gw);
  return el("span", {}, el("b", {text: (t && t.plan.vehicle) || v.gw}), " ",
    el("span", {text: "(" + v.gw + ") " + STATE_WORDS[v.state] + (v.open ? ", " + v.open + " open alert(s)" : "") +
      (v.fix_ms ? ", fix " + utc(v.fix_ms) : "")}));
}

function upsertVehicle(v) {
  const old = R.vehicles.get(v.gw);
  const merged = Object.assign({}, old ? old.data : {}, v);
  if (merged.lat === null || merged.lat === undefined) { R.vehicles.set(v.gw, {data: merged, marker: old && old.marker}); return; }
  let marker = old && old.marker;
  const style = {radius: 8, color: "#fff", weight: 2, fillColor: STATE_COLOURS[merged.state] || "#333", fillOpacity: 1};
  if (!marker) {
    marker = L.circleMarker([merged.lat, merged.lon], Object.assign({className: "vehicle"}, style)).addTo(R.map);
    marker.on("click", () => {
      const t = R.trips.get(merged.gw);
      if (t) location.href = "/trip?plan=" + encodeURIComponent(t.plan.plan_id);
    });
  } else {
    marker.setLatLng([merged.lat, merged.lon]);
    marker.setStyle(style);
  }
  marker.bindTooltip(() => vehicleTip(R.vehicles.get(v.gw).data));
  R.vehicles.set(v.gw, {data: merged, marker});
  document.getElementById("map").dataset["v_" + v.gw.replace(/[^A-Za-z0-9]/g, "_")] = merged.state;
}

async function openAlert(a) {
  for (const li of document.querySelectorAll("#queue li.selected")) li.classList.remove("selected");
  await showAlert(a.gw, a.alert_id, (updated) => { upsertAlert(updated); renderQueue(); },
    (x) => R.map.setView([x.lat, x.lon], Math.max(R.map.getZoom(), 13)));
}

function legend() {
  const box = clear(document.getElementById("legend"));
  for (const [k, words] of Object.entries(STATE_WORDS)) {
    box.append(el("span", {class: "key"}, el("i", {class: "dot " + k}), " " + words));
  }
  box.append(el("span", {class: "key"}, el("i", {class: "line"}), " corridor"));
}

async function snapshot(fit) {
  const [ov, q] = await Promise.all([api("/api/overview"), api("/api/alerts?limit=500")]);
  R.plans.clearLayers();
  R.plans.buffers = [];
  R.trips.clear();
  const bounds = [];
  const zones = [];
  for (const t of ov.trips) {
    if (!t.active) continue;
    if (t.gw) R.trips.set(t.gw, t);
    const line = drawPlan(R.map, t.geometry, R.plans, zones);
    if (line) bounds.push(line.getBounds());
  }
  zoneLayers(zones, R.plans);
  for (const v of ov.vehicles) upsertVehicle(v);
  for (const v of ov.vehicles) if (v.lat !== null) bounds.push(L.latLngBounds([[v.lat, v.lon], [v.lat, v.lon]]));
  R.alerts.clear();
  for (const m of R.alertMarks.values()) m.remove();
  R.alertMarks.clear();
  for (const a of q.alerts) upsertAlert(a);
  renderQueue();
  if (fit && bounds.length) {
    const all = bounds.reduce((acc, b) => acc.extend(b), L.latLngBounds(bounds[0].getSouthWest(), bounds[0].getNorthEast()));
    R.map.fitBounds(all.pad(0.15), {maxZoom: 15});
  }
  widen(R.plans);
  document.body.dataset.trips = String(ov.trips.length);
}

function listen() {
  const live = document.getElementById("live");
  R.stream = new EventSource("/api/events");
  R.stream.addEventListener("hello", () => {
    live.textContent = "live"; live.className = "live on";
    if (R.connected) snapshot(false); // a reconnect: what happened meanwhile
    R.connected = true;
  });
  R.stream.addEventListener("change", (ev) => {
    const d = JSON.parse(ev.data);
    for (const a of d.alerts) upsertAlert(a);
    for (const v of d.vehicles) upsertVehicle(v);
    for (const p of d.positions) upsertVehicle(p);
    if (d.alerts.length) renderQueue();
    const open = document.getElementById("detail");
    if (!open.hidden && d.alerts.some((a) => a.alert_id === open.dataset.alert)) {
      const a = d.alerts.find((x) => x.alert_id === open.dataset.alert);
      showAlert(a.gw, a.alert_id, (u) => { upsertAlert(u); renderQueue(); });
    }
  });
  R.stream.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
}

(async () => {
  await header("room");
  R.map = await baseMap("map");
  R.plans = L.layerGroup().addTo(R.map);
  R.alertMarks = new Map();
  legend();
  document.getElementById("filters").addEventListener("input", renderQueue);
  await snapshot(true);
  listen();
  document.body.dataset.ready = "1";
})();
