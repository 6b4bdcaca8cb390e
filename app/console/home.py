"""GET / (what this server is, with links) and the Swagger UI assets of /docs, served from the
swagger-ui-py package (Swagger UI 5, which renders OpenAPI 3.1) so the API documentation works
offline: no CDN URL is ever emitted."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, render_template, send_from_directory

bp = Blueprint("home", __name__, template_folder="templates", static_folder=None)
bp.enable_openapi = False  # HTML and assets: not part of the API description
DOCS_ASSETS = "/docs/assets"


def _swagger_dir() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).resolve().parent / "static"


@bp.get("/")
def landing():
    from pgrecs.console.views import secure_headers
    from flask import make_response

    return secure_headers(make_response(render_template("console/landing.html")))


@bp.get(f"{DOCS_ASSETS}/<path:filename>")
def docs_asset(filename: str):
    return send_from_directory(_swagger_dir(), filename, max_age=86400)


def init_app(app) -> None:
    """Point apiflask's Swagger UI page at the packaged assets (apiflask's defaults are CDN URLs)."""
    app.config.update(
        SWAGGER_UI_CSS=f"{DOCS_ASSETS}/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        DOCS_FAVICON=f"{DOCS_ASSETS}/favicon-32x32.png",
        # no badge fetched from the public validator
        SWAGGER_UI_CONFIG={**(app.config.get("SWAGGER_UI_CONFIG") or {}), "validatorUrl": None},
    )
    app.register_blueprint(bp)
