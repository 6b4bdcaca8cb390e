"""The HTTP API: an APIFlask app factory with one blueprint per resource."""

from __future__ import annotations

from apiflask import APIFlask


def create_app(test_config: dict | None = None) -> APIFlask:
    app = APIFlask(__name__, title="pgrecs", version="0.1.0", spec_path="/openapi.json", docs_path="/docs")
    app.config.from_mapping(DATABASE_URL=None, TENANT="default")
    if test_config:
        app.config.from_mapping(test_config)

    from app.api import database

    database.init_app(app)

    from app.api import health

    app.register_blueprint(health.bp)
    return app
