"""The console's Starlette application: routes, security headers, static files.

Every page and API call needs an officer's session (auth.py); state changes need the
session's CSRF token too, and the officer's role (customs.audit.ACTIONS). Every response
carries a Content-Security-Policy that allows scripts, styles, images and connections from
this origin only and no inline script: all data on the pages comes from gateways, and if
anything ever slipped past the escaping (pages build their DOM with textContent), the browser
still would not run it, nor fetch from anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from customs.console import api_alerts, api_records, api_trips, auth
from customs.console.auth import CSRF_HEADER, Officer, ctx_of, officer_of
from customs.console.context import ConsoleContext

STATIC = Path(str(resources.files("customs.console") / "static"))
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin"),
           (b"permissions-policy", b"geolocation=(), camera=(), microphone=()")]


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so the event stream is never buffered."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {h[0] for h in headers}
                headers += [h for h in HEADERS if h[0] not in names]
                if not scope["path"].startswith("/static/vendor/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def html(name: str) -> Callable[[Request, Officer], Response]:
    def show(request: Request, officer: Officer) -> Response:
        return FileResponse(STATIC / name, media_type="text/html")
    return show


def no_icon(request: Request) -> Response:
    return Response(status_code=204)


def login_page(request: Request) -> Response:
    return FileResponse(STATIC / "login.html", media_type="text/html")


def json_write(handler: Callable[[Request, Officer, dict[str, Any]], Response]
               ) -> Callable[[Request], Awaitable[Response]]:
    """A state change: session, CSRF token, a small JSON object; the work on the pool."""
    async def run(request: Request) -> Response:
        officer = await run_in_threadpool(officer_of, request)
        if officer is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        import hmac

        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), officer.csrf.encode()):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        raw = await request.body()
        try:
            doc = json.loads(raw) if len(raw) <= 16 * 1024 else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        return await run_in_threadpool(handler, request, officer, doc)
    return run


async def events(request: Request, officer: Officer) -> Response:
    feed = ctx_of(request).feed
    return StreamingResponse(feed.stream(request.is_disconnected),
                             media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


def create_app(ctx: ConsoleContext) -> Starlette:
    page, api = auth.page, auth.api
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/favicon.ico", no_icon),
        Route("/login", auth.login, methods=["POST"]),
        Route("/logout", json_write(lambda r, o, d: auth.logout(r, o)), methods=["POST"]),
        Route("/", page(html("index.html"))),
        Route("/trip", page(html("trip.html"))),
        Route("/trip/print", page(html("print.html"))),
        Route("/audit", page(html("audit.html"))),
        Route("/api/me", api(auth.me)),
        Route("/api/overview", api(api_alerts.get_overview)),
        Route("/api/alerts", api(api_alerts.list_alerts)),
        Route("/api/alert", api(api_alerts.get_alert)),
        Route("/api/alert/action", json_write(api_alerts.act_on_alert), methods=["POST"]),
        Route("/api/trip", api(api_trips.get_trip)),
        Route("/api/trip/step", json_write(api_trips.trip_step), methods=["POST"]),
        Route("/api/evidence/alert", api(api_records.alert_evidence)),
        Route("/api/evidence/trip", api(api_records.trip_evidence)),
        Route("/api/credential", json_write(api_records.issue_credential), methods=["POST"]),
        Route("/api/audit", api(api_records.audit_log)),
        Route("/api/events", auth.api_async(events)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.ctx = ctx
    return app
