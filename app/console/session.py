"""Console sign-in: an API key (merchant or admin scope) exchanged for a server-side session.

- Login posts the key once; pgrecs.console_session_start checks it (active, merchant or admin
  scope) and stores the sha256 of a new random session token (256 bits) with the key id and
  tenant. The browser keeps the token in an HttpOnly, SameSite=Strict cookie limited to /console,
  Secure when the request came over TLS (directly, or X-Forwarded-Proto: https from a proxy).
- Every console request looks the session up in the statement that also sets the request's
  tenant (pgrecs.api.database.checkout_for_session): row-level security then scopes every query
  to the key's tenant, exactly as for the API. A session idle for longer than
  CONSOLE_IDLE_MINUTES, or whose key was revoked or lost its scope, is refused from the next
  request on.
- CSRF: every POST carries a token. Signed in, it is an HMAC of the session token (bound to the
  session, never stored, unknown to other sites); on the login form, a random value also set in a
  SameSite=Strict cookie (double submit). A POST without the right token is refused with 400.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, url_for

COOKIE = "pgrecs_console"
LOGIN_COOKIE = "pgrecs_console_login"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
_TOKEN_CHARS = 43  # secrets.token_urlsafe(32)


def token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def idle_interval() -> str:
    return f"{int(current_app.config['CONSOLE_IDLE_MINUTES']) * 60} seconds"


def _well_formed(token: str) -> bool:
    return len(token) == _TOKEN_CHARS and token.isascii() and all(c.isalnum() or c in "-_" for c in token)


def is_secure_request() -> bool:
    """TLS to this server, or to the proxy in front of it (a client spoofing the header only makes
    its own cookie Secure); always, when CONSOLE_SECURE_COOKIES says so."""
    if current_app.config["CONSOLE_SECURE_COOKIES"] == "always":
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def set_cookie(response, name: str, value: str) -> None:
    response.set_cookie(name, value, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=is_secure_request())


def clear_cookie(response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=is_secure_request())


def csrf_token() -> str:
    """The token every console form posts back (templates: {{ csrf_token() }})."""
    if "console_token" in g:
        return hmac.new(g.console_token.encode("ascii"), b"pgrecs-console-csrf", hashlib.sha256).hexdigest()
    return g.get("login_csrf", "")


def login_csrf() -> str:
    """The login form's token: the one in the login cookie, or a new one (set by the view)."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    g.login_csrf = current if _well_formed(current) else secrets.token_urlsafe(32)
    return g.login_csrf


def check_csrf() -> None:
    sent = request.form.get(CSRF_FIELD, "")
    if "console_token" in g:
        expected = csrf_token()
    else:
        expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, description="This form has expired or lacks its security token: reload the page and try again.")


def safe_next(target: str | None) -> str | None:
    """A path inside the console to go back to after login (never another site)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(COOKIE_PATH) or target.startswith("//"):
        return None
    return target


def require_session():
    """before_request of the console: the session, its tenant and key, or the login page."""
    if request.endpoint in ("console.login", "console.static"):
        if request.method == "POST":
            check_csrf()
        return None
    from pgrecs.api.database import checkout_for_session

    token = request.cookies.get(COOKIE, "")
    row = checkout_for_session(token_sha256(token), idle_interval()) if _well_formed(token) else None
    if row is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        response = redirect(url_for("console.login", next=safe_next(target)))
        if token:
            clear_cookie(response, COOKIE)
        return response
    g.api_key_id, g.tenant, g.scopes, g.key_name = row[0], row[1], frozenset(row[2]), row[3]
    g.console_token = token
    if request.method == "POST":
        check_csrf()
    return None


def actor() -> str:
    """Who the audit trail names for a change made in this request."""
    name = g.get("key_name") or "unnamed key"
    return f"console: {name} (key {g.api_key_id})"
