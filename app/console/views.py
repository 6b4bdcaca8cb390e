"""The console's pages. Every read is a recs.* function (the ones analysts call), on the request's
connection, whose tenant the session set; the views only arrange rows for the templates."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import timezone

import psycopg
from flask import Blueprint, abort, g, make_response, redirect, render_template, request, url_for
from psycopg.rows import dict_row
from werkzeug.exceptions import HTTPException

from pgrecs import rules
from pgrecs.api_keys import PREFIX, key_sha256
from pgrecs.console import charts, session
from pgrecs.errors import PgrecsError

log = logging.getLogger("pgrecs.console")
bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")
bp.enable_openapi = False  # HTML pages: not part of the API description
bp.before_request(session.require_session)

NAV = [("console.overview", "Overview"), ("console.catalog", "Catalog health"), ("console.items", "Items"),
       ("console.users", "Users"), ("console.rules_list", "Rules"), ("console.experiments", "Experiments"),
       ("console.exposure", "Exposure"), ("console.why_not", "Why not?")]
WINDOWS = (1, 7, 30, 90, 365)


def _rows(query: str, params=None) -> list[dict]:
    from pgrecs.api.database import get_conn

    return get_conn().cursor(row_factory=dict_row).execute(query, params).fetchall()


def _one(query: str, params=None) -> dict | None:
    rows = _rows(query, params)
    return rows[0] if rows else None


def _conn():
    from pgrecs.api.database import get_conn

    return get_conn()


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    if not low <= value <= high:
        abort(400, description=f"{name} must be between {low} and {high}")
    return value


def _placements() -> list[dict]:
    return _rows("select * from recs.placements()")


@bp.app_template_global()
def csrf_token() -> str:
    return session.csrf_token()


@bp.app_template_filter("num")
def _num(value) -> str:
    return "—" if value is None else f"{value:,}"


@bp.app_template_filter("pct")
def _pct(value, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


@bp.app_template_filter("score")
def _score(value, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


@bp.app_template_filter("when")
def _when(value) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("day")
def _day(value) -> str:
    return "—" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d")


@bp.app_template_filter("local_input")
def _local_input(value) -> str:
    """A time as a datetime-local input value (UTC); form text passes through."""
    if not value:
        return ""
    if isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")


@bp.context_processor
def _layout():
    return {"nav": NAV, "tenant": g.get("tenant"), "key_name": g.get("key_name")}


@bp.after_request
def _headers(response):
    return secure_headers(response)


def secure_headers(response):
    """No scripts at all, nothing framed, nothing cached, nothing sniffed (matplotlib's SVG and the
    contribution bars use inline style attributes, hence style-src 'unsafe-inline')."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# --- sign in and out ---------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status = None, 200
    next_path = session.safe_next(request.values.get("next"))
    if request.method == "POST":
        key = request.form.get("api_key", "").strip()
        if not key:
            error, status = "Paste an API key.", 400
        elif len(key) > 200 or not key.isascii() or not key.startswith(PREFIX):
            error, status = "This is not a pgrecs API key (they start with pgr_).", 401
        else:
            token = secrets.token_urlsafe(32)
            conn = _conn()
            row = conn.execute(
                "select key_id, tenant_id, key_name, scopes, session_id"
                " from pgrecs.console_session_start(%s, %s, %s::interval)",
                (key_sha256(key), session.token_sha256(token), session.idle_interval())).fetchone()
            conn.commit()
            if row is None:
                error, status = "This API key is unknown or revoked.", 401
            elif row[4] is None:
                error, status = "This API key lacks the merchant scope (create one with pgrecs keys create --scopes merchant).", 403
            else:
                response = redirect(next_path or url_for("console.overview"))
                session.set_cookie(response, session.COOKIE, token)
                session.clear_cookie(response, session.LOGIN_COOKIE)
                return response
    csrf = session.login_csrf()
    response = make_response(render_template("console/login.html", error=error, next_path=next_path), status)
    session.set_cookie(response, session.LOGIN_COOKIE, csrf)
    return response


@bp.post("/logout")
def logout():
    _conn().execute("select pgrecs.console_session_end(%s)", (session.token_sha256(g.console_token),))
    response = redirect(url_for("console.login"))
    session.clear_cookie(response, session.COOKIE)
    return response


# --- overview ----------------------------------------------------------------------------------

@bp.get("/")
def overview():
    days = _int_arg("days", 30, 1, 3650)
    catalog = _one("select * from recs.catalog_overview()")
    quality = _rows("select * from recs.quality_histogram(bins => 10)")
    per_day = _rows("select * from recs.events_per_day(days => %s)", (days,))
    placements = _rows("select * from recs.placement_performance(days => %s)", (days,))
    day_labels = sorted({str(r["day"]) for r in per_day})
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(day_labels))
    for r in per_day:
        series[r["event_type"]][day_labels.index(str(r["day"]))] = r["events"]
    quality_chart = charts.bars([f"{r['low']:.1f}" for r in quality], [r["items"] for r in quality],
                                "Items per quality score", xlabel="quality score (bin start)", ylabel="items")
    events_chart = charts.stacked_days(day_labels, dict(series), f"Events per day, last {days} days")
    return render_template("console/overview.html", catalog=catalog, quality=quality, placements=placements,
                           quality_chart=quality_chart, events_chart=events_chart, days=days, windows=WINDOWS,
                           events_total=sum(r["events"] for r in per_day))


# --- catalog health ----------------------------------------------------------------------------

AUDIT_LABELS = [
    ("no_title", "no title"), ("no_description", "no description"), ("short_description", "short description"),
    ("no_brand", "no brand"), ("no_category", "no category"), ("no_price", "no price"), ("no_image", "no image"),
    ("duplicate_title_items", "duplicate titles"), ("near_duplicate_title_items", "near-duplicate titles"),
    ("mostly_markup", "mostly markup"), ("mostly_non_letters", "mostly non-letters"),
    ("boilerplate", "boilerplate phrases"), ("repeated_description", "description shared by 3+ items"),
    ("mojibake", "mojibake repaired"), ("not_embeddable", "too poor to embed"),
]


@bp.get("/catalog")
def catalog():
    summary = _one("select recs.catalog_audit_summary() as s")["s"]
    findings = []
    if summary:
        findings = sorted(((label, summary.get(key) or 0, (summary.get(key) or 0) / max(summary["items"], 1))
                           for key, label in AUDIT_LABELS), key=lambda f: -f[1])
    worst = _rows("select * from recs.catalog_fix_first(n => 25)")
    duplicates = _rows("select * from recs.catalog_audit_items(n => 15, flag => 'duplicate_title')")
    duplicates += _rows("select * from recs.catalog_audit_items(n => 15, flag => 'near_duplicate_title')")
    not_embeddable = _rows("select * from recs.not_embeddable_items(n => 50)")
    overrides = _rows("select * from recs.embed_overrides(n => 50)")
    chart = None
    if findings:
        shown = [f for f in findings if f[1] > 0][:10]
        chart = charts.bars([f[0] for f in shown], [100 * f[2] for f in shown], "Share of items per finding",
                            ylabel="% of items", rotate=True, height=3.2)
    return render_template("console/catalog.html", summary=summary, findings=findings, worst=worst,
                           duplicates=duplicates, not_embeddable=not_embeddable, overrides=overrides, chart=chart)


# --- items -------------------------------------------------------------------------------------

@bp.get("/items")
def items():
    q = request.args.get("q", "").strip()
    found = []
    if q:
        found = _rows("select i.external_id, i.title, i.brand, i.active, i.stock from pgrecs.items i"
                      " where i.tenant_id = pgrecs.current_tenant()"
                      " and (i.external_id = %(q)s or i.title ilike '%%' || %(q)s || '%%')"
                      " order by i.external_id = %(q)s desc, i.title limit 50", {"q": q})
    else:
        found = _rows("select i.external_id, i.title, i.brand, i.active, i.stock from pgrecs.items i"
                      " join pgrecs.item_signals s on s.item_id = i.item_id"
                      " where i.tenant_id = pgrecs.current_tenant() order by s.popularity desc limit 25")
    return render_template("console/items.html", q=q, found=found)


def _bars(row: dict) -> list[dict]:
    """The per-signal contributions of one recommended item, as bars (share of the top score)."""
    contributions = row["contributions"] or {}
    out = []
    for signal, detail in contributions.items():
        if signal.startswith("_") or not isinstance(detail, dict):
            continue
        out.append({"signal": signal, "contribution": detail.get("contribution") or 0,
                    "raw": detail.get("raw"), "anchor": detail.get("anchor_title")})
    return sorted(out, key=lambda b: -b["contribution"])


def _recommendations(kind: str, external_id: str, placements: list[dict], default: str, k: int = 10) -> dict:
    """The list of the placement chosen in ?placement= (one at a time: each is a full ranking)."""
    chosen = request.args.get("list", default)
    placement = next((p for p in placements if p["placement"] == chosen), placements[0] if placements else None)
    if placement is None:
        return {"placement": None, "rows": [], "error": "This shop has no placements yet."}
    function = "recs.recommend_for_item(item => %s" if kind == "item" else "recs.recommend_for_user(user_id => %s"
    try:
        with _conn().transaction():
            rows = _rows(f"select r.*, i.brand from {function}, k => %s, placement => %s, explain => true) r"
                         " join pgrecs.items i on i.item_id = r.item_id order by r.rank",
                         (external_id, k, placement["placement"]))
    except psycopg.errors.NoDataFound as exc:
        return {"placement": placement, "rows": [], "error": exc.diag.message_primary}
    top = max([r["score"] for r in rows] + [1e-12])
    for r in rows:
        r["bars"] = _bars(r)
        for b in r["bars"]:
            b["width"] = max(0.0, min(100.0, 100 * b["contribution"] / top))
        r["boosts"] = (r["contributions"] or {}).get("_boosts") or []
        r["pinned"] = (r["contributions"] or {}).get("_pinned")
    return {"placement": placement, "rows": rows, "error": None}


def _why_not_result(context_item: str | None = None, context_user: str | None = None) -> dict | None:
    item = request.args.get("why_not", "").strip()
    if not item:
        return None
    placement = request.args.get("placement", "").strip() or (rules.ITEM_PLACEMENT if context_item else rules.USER_PLACEMENT)
    k = _int_arg("k", 10, 1, 100)
    try:
        with _conn().transaction():
            answer = rules.why_not(_conn(), item, placement, context_item=context_item, context_user=context_user, k=k)
    except PgrecsError as exc:
        return {"item": item, "placement": placement, "k": k, "error": str(exc), "rows": []}
    return {"item": item, "placement": placement, "k": k, "error": None, "rows": answer}


@bp.get("/items/<path:external_id>")
def item(external_id: str):
    details = _one("select * from recs.item_details(item => %s)", (external_id,))
    if details is None:
        abort(404, description=f"No item {external_id!r} in this catalog.")
    status = _rows("select * from recs.item_embedding_status(item => %s)", (external_id,))
    similar = _rows("select s.rank, s.external_id, s.score, i.title, i.brand from recs.similar_items(item_id => %s, k => 10) s"
                    " join pgrecs.items i on i.item_id = s.item_id order by s.rank", (details["item_id"],))
    placements = _placements()
    return render_template("console/item.html", item=details, status=status, similar=similar, placements=placements,
                           recommended=_recommendations("item", external_id, placements, rules.ITEM_PLACEMENT),
                           why_not=_why_not_result(context_item=external_id))


# --- users -------------------------------------------------------------------------------------

@bp.get("/users")
def users():
    q = request.args.get("q", "").strip()
    if q:
        found = _rows("select u.external_id, (select count(*) from pgrecs.events e where e.tenant_id = u.tenant_id"
                      " and e.user_id = u.user_id) as events from pgrecs.users u"
                      " where u.tenant_id = pgrecs.current_tenant() and u.external_id like %s || '%%'"
                      " order by u.external_id limit 50", (q,))
    else:
        found = _rows("select u.external_id, count(*) as events from pgrecs.events e join pgrecs.users u on u.user_id = e.user_id"
                      " where e.tenant_id = pgrecs.current_tenant() group by u.external_id order by count(*) desc, 1 limit 25")
    return render_template("console/users.html", q=q, found=found)


@bp.get("/users/<path:external_id>")
def user(external_id: str):
    exists = _one("select u.user_id, u.created_at from pgrecs.users u where u.tenant_id = pgrecs.current_tenant()"
                  " and u.external_id = %s", (external_id,))
    if exists is None:
        abort(404, description=f"No user {external_id!r} in this shop.")
    placement = request.args.get("history_placement", rules.USER_PLACEMENT)
    history = _rows("select * from recs.user_history(user_id => %s, placement => %s)", (external_id, placement))
    recent = _rows("select e.occurred_at, e.event_type, e.value, i.external_id, i.title from pgrecs.events e"
                   " join pgrecs.items i on i.item_id = e.item_id where e.tenant_id = pgrecs.current_tenant()"
                   " and e.user_id = %s order by e.occurred_at desc, e.event_id desc limit 20", (exists["user_id"],))
    placements = _placements()
    return render_template("console/user.html", external_id=external_id, history=history, recent=recent,
                           history_placement=placement, placements=placements,
                           recommended=_recommendations("user", external_id, placements, rules.USER_PLACEMENT),
                           why_not=_why_not_result(context_user=external_id))


# --- why not -----------------------------------------------------------------------------------

@bp.get("/why-not")
def why_not():
    context_item = request.args.get("context_item", "").strip() or None
    context_user = request.args.get("context_user", "").strip() or None
    result = None
    if request.args.get("why_not") and (context_item or context_user):
        result = _why_not_result(context_item=context_item if not context_user else None, context_user=context_user)
    elif request.args.get("why_not"):
        result = {"item": request.args["why_not"], "error": "Give a context: an item or a user.", "rows": [],
                  "placement": request.args.get("placement"), "k": 10}
    return render_template("console/why_not.html", result=result, placements=_placements(),
                           context_item=context_item or "", context_user=context_user or "")


# --- rules -------------------------------------------------------------------------------------

@bp.get("/rules")
def rules_list():
    conn = _conn()
    return render_template("console/rules.html", rules=rules.list_rules(conn), changes=rules.changes(conn, n=50),
                           saved=request.args.get("saved"))


def _rule_form(rule: dict | None, rule_id: int | None, error: str | None = None, status: int = 200):
    return render_template("console/rule_form.html", rule=rule or {"kind": "boost", "enabled": True},
                           rule_id=rule_id, error=error, placements=_placements(), kinds=rules.KINDS), status


@bp.get("/rules/new")
def rule_new():
    return _rule_form(None, None)


@bp.get("/rules/<int:rule_id>/edit")
def rule_edit(rule_id: int):
    try:
        row = rules.get_rule(_conn(), rule_id)
    except PgrecsError:
        abort(404, description=f"No rule {rule_id}.")
    rule = dict(row, item=row["item_external_id"])
    return _rule_form(rule, rule_id)


def _form_rule_id() -> int | None:
    rule_id = request.form.get("rule_id", "")
    return int(rule_id) if rule_id.isdigit() else None


def _change_from_form() -> tuple[rules.Change, dict]:
    action = request.form.get("action", "save")
    rule_id = _form_rule_id()
    if action in ("enable", "disable"):
        return rules.Change(action, {}, rule_id), rules.get_rule(_conn(), rule_id)
    rule = rules.rule_from_form(request.form)
    return rules.Change("save", rule, rule_id), rule


def _form_contexts(rule: dict) -> list[tuple[str, str]]:
    given = [("item", x.strip()) for x in request.form.get("context_items", "").split(",") if x.strip()]
    given += [("user", x.strip()) for x in request.form.get("context_users", "").split(",") if x.strip()]
    return given or rules.preview_contexts(_conn(), {**rule, "item": rule.get("item") or rule.get("item_external_id")})


@bp.post("/rules/preview")
def rule_preview():
    try:
        change, rule = _change_from_form()
        contexts = _form_contexts(rule)
        results = rules.preview(_conn(), change, session.actor(), contexts, k=10, placement=rule.get("placement"))
    except PgrecsError as exc:
        if request.form.get("action", "save") != "save":
            abort(400, description=str(exc))
        return _rule_form(request.form.to_dict(), _form_rule_id(), str(exc), 400)
    return render_template("console/rule_preview.html", change=change, rule=rule, results=results,
                           form=request.form.to_dict(),
                           context_items=",".join(c for k, c in contexts if k == "item"),
                           context_users=",".join(c for k, c in contexts if k == "user"))


@bp.post("/rules/apply")
def rule_apply():
    try:
        change, _ = _change_from_form()
        rule_id = rules.apply(_conn(), change, session.actor())
    except PgrecsError as exc:
        if request.form.get("action", "save") != "save":
            abort(400, description=str(exc))
        return _rule_form(request.form.to_dict(), _form_rule_id(), str(exc), 400)
    return redirect(url_for("console.rules_list", saved=rule_id))


# --- experiments -------------------------------------------------------------------------------

@bp.get("/experiments")
def experiments():
    return render_template("console/experiments.html", experiments=_rows("select * from recs.experiments()"))


@bp.get("/experiments/<name>")
def experiment(name: str):
    from pgrecs.evaluation import experiments as exp

    try:
        report = exp.report(_conn(), g.tenant, name)
    except PgrecsError:
        abort(404, description=f"No experiment {name!r}.")
    variants = report["variants"]
    labels = [v["variant"] + (" (control)" if v["is_control"] else "") for v in variants]
    panels = [(title, [v[key] for v in variants], [v[f"{key}_low"] for v in variants],
               [v[f"{key}_high"] for v in variants])
              for key, title in (("ctr", "CTR"), ("conversion", "Conversion"), ("revenue_per_user", "Revenue per user"))]
    chart = charts.intervals(panels, labels, "CTR, conversion and revenue per user per variant, with 95% intervals")
    meta = _one("select * from recs.experiments() where name = %s", (name,))
    return render_template("console/experiment.html", report=report, meta=meta, chart=chart)


# --- exposure ----------------------------------------------------------------------------------

@bp.get("/exposure")
def exposure():
    days = _int_arg("days", 30, 1, 3650)
    summary = _one("select * from recs.exposure(days => %s)", (days,))
    brands = _rows("select * from recs.exposure_by(dimension => 'brand', days => %s, n => 12)", (days,))
    categories = _rows("select * from recs.exposure_by(dimension => 'category', days => %s, n => 12)", (days,))
    never = _rows("select * from recs.never_shown_items(days => %s, n => 20)", (days,))
    curve_chart = shares_chart = None
    if summary["exposures"]:
        curve = _rows("select * from recs.exposure_curve(days => %s, points => 40)", (days,))
        curve_chart = charts.lorenz([r["item_share"] for r in curve], [r["exposure_share"] or 0 for r in curve],
                                    "How evenly exposure spreads over the catalog")
        groups = brands if len(brands) > 1 else categories
        if len(groups) > 1:
            shares_chart = charts.shares([r["grp"] for r in groups], [r["exposure_share"] or 0 for r in groups],
                                         [r["catalog_share"] or 0 for r in groups],
                                         "Share of exposure against share of the catalog")
    return render_template("console/exposure.html", summary=summary, brands=brands, categories=categories,
                           never=never, curve_chart=curve_chart, shares_chart=shares_chart, days=days, windows=WINDOWS)


# --- errors as pages ---------------------------------------------------------------------------

def _error_page(status: int, message: str):
    conn = g.get("db_conn")
    if conn is not None and not conn.closed:
        conn.rollback()
    page = render_template("console/error.html", status=status, message=message, signed_in="console_token" in g)
    return secure_headers(make_response(page, status))


@bp.errorhandler(400)
@bp.errorhandler(403)
@bp.errorhandler(404)
@bp.errorhandler(405)
def _http_error(error):
    return _error_page(error.code, error.description or error.name)


@bp.errorhandler(psycopg.errors.NoDataFound)
def _not_found(error):
    return _error_page(404, error.diag.message_primary or "not found")


@bp.errorhandler(psycopg.DataError)
def _bad_value(error):
    return _error_page(400, error.diag.message_primary or "invalid value")


@bp.errorhandler(psycopg.errors.QueryCanceled)
def _timeout(error):
    return _error_page(503, "The database took too long to answer; try again or narrow the request.")


@bp.errorhandler(Exception)
def _unexpected(error):
    if isinstance(error, HTTPException):
        return _error_page(error.code or 500, error.description or error.name)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error_page(500, "Something went wrong on our side; the details are in the server log.")
