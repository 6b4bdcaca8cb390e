"""API keys: `X-API-Key` on every request but health and the API description; scopes per endpoint.

A key is `pgr_` + 43 url-safe characters (256 random bits). Postgres stores only its sha256
(pgrecs.api_keys), with the tenant and scopes. The API's database role cannot read that table: it
asks the SECURITY DEFINER function pgrecs.api_key_lookup(sha256), which returns the active key's
tenant and scopes, and the same statement sets pgrecs.tenant for the rest of the request, so
row-level security scopes every later query to the key's tenant. That statement is the first on
the request's pooled connection (pgrecs.api.database.checkout_for_key): one round trip, no cache,
so a revoked key is refused from the next request on.

Scopes: read (recommendations, similar items, search), write (events, items), admin (keys,
placements, metrics), merchant (the merchant console; admin keys may log in too). A route may
declare its scope with @require_scope; otherwise it is found from its blueprint and method below,
and any route not listed needs admin (fail closed). The console authenticates by its own session
cookie (pgrecs.console.session), not by this header.
"""

from __future__ import annotations

from collections.abc import Callable

from apiflask import abort
from flask import current_app, g, request

from pgrecs.api_keys import PREFIX, SCOPES, key_sha256

HEADER = "X-API-Key"
SCHEME_NAME = "ApiKeyAuth"
SECURITY_SCHEME = {"type": "apiKey", "in": "header", "name": HEADER,
                   "description": "An API key from `pgrecs keys create --tenant T --scopes read,write`."}

# Reachable without a key: liveness/readiness for orchestrators, and the API description itself.
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "openapi.spec", "openapi.docs", "openapi.swagger_ui_static",
                    "openapi.redoc", "static", "home.landing", "home.docs_asset"}

# Blueprints that authenticate each request themselves (the console: a session cookie).
SESSION_BLUEPRINTS = {"console"}

# blueprint -> scope by method (None: any method); "*" is the method wildcard.
BLUEPRINT_SCOPES: dict[str, dict[str, str]] = {
    "items": {"GET": "read", "HEAD": "read", "*": "write"},
    "search": {"*": "read"},
    "recommendations": {"*": "read"},  # POST /recommendations reads too
    "events": {"GET": "read", "HEAD": "read", "*": "write"},
}


def require_scope(scope: str) -> Callable:
    """Declare the scope a view needs (overrides the blueprint default)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view):
        view._pgrecs_scope = scope
        return view

    return decorate


def scope_for(endpoint: str | None, method: str) -> str | None:
    """The scope a request needs; None for an unrouted request (404/405 come after the key check)."""
    if endpoint is None:
        return None
    view = current_app.view_functions.get(endpoint)
    declared = getattr(view, "_pgrecs_scope", None)
    if declared:
        return declared
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else ""
    by_method = BLUEPRINT_SCOPES.get(blueprint)
    if by_method is None:
        return "admin"
    return by_method.get(method, by_method.get("*", "admin"))


def _problem(status: int, message: str):
    abort(status, message=message)


def authenticate() -> None:
    """before_request: resolve the key to (key id, tenant, scopes) and set the tenant; 401/403 otherwise."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS" or request.blueprint in SESSION_BLUEPRINTS:
        return
    key = request.headers.get(HEADER, "")
    if not key:
        _problem(401, f"missing {HEADER} header")
    if len(key) > 200 or not key.isascii() or not key.startswith(PREFIX):
        _problem(401, "invalid API key")
    from pgrecs.api.database import checkout_for_key

    # one round trip: borrows the request's connection, looks the key up, sets its tenant
    row = checkout_for_key(key_sha256(key))
    if row is None:
        _problem(401, "invalid or revoked API key")
    g.api_key_id, g.tenant, g.scopes = row[0], row[1], frozenset(row[2])
    needed = scope_for(request.endpoint, request.method)
    if needed is not None and needed not in g.scopes:
        _problem(403, f"this API key lacks the {needed!r} scope")


def init_app(app) -> None:
    app.config["SECURITY_SCHEMES"] = {**(app.config.get("SECURITY_SCHEMES") or {}), SCHEME_NAME: SECURITY_SCHEME}
    app.before_request(authenticate)
