"""The merchant console (/console) and the landing page (/), both server-rendered HTML.

The console is a blueprint of the API app: Jinja templates, one vendored stylesheet, no
JavaScript, charts drawn on the server as inline SVG (pgrecs.console.charts). It signs merchants
in with an API key holding the merchant (or admin) scope and keeps a server-side session
(pgrecs.console.session); each request's tenant and row-level security are those of that key,
set on the request's pooled connection exactly as for the API. Pages read the recs.* functions
analysts use (sql/062_rules.sql, sql/064_why_not.sql, sql/066_console.sql).
"""

from __future__ import annotations


def init_app(app) -> None:
    from pgrecs.console import home, views

    home.init_app(app)
    app.register_blueprint(views.bp)
