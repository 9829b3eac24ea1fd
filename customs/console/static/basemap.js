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

function zoneName(f) {
  const p = f.properties || {};
  return el("span", {text: String(p.name || p.id || p.role || "zone")});
}

function zoneLayers(features, group) {
  // polygons of every plan in one layer (a thousand trips draw fast), circles one by one
  const polygons = [];
  for (const f of features) {
    const p = f.properties || {};
    if (f.geometry && f.geometry.type === "Point") {
      const [lon, lat] = f.geometry.coordinates;
      group.addLayer(L.circle([lat, lon], {radius: p.radius_m || 50, color: ROLE_COLOURS[p.role] || "#555",
        weight: 1, fillOpacity: 0.15}).bindTooltip(() => zoneName(f)));
    } else if (f.geometry) {
      polygons.push(f);
    }
  }
  if (polygons.length) {
    group.addLayer(L.geoJSON({type: "FeatureCollection", features: polygons}, {
      style: (f) => ({color: ROLE_COLOURS[(f.properties || {}).role] || "#555", weight: 1, fillOpacity: 0.15}),
      onEachFeature: (f, layer) => layer.bindTooltip(() => zoneName(f))}));
  }
}

function drawPlan(map, geometry, group, zones) {
  // zones: an array to collect the plan's zones into (drawn later, together), else drawn now
  if (!geometry) return null;
  const c = geometry.corridor;
  const line = L.polyline(c.line, {color: "#1565c0", weight: 2, opacity: 0.9});
  const buffer = L.polyline(c.line, {color: "#90caf9", opacity: 0.35, lineCap: "round",
    lineJoin: "round", weight: 6, className: "corridor", interactive: false});
  group.addLayer(buffer); group.addLayer(line);
  buffer.widthM = c.width_m;
  buffer.lat = c.line[0][0];
  (group.buffers = group.buffers || []).push(buffer);
  if (!group.widen) { // a buffer's width is metres on the ground: scale with the zoom
    group.widen = () => {
      for (const b of group.buffers) {
        const mpp = 40075016.686 * Math.cos(b.lat * Math.PI / 180) / Math.pow(2, map.getZoom() + 8);
        b.setStyle({weight: Math.max(2, 2 * b.widthM / mpp)});
      }
    };
    map.on("zoomend", group.widen);
  }
  if (zones) zones.push(...(geometry.zones || []));
  else zoneLayers(geometry.zones || [], group);
  return line;
}

function widen(group) { if (group.widen) group.widen(); }
