"""Officer sessions: log in, log out, and the check every page and API call goes through.

A session is a random 256-bit token in a cookie (HttpOnly, SameSite=Strict, Secure unless the
service is configured for loopback tests, ``__Host-`` prefixed when Secure); the store keeps
only its SHA-256, so a copy of the database opens no session. Each session has its own CSRF
token, which the page fetches from ``/api/me`` and sends back in the ``X-CSRF-Token`` header of
every state-changing request; a request without it (a form posted from another site, a
script that only has the cookie) is refused, on top of SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from customs.console.context import ConsoleContext
from customs.users import check_password

CSRF_HEADER = "x-csrf-token"
MAX_FIELD = 256


@dataclass(frozen=True)
class Officer:
    name: str
    role: str
    csrf: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ctx_of(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx


def officer_of(request: Request) -> Officer | None:
    ctx = ctx_of(request)
    token = request.cookies.get(ctx.cookie_name)
    if not token or len(token) > 128:
        return None
    row = ctx.store.session(token_hash(token))
    return Officer(row.officer, row.role, row.csrf) if row is not None else None


Endpoint = Callable[[Request], Any]


def page(endpoint: Callable[[Request, Officer], Response]) -> Callable[[Request], Response]:
    """A page: without a session, go to the login page."""
    def run(request: Request) -> Response:
        officer = officer_of(request)
        if officer is None:
            return RedirectResponse("/login", status_code=303)
        return endpoint(request, officer)
    return run


def api(endpoint: Callable[[Request, Officer], Response], *, write: bool = False
        ) -> Callable[[Request], Response]:
    """An API call: 401 without a session; for a write, 403 without the session's CSRF
    token (compared in constant time)."""
    def run(request: Request) -> Response:
        officer = officer_of(request)
        if officer is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        if write:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), officer.csrf.encode()):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        return endpoint(request, officer)
    return run


def api_async(endpoint: Callable[[Request, Officer], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        officer = await run_in_threadpool(officer_of, request)
        if officer is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return await endpoint(request, officer)
    return run


async def login(request: Request) -> Response:
    """POST /login (form: name, password): a new session, or back to the form."""
    ctx = ctx_of(request)
    raw = await request.body()  # a plain urlencoded form; no multipart parser needed
    form = urllib.parse.parse_qs(raw[:4096].decode("utf-8", "replace"), max_num_fields=10)
    name = (form.get("name") or [None])[0]
    password = (form.get("password") or [None])[0]
    if not isinstance(name, str) or not isinstance(password, str) or \
            len(name) > MAX_FIELD or len(password) > MAX_FIELD:
        return RedirectResponse("/login?failed=1", status_code=303)
    role = await run_in_threadpool(check_password, ctx.store, name, password)
    if role is None:
        return RedirectResponse("/login?failed=1", status_code=303)
    token = secrets.token_urlsafe(32)
    expires = int((time.time() + ctx.session_s) * 1000)
    await run_in_threadpool(ctx.store.add_session, token_hash(token), name,
                            secrets.token_urlsafe(32), expires)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(ctx.cookie_name, token, max_age=int(ctx.session_s), path="/",
                        secure=ctx.secure_cookie, httponly=True, samesite="strict")
    return response


def logout(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    token = request.cookies.get(ctx.cookie_name, "")
    ctx.store.end_session(token_hash(token))
    response = JSONResponse({"ok": True})
    response.delete_cookie(ctx.cookie_name, path="/", secure=ctx.secure_cookie, httponly=True,
                           samesite="strict")
    return response


def me(request: Request, officer: Officer) -> Response:
    ctx = ctx_of(request)
    return JSONResponse({"name": officer.name, "role": officer.role, "csrf": officer.csrf,
                         "audit_id": ctx.audit_id,
                         "officers": [o.name for o in ctx.store.officers()
                                      if o.disabled_ms is None and o.role != "auditor"]})
