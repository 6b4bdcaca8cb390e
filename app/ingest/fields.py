"""Canonical fields of each kind of record, their SQL checks and size limits.

Every field travels as text into the staging table; the checks below run there, set-based,
and give each bad row one stable reason (see REASONS).
"""

from __future__ import annotations

from dataclasses import dataclass

ID_MAX = 512


@dataclass(frozen=True)
class Field:
    name: str
    check: str  # id | text | numeric(p,s) | integer | boolean | float8 | attributes | category | currency | event_type | time | url
    max_len: int
    required: bool = False
    # A value that does not pass: "reject" refuses the record; "warn" keeps the record without
    # that field (a new record leaves it empty, an existing one keeps its stored value) and
    # records a field-level warning.
    on_error: str = "warn"


ITEM_FIELDS: tuple[Field, ...] = (
    Field("external_id", "id", ID_MAX, required=True, on_error="reject"),
    Field("title", "text", 2_048),
    Field("description", "text", 65_536),
    Field("brand", "text", 512),
    Field("category_path", "category", 4_096),
    Field("attributes", "attributes", 65_536),
    Field("price", "numeric(14,4)", 64),
    Field("currency", "currency", 16),
    Field("stock", "integer", 64),
    Field("margin", "numeric(9,4)", 64),
    Field("image_url", "url", 2_048),
    # An unreadable flag is not guessed: read as "active" it could show an item the merchant hid.
    Field("active", "boolean", 16, on_error="reject"),
)

EVENT_FIELDS: tuple[Field, ...] = (
    Field("user_id", "id", ID_MAX, required=True, on_error="reject"),
    Field("item_id", "id", ID_MAX, required=True, on_error="reject"),
    Field("event_type", "event_type", 64, required=True, on_error="reject"),
    Field("value", "float8", 64),
    Field("occurred_at", "time", 64, required=True, on_error="reject"),
    Field("session_id", "text", ID_MAX),
    Field("request_id", "text", ID_MAX),
    Field("event_id", "text", ID_MAX, on_error="reject"),  # the dedup identity: never dropped silently
)

FIELDS: dict[str, tuple[Field, ...]] = {"items": ITEM_FIELDS, "events": EVENT_FIELDS}
KINDS = tuple(FIELDS)


def field_names(kind: str) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS[kind])


# Stable reject reasons: the record is not loaded. A reason is one of these texts, most followed by ": <field>".
REASONS = {
    "missing id": "an id field (external_id, user_id, item_id) is empty or absent",
    "missing field": "a required field (event_type, occurred_at) is empty or absent",
    "bad type": "active is not a boolean",
    "unknown event type": "event_type is not in pgrecs.event_types",
    "unknown item": "the event's item_id is not a loaded item",
    "unparseable timestamp": "occurred_at is neither ISO 8601 nor unix epoch seconds/milliseconds",
    "oversized field": "an id, event_type or event_id is longer than the field's limit",
    "invalid UTF-8": "the record holds bytes that are not UTF-8 (raw kept with backslash escapes)",
    "NUL character": "the record holds a NUL character, which PostgreSQL text cannot store",
    "malformed JSON line": "a JSON Lines line is not one JSON object",
    "malformed CSV": "the CSV parser could not read the record (an unterminated quote costs only its own line)",
    "wrong column count": "a CSV record has more or fewer fields than the header",
    "unknown field": "an API record has a key that is not a canonical field",
}

# Field-level warnings: the record is loaded without that field (kept in pgrecs.ingest_warnings
# with the field and its raw value).
WARNINGS = {
    "bad type": "the value does not parse as the field's type (price, margin or value a number, stock an integer)",
    "bad value": "the value parses but is out of range (negative price or stock, currency not three letters)",
    "bad URL": "image_url is not an absolute http(s) URL",
    "bad JSON": "attributes is not a JSON object",
    "bad category_path": "category_path starts with '[' but is not a JSON list of strings",
    "oversized field": "the value is longer than the field's limit",
    "superseded": "an earlier line for the same external_id in the same load; the last line wins",
}
