"use strict";
// A Leaflet map with no tile server: Natural Earth 1:50m countries (world-atlas, shipped with
// the console) converted from TopoJSON in the browser, drawn as land and borders.
let WORLD = null;

async function baseMap(id, options) {
  const map = L.map(id, Object.assign({preferCanvas: true, worldCopyJump: true,
    zoomSnap: 0.25, attributionControl: true}, options || {}));
  map.attributionControl.setPrefix(false);
  map.attributionControl.addAttribution("Natural Earth (1:50m)");
  map.getContainer().classList.add("sea");
  map.setView([0, 0], 2);
  L.control.scale({imperial: false}).addTo(map);
  if (!WORLD) {
    const r = await fetch("/static/vendor/world-atlas/countries-50m.json");
    const topo = await r.json();
    WORLD = {
      land: topojson.feature(topo, topo.objects.land || topo.objects.countries),
      borders: topojson.mesh(topo, topo.objects.countries, (a, b) => a !== b),
    };
  }
  const renderer = L.canvas({padding: 0.5});
  L.geoJSON(WORLD.land, {renderer, interactive: false,
    style: {color: "#9e9e8e", weight: 0.8, fillColor: "#f3f1e8", fillOpacity: 1}}).addTo(map);
  L.geoJSON(WORLD.borders, {renderer, interactive: false,
    style: {color: "#8d8d80", weight: 1, dashArray: "4 3", fill: false}}).addTo(map);
  map.getContainer().dataset.basemap = "ready";
  return map;
}

function drawPlan(map, geometry, group) {
  if (!geometry) return null;
  const c = geometry.corridor;
  const line = L.polyline(c.line, {color: "#1565c0", weight: 2, opacity: 0.9});
  const buffer = L.polyline(c.line, {color: "#90caf9", opacity: 0.35, lineCap: "round",
    lineJoin: "round", weight: 6, className: "corridor"});
  group.addLayer(buffer); group.addLayer(line);
  const widen = () => { // the buffer's width is metres on the ground: scale with zoom
    const lat = c.line[0][0];
    const mpp = 40075016.686 * Math.cos(lat * Math.PI / 180) / Math.pow(2, map.getZoom() + 8);
    buffer.setStyle({weight: Math.max(2, 2 * c.width_m / mpp)});
  };
  map.on("zoomend", widen); widen();
  for (const f of geometry.zones || []) {
    const role = (f.properties || {}).role;
    const colour = ROLE_COLOURS[role] || "#555";
    let layer;
    if (f.geometry && f.geometry.type === "Point") {
      const [lon, lat] = f.geometry.coordinates;
      layer = L.circle([lat, lon], {radius: (f.properties || {}).radius_m || 50, color: colour,
        weight: 1, fillOpacity: 0.15});
    } else {
      layer = L.geoJSON(f, {style: {color: colour, weight: 1, fillOpacity: 0.15}});
    }
    layer.bindTooltip(el("span", {text: String((f.properties || {}).name || (f.properties || {}).id || role || "zone")}));
    group.addLayer(layer);
  }
  return line;
}
