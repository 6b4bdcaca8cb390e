"""The HTTP API: an APIFlask app factory with one blueprint per resource.

Cross-cutting pieces are installed first, in this order: request ids, JSON logs and metrics
(observability), problem+json errors, request limits, API key authentication (which sets the
request's tenant for row-level security). See app/api/auth.py for the scopes.
"""

from __future__ import annotations

from apiflask import APIFlask

from pgrecs.config import Settings, settings as process_settings


def create_app(test_config: dict | None = None, settings: Settings | None = None) -> APIFlask:
    """The API. Its Flask config is `settings` (default: the process's, from the environment; see
    pgrecs.config), with `test_config` on top."""
    app = APIFlask(__name__, title="pgrecs", version="0.1.0", spec_path="/openapi.json", docs_path="/docs")
    app.config.from_mapping((settings or process_settings()).flask_config())
    if test_config:
        app.config.from_mapping(test_config)

    from pgrecs.api import auth, database, errors, limits, observability

    database.init_app(app)
    observability.init_app(app)
    errors.init_app(app)
    limits.init_app(app)
    auth.init_app(app)
    app.spec_callback = _document_security

    from pgrecs.api import health

    app.register_blueprint(health.bp)

    from pgrecs.api import items, search

    app.register_blueprint(items.bp)
    app.register_blueprint(search.bp)

    from pgrecs.api import events, recommendations

    app.register_blueprint(recommendations.bp)
    app.register_blueprint(events.bp)

    from pgrecs import console

    console.init_app(app)
    return app


def _document_security(spec: dict) -> dict:
    """Every operation needs the API key except the public ones; document 401/403/413 as problem+json."""
    from pgrecs.api.auth import SCHEME_NAME
    from pgrecs.api.errors import PROBLEM_JSON, PROBLEM_SCHEMA

    spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    spec["security"] = [{SCHEME_NAME: []}]
    ref = {"$ref": "#/components/schemas/Problem"}
    public = {"/healthz", "/readyz"}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            responses = operation.setdefault("responses", {})
            if path in public:
                operation["security"] = []
                continue
            responses.setdefault("401", {"description": "Missing, invalid or revoked API key",
                                         "content": {PROBLEM_JSON: {"schema": ref}}})
            responses.setdefault("403", {"description": "The API key lacks the scope",
                                         "content": {PROBLEM_JSON: {"schema": ref}}})
            if method in ("put", "post", "patch"):
                responses.setdefault("413", {"description": "Request body too large",
                                             "content": {PROBLEM_JSON: {"schema": ref}}})
    from pgrecs.api.schemas import complete_spec

    return complete_spec(spec)
