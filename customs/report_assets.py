"""The fixed parts of the trip report page: stylesheet and the small hover script.

Kept out of ``report`` so the page logic reads without 150 lines of CSS in the middle. Both are
inlined into the page: the report must open from a USB stick on an office PC with no network,
so nothing is fetched (the page's Content-Security-Policy forbids it as well).
"""

from __future__ import annotations

SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
ROLE_STYLES = {  # fill, stroke, label
    "customs_office": ("#2e7d32", "#1b5e20", "customs office"),
    "authorized_stop": ("#1e88e5", "#0d47a1", "authorized stop"),
    "forbidden": ("#e53935", "#b71c1c", "forbidden area"),
    "port_area": ("#757575", "#424242", "port area"),
}

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
.meta { color: #555; margin: 0 0 1em; }
.meta td { padding: 0 1.2em 0 0; vertical-align: top; }
.banner { padding: .5em .8em; border-radius: 4px; margin: .6em 0; }
.banner.warn { background: #fff3e0; border: 1px solid #ef6c00; }
.banner.ok { background: #e8f5e9; border: 1px solid #2e7d32; }
#map { width: 100%; max-width: 1100px; height: auto; border: 1px solid #bbb;
       background: #fafaf7; display: block; }
.corridor { fill: #fff59d; fill-opacity: .55; stroke: #f9a825; stroke-width: 1.2; }
.corridor-line { fill: none; stroke: #f57f17; stroke-width: 1.2; stroke-dasharray: 6 4; }
.zone { fill-opacity: .28; stroke-width: 1.5; }
.track { fill: none; stroke: #37474f; stroke-width: 2.2; stroke-linejoin: round;
         stroke-linecap: round; }
.track-end { stroke: #fff; stroke-width: 1.5; }
.alert-marker circle { stroke: #fff; stroke-width: 2; cursor: pointer; }
.alert-marker.hl circle, .alert-marker:hover circle { stroke: #000; stroke-width: 3; }
.marker-label { font: bold 12px system-ui, sans-serif; fill: #222; paint-order: stroke;
                stroke: #fff; stroke-width: 3px; pointer-events: none; }
.scale line { stroke: #222; stroke-width: 2; }
.scale text, .north text { font: 12px system-ui, sans-serif; fill: #222; }
table.data { border-collapse: collapse; margin-top: .4em; }
table.data th, table.data td { border: 1px solid #ccc; padding: .25em .6em; text-align: left;
                               vertical-align: top; }
table.data th { background: #eee; }
tr.hl td { background: #fff8c4; }
td.sev-critical { color: #c62828; font-weight: 600; }
td.sev-warning { color: #ef6c00; font-weight: 600; }
td.verification.verified { color: #2e7d32; }
td.verification.quarantined { color: #c62828; font-weight: 600; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: 1em; height: 1em; vertical-align: -2px;
            margin-right: .3em; border: 1px solid #555; }
.small { font-size: .85em; color: #666; }
code { font-size: .9em; }
"""

SCRIPT = """
(function () {
  var rows = {}, marks = {};
  document.querySelectorAll('tr.alert-row').forEach(function (r) {
    rows[r.dataset.alertId] = r; });
  document.querySelectorAll('.alert-marker').forEach(function (m) {
    marks[m.dataset.alertId] = m; });
  function hl(id, on) {
    if (rows[id]) rows[id].classList.toggle('hl', on);
    if (marks[id]) marks[id].classList.toggle('hl', on);
  }
  Object.keys(marks).forEach(function (id) {
    var m = marks[id];
    m.addEventListener('mouseenter', function () { hl(id, true); });
    m.addEventListener('mouseleave', function () { hl(id, false); });
    m.addEventListener('click', function () {
      if (rows[id]) rows[id].scrollIntoView({block: 'center'}); });
  });
  Object.keys(rows).forEach(function (id) {
    var r = rows[id];
    r.addEventListener('mouseenter', function () { hl(id, true); });
    r.addEventListener('mouseleave', function () { hl(id, false); });
  });
  // What the browser actually drew: bounding boxes of the main layers, for a quick check.
  var svg = document.getElementById('map'), out = {};
  ['corridor-buffer', 'zones', 'tracks', 'alerts'].forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) return;
    var b = el.getBBox();
    out[id] = [Math.round(b.x), Math.round(b.y), Math.round(b.width), Math.round(b.height)];
  });
  svg.setAttribute('data-rendered', JSON.stringify(out));
  document.body.setAttribute('data-ready', '1');
})();
"""
