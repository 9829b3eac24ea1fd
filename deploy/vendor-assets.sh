#!/usr/bin/env bash
# Refetch the console's third-party browser assets from the npm registry and copy the files the
# console serves into customs/console/static/vendor/ (committed: a customs install needs no npm).
#
#   deploy/vendor-assets.sh        # then review `git diff --stat customs/console/static/vendor`
#
# What ships, and why these files:
#   leaflet 1.9.4          dist/leaflet.js, leaflet.css, images/ (the map; no tile server used)
#   topojson-client 3.1.0  dist/topojson-client.min.js (world-atlas is TopoJSON; converted to
#                          GeoJSON once in the browser)
#   world-atlas 2.0.2      countries-50m.json (Natural Earth 1:50m borders and coastlines,
#                          ~750 kB). 1:110m (~100 kB) puts borders and coasts kilometres off,
#                          which is wrong at the zoom a transit corridor is watched at; 1:10m
#                          (3.6 MB) is over the package budget. Served with a long cache
#                          lifetime, so a browser loads it once.
# Each package's LICENSE is copied beside its files.
set -euo pipefail
cd "$(dirname "$0")/.."
LEAFLET=1.9.4
TOPOJSON=3.1.0
ATLAS=2.0.2
OUT=customs/console/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "leaflet@$LEAFLET" "topojson-client@$TOPOJSON" \
    "world-atlas@$ATLAS" >/dev/null)
for pkg in "leaflet-$LEAFLET" "topojson-client-$TOPOJSON" "world-atlas-$ATLAS"; do
    mkdir -p "$work/$pkg"
    tar xzf "$work/$pkg.tgz" -C "$work/$pkg"
done

rm -rf "$OUT"
mkdir -p "$OUT/leaflet/images" "$OUT/topojson-client" "$OUT/world-atlas"
cp "$work/leaflet-$LEAFLET/package/dist/leaflet.js" "$work/leaflet-$LEAFLET/package/dist/leaflet.css" \
   "$work/leaflet-$LEAFLET/package/LICENSE" "$OUT/leaflet/"
cp "$work/leaflet-$LEAFLET/package/dist/images/"*.png "$OUT/leaflet/images/"
cp "$work/topojson-client-$TOPOJSON/package/dist/topojson-client.min.js" \
   "$work/topojson-client-$TOPOJSON/package/LICENSE" "$OUT/topojson-client/"
cp "$work/world-atlas-$ATLAS/package/countries-50m.json" \
   "$work/world-atlas-$ATLAS/package/LICENSE" "$OUT/world-atlas/"
cat > "$OUT/VERSIONS" <<TXT
leaflet $LEAFLET
topojson-client $TOPOJSON
world-atlas $ATLAS (countries-50m.json; Natural Earth data, public domain)
TXT
du -sh "$OUT"
