"""The monitoring centre's web console: Starlette app, officer sessions, live map and queue.

``create_app(ConsoleContext)`` (app.py) is served by ``customs.serve`` under uvicorn beside the
receiver. Everything a browser gets comes from this package: pages and scripts in ``static/``,
Leaflet and the Natural Earth base map in ``static/vendor/`` (refetched by
deploy/vendor-assets.sh); nothing is loaded from anywhere else.
"""
