"""Who may use the HTTP endpoints: one bearer-token rule for WHIP and the live view.

The token (``http.token`` or ``http.token_file``) is optional on loopback and required by the
config when the server is bound beyond it; when set, every WHIP request and every live-view
request must prove it. A browser cannot put a header on a page load or a WebSocket, so the view
also accepts a cookie derived from the token (never the token itself), set by ``/?token=...``.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web

from ..config import HttpConfig

VIEW_COOKIE = "edge_vla_view"


def token_ok(given: str, token: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def bearer_ok(request: web.Request, token: str) -> bool:
    got = request.headers.get("Authorization", "")
    return got.startswith("Bearer ") and token_ok(got[7:], token)


def authorized(request: web.Request, cfg: HttpConfig) -> bool:
    """Open when no token is configured; else the right ``Authorization: Bearer`` header."""
    token = cfg.bearer_token()
    return token is None or bearer_ok(request, token)


def view_cookie_value(token: str) -> str:
    # a keyed digest, so the cookie in a browser profile does not reveal the token that WHIP accepts
    return hmac.new(token.encode(), b"edge-vla live view v1", hashlib.sha256).hexdigest()


def view_authorized(request: web.Request, cfg: HttpConfig) -> bool:
    """The WHIP rule, or the view cookie that ``/?token=`` hands out."""
    token = cfg.bearer_token()
    if token is None or bearer_ok(request, token):
        return True
    cookie = request.cookies.get(VIEW_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), view_cookie_value(token).encode())


def same_origin(request: web.Request) -> bool:
    """A browser's request from a page on this server (or no browser at all: no Origin header).

    Browsers let any site open a WebSocket to 127.0.0.1; without this check a page on the open web
    could watch an open (loopback, no token) daemon or set its goals.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()
