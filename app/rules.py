"""Business rules for the console and `pgrecs rules`: thin calls of the recs rule functions
(sql/062_rules.sql) plus the preview, which applies a change inside a transaction that is
always rolled back and compares the lists before and after for sample contexts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg.rows import dict_row

from pgrecs.errors import PgrecsError

KINDS = ("boost", "pin", "block")
# the arguments of recs.create_rule / recs.update_rule, with their SQL types
FIELDS = {"name": "text", "kind": "text", "placement": "text", "item": "text", "brand": "text", "category": "text",
          "min_margin": "numeric", "factor": "real", "position": "integer", "starts_at": "timestamptz",
          "ends_at": "timestamptz", "enabled": "boolean"}
# a rule's field -> the argument of recs.create_rule that sets it, where the names differ
ARGUMENTS = {"position": "pin_position"}
ITEM_PLACEMENT = "pdp_similar"
USER_PLACEMENT = "home_for_you"


@dataclass
class Change:
    """A rule change: save (create when rule_id is None, else replace every field) or enable/disable."""

    action: str  # 'save' or 'enable' or 'disable'
    rule: dict = field(default_factory=dict)
    rule_id: int | None = None


def parse_time(text: str | None) -> datetime | None:
    """'2026-12-01', '2026-12-01T09:00' or with an offset; no offset means UTC."""
    if text is None or not str(text).strip():
        return None
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise PgrecsError(f"invalid time {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_number(text, name: str, kind=float):
    if text is None or str(text).strip() == "":
        return None
    try:
        return kind(str(text).strip())
    except ValueError:
        raise PgrecsError(f"{name} must be a number (got {text!r})") from None


def rule_from_form(form) -> dict:
    """A rule dict from form-like input (strings), with one-line errors for bad numbers and times."""
    return {
        "name": (form.get("name") or "").strip(),
        "kind": (form.get("kind") or "").strip(),
        "placement": (form.get("placement") or "").strip() or None,
        "item": (form.get("item") or "").strip() or None,
        "brand": (form.get("brand") or "").strip() or None,
        "category": (form.get("category") or "").strip() or None,
        "min_margin": parse_number(form.get("min_margin"), "min margin"),
        "factor": parse_number(form.get("factor"), "factor"),
        "position": parse_number(form.get("position"), "position", int),
        "starts_at": parse_time(form.get("starts_at")),
        "ends_at": parse_time(form.get("ends_at")),
        "enabled": str(form.get("enabled", "true")).lower() in ("1", "true", "on", "yes"),
    }


def _db_error(exc: psycopg.Error) -> PgrecsError:
    return PgrecsError(exc.diag.message_primary or str(exc))


def list_rules(conn: psycopg.Connection) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute("select * from recs.business_rules()").fetchall()


def get_rule(conn: psycopg.Connection, rule_id: int) -> dict:
    row = conn.cursor(row_factory=dict_row).execute(
        "select * from recs.business_rules() where rule_id = %s", (rule_id,)).fetchone()
    if row is None:
        raise PgrecsError(f"unknown rule: {rule_id}")
    return row


def changes(conn: psycopg.Connection, rule_id: int | None = None, n: int = 100) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(
        "select * from recs.business_rule_changes(rule_id => %s, n => %s)", (rule_id, n)).fetchall()


def apply(conn: psycopg.Connection, change: Change, actor: str) -> int:
    """Make the change in the caller's transaction, recorded in the audit trail under `actor`."""
    conn.execute("select set_config('pgrecs.actor', %s, true)", (actor,))
    try:
        with conn.transaction():
            if change.action in ("enable", "disable"):
                conn.execute("select recs.set_rule_enabled(rule_id => %s, enabled => %s)",
                             (change.rule_id, change.action == "enable"))
                return change.rule_id
            args = {name: change.rule.get(name) for name in FIELDS}
            named = ", ".join(f'{ARGUMENTS.get(name, name)} => %({name})s::{sql_type}' for name, sql_type in FIELDS.items())
            if change.rule_id is None:
                return conn.execute(f"select recs.create_rule({named})", args).fetchone()[0]
            return conn.execute(f"select recs.update_rule(rule_id => %(rule_id)s, {named})",
                                {**args, "rule_id": change.rule_id}).fetchone()[0]
    except (psycopg.errors.DataError, psycopg.errors.NoDataFound, psycopg.errors.IntegrityError) as exc:
        raise _db_error(exc) from None


def preview_contexts(conn: psycopg.Connection, rule: dict, n: int = 3) -> list[tuple[str, str]]:
    """(kind, external id) contexts whose lists the rule can change (recs.rule_preview_contexts)."""
    rows = conn.execute("select context_kind, external_id from recs.rule_preview_contexts("
                        "item => %s, brand => %s, category => %s, n => %s)",
                        (rule.get("item"), rule.get("brand"), rule.get("category"), n)).fetchall()
    return [(kind, ext) for kind, ext in rows]


def _lists(conn, contexts, placements: dict[str, str], k: int) -> dict[tuple[str, str], list[dict]]:
    out = {}
    cur = conn.cursor(row_factory=dict_row)
    for kind, ext in contexts:
        function = "recs.recommend_for_item(item => %s" if kind == "item" else "recs.recommend_for_user(user_id => %s"
        out[(kind, ext)] = cur.execute(
            f"select r.rank, r.external_id, r.title, r.score, r.reasons"
            f" from {function}, k => %s, placement => %s) r order by r.rank", (ext, k, placements[kind])).fetchall()
    return out


def preview(conn: psycopg.Connection, change: Change, actor: str, contexts: list[tuple[str, str]],
            k: int = 10, placement: str | None = None) -> list[dict]:
    """Before and after lists per context; the change is applied and rolled back. Each result:
    {kind, context, placement, before, after, entered, left, changed}, rows {rank, external_id, title, score, reasons}."""
    placements = {"item": placement or ITEM_PLACEMENT, "user": placement or USER_PLACEMENT}
    try:
        before = _lists(conn, contexts, placements, k)
        with conn.transaction(force_rollback=True):
            apply(conn, change, actor)
            after = _lists(conn, contexts, placements, k)
    except (psycopg.errors.DataError, psycopg.errors.NoDataFound) as exc:
        raise _db_error(exc) from None
    results = []
    for key in contexts:
        b, a = before[key], after[key]
        b_ids, a_ids = [r["external_id"] for r in b], [r["external_id"] for r in a]
        results.append({"kind": key[0], "context": key[1], "placement": placements[key[0]], "before": b, "after": a,
                        "entered": [x for x in a_ids if x not in b_ids], "left": [x for x in b_ids if x not in a_ids],
                        "changed": a_ids != b_ids})
    return results


def why_not(conn: psycopg.Connection, item: str, placement: str, context_item: str | None = None,
            context_user: str | None = None, k: int = 10) -> list[dict]:
    try:
        return conn.cursor(row_factory=dict_row).execute(
            "select * from recs.why_not(item => %s, placement => %s, context_item => %s, context_user => %s, k => %s)",
            (item, placement, context_item, context_user, k)).fetchall()
    except (psycopg.errors.DataError, psycopg.errors.NoDataFound) as exc:
        raise _db_error(exc) from None

