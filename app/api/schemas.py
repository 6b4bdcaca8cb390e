"""Request and response schemas of the HTTP API (marshmallow, through APIFlask).

Requests are validated by `@bp.input(Schema, location="query" | "json")`; a failure becomes a
400 problem+json whose `detail` is one line naming each bad field ("k must be between 1 and 100;
price_max must be a number") and whose `errors` holds marshmallow's field map (see
pgrecs.api.errors). Responses are documented with `@bp.doc(responses=...)` only, never serialised
through a schema, so they cost nothing per request.

Query parameters: unknown ones are refused and empty values count as absent. JSON bodies: unknown
fields are refused. Caps: k 1..100, lists of item ids 100, events per request 1000, ids 512
characters, text filters 1000, the query text 1000; the body size and JSON shape limits of
pgrecs.api.limits apply before any of this.
"""

from __future__ import annotations

import json
import math

from flask import request
from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

K_MAX = 100
K_DEFAULT = 10
LIST_MAX = 100
EVENTS_MAX = 1000
ID_MAX = 512
TEXT_MAX = 1000
Q_MAX = 1000
PRICE_MAX = 1e12
PLACEMENT_MAX = 63

# Messages are written to follow the field name: "k must be between 1 and 100".
_INT = {"invalid": "must be an integer", "too_large": "must be between 1 and 100"}
_NUM = {"invalid": "must be a number", "special": "must be a finite number", "too_large": "must be a finite number"}
_STR = {"invalid": "must be a string"}
_BOOL = {"invalid": "must be true or false"}


def _k(strict: bool) -> fields.Integer:
    return fields.Integer(
        load_default=K_DEFAULT, strict=strict, error_messages=_INT,
        validate=validate.Range(1, K_MAX, error=f"must be between 1 and {K_MAX}"),
        metadata={"description": f"How many results (1..{K_MAX})."})


def _price(name: str, **kw) -> fields.Float:
    return fields.Float(allow_nan=False, error_messages=_NUM, validate=validate.Range(
        -PRICE_MAX, PRICE_MAX, error="must be between -1e12 and 1e12"), metadata={"description": name}, **kw)


def _text(description: str, max_len: int = TEXT_MAX, **kw) -> fields.String:
    return fields.String(error_messages=_STR, metadata={"description": description},
                         validate=validate.Length(max=max_len, error=f"is longer than {max_len} characters"), **kw)


def _brands(description: str) -> fields.List:
    return fields.List(_text("A brand."), metadata={"description": description},
                       validate=validate.Length(max=LIST_MAX, error=f"holds at most {LIST_MAX} brands"),
                       error_messages={"invalid": "must be a list of brands (strings)"})


def _ids(description: str, of: str = "item") -> fields.List:
    return fields.List(
        fields.String(error_messages={"invalid": f"must be an {of} id (a string)"},
                      validate=validate.Length(1, ID_MAX, error=f"must be an {of} id of 1..{ID_MAX} characters")),
        validate=validate.Length(max=LIST_MAX, error=f"holds at most {LIST_MAX} items"),
        error_messages={"invalid": f"must be a list of {of} ids (strings)"}, metadata={"description": description})


class Scalar(fields.Field):
    """A JSON scalar of the listed JSON types, kept as sent (the loader parses and judges its value).

    Documented as an OpenAPI 3.1 type list; objects and lists are refused here.
    """

    _TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    _NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}

    def __init__(self, *types: str, max_len: int = ID_MAX, **kwargs):
        self.types = types
        self.max_len = max_len
        kwargs.setdefault("allow_none", "null" in types)
        # apispec adds "null" itself for allow_none
        metadata = {"type": [t for t in types if t != "null"], **kwargs.pop("metadata", {})}
        if "string" in types:
            metadata.setdefault("maxLength", max_len)
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        ok = any(isinstance(value, self._TYPES[t]) for t in self.types if t in self._TYPES)
        if isinstance(value, bool) and "boolean" not in self.types:
            ok = False
        if not ok:
            raise ValidationError("must be " + " or ".join(self._NAMES[t] for t in self.types if t != "null"))
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("must be a finite number")
        if isinstance(value, str) and len(value) > self.max_len:
            raise ValidationError(f"is longer than {self.max_len} characters")
        return value


class JsonBody(Schema):
    """A top-level JSON request body: it must be sent as application/json and be non-empty."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _needs_json(self, data, **kwargs):
        if not request.is_json:
            raise ValidationError("send the body as JSON (Content-Type: application/json)")
        if not request.get_data(cache=True).strip():
            raise ValidationError("the request body is empty")
        return data


# ----------------------------------------------------------------------------------------------
# Filters: one vocabulary for similar items, search and recommendations (pgrecs.parse_filters)
# ----------------------------------------------------------------------------------------------

CATEGORY_DOC = ("Only items under this category path prefix: `Shoes > Running`, or a bare `Shoes` "
                "(a one-level prefix).")


class CategoryPath(fields.Field):
    """A category path prefix: "A > B" or, in a JSON object, a list of names ["A", "B"]."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            parts = value.split(">")
        elif isinstance(value, list) and all(isinstance(part, str) for part in value):
            parts = value
        else:
            raise ValidationError('must be a category path: "A > B" or a list of names')
        if len(value) > (TEXT_MAX if isinstance(value, str) else LIST_MAX) \
                or any(len(part) > TEXT_MAX for part in parts):
            raise ValidationError(f"is longer than {TEXT_MAX} characters")
        if isinstance(value, str) and not value.strip():
            return ""  # blank: no category filter (filters_json drops it)
        if not parts or any(not part.strip() for part in parts):
            raise ValidationError('must be a category path: "A > B" or a list of names')
        return value


class Filters(Schema):
    """The filters of every endpoint that lists items (the jsonb object pgrecs.parse_filters reads)."""

    class Meta:
        unknown = RAISE

    category = CategoryPath(allow_none=True, metadata={"description": CATEGORY_DOC})
    brand = _text("Only this brand.", allow_none=True)
    brands = _brands("Only these brands.")
    exclude_brands = _brands("Never these brands.")
    price_min = _price("Lowest price.", allow_none=True)
    price_max = _price("Highest price.", allow_none=True)
    in_stock = fields.Boolean(allow_none=True, error_messages=_BOOL,
                              metadata={"description": "Only items in stock (false: no constraint)."})
    exclude = fields.List(fields.Integer(strict=True, error_messages={"invalid": "must be an internal item id"},
                                         validate=validate.Range(1, 2**63 - 1, error="must be an internal item id")),
                          validate=validate.Length(max=EVENTS_MAX, error=f"holds at most {EVENTS_MAX} ids"),
                          error_messages={"invalid": "must be a list of internal item ids"},
                          metadata={"description": "Internal item ids never to return."})

    @pre_load
    def _known(self, data, **kwargs):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(FILTER_KEYS))
            if unknown:
                raise ValidationError(f"unknown filter: {unknown[0]} (known: {', '.join(sorted(FILTER_KEYS))})")
        return data

    @validates_schema
    def _price_range(self, data, **kwargs):
        low, high = data.get("price_min"), data.get("price_max")
        if low is not None and high is not None and low > high:
            raise ValidationError("price_min must not exceed price_max")


FILTER_KEYS = tuple(Filters._declared_fields)


def filters_json(data: dict) -> dict:
    """The jsonb filters object from loaded data: a query schema's (its JSON `filters` object, then the
    plain filter parameters over its keys) or a loaded Filters object. A blank category is no filter."""
    filters = {**(data.get("filters") or {}), **{name: data[name] for name in FILTER_KEYS if name in data}}
    if isinstance(filters.get("category"), str):
        filters["category"] = filters["category"].strip()
        if not filters["category"]:
            del filters["category"]
    return filters


class JsonFilters(fields.String):
    """A query parameter holding a JSON object of Filters."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            obj = json.loads(text)
        except ValueError:
            raise ValidationError("must be a JSON object") from None
        if not isinstance(obj, dict):
            raise ValidationError("must be a JSON object")
        return Filters().load(obj)


# ----------------------------------------------------------------------------------------------
# Query strings
# ----------------------------------------------------------------------------------------------

class Query(Schema):
    """Query parameters: unknown ones refused (a typo is an error, not a silently missing filter);
    an empty text parameter is treated as absent, an empty number or flag is an error (it is not a
    number, and silently dropping it would serve an unfiltered list). Use with `@bp.input(..., location="query", unknown=RAISE)`:
    webargs would otherwise exclude unknown query parameters whatever Meta says."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _drop_empty(self, data, **kwargs):
        return {key: value for key, value in data.items()
                if value != "" or not isinstance(self.fields.get(key), fields.String)}


class FilterQuery(Query):
    """The filters as query parameters: the plain ones, and any key of Filters in the JSON object `filters`."""

    category = _text(CATEGORY_DOC)
    brand = _text("Only this brand.")
    price_min = _price("Lowest price.")
    price_max = _price("Highest price.")
    in_stock = fields.Boolean(error_messages=_BOOL, metadata={"description": "Only items in stock."})
    filters = JsonFilters(metadata={"description": "A JSON object of filters: " + ", ".join(FILTER_KEYS)
                                                   + "; plain parameters override its keys."})

    @validates_schema
    def _filters(self, data, **kwargs):
        # the plain parameters and the JSON object together are one Filters object
        try:
            Filters().load(filters_json(data))
        except ValidationError as exc:
            raise ValidationError(exc.messages.get("_schema", exc.messages)
                                  if isinstance(exc.messages, dict) else exc.messages) from None


class SemanticQuery(FilterQuery):
    """k and filters of GET /items/<id>/similar and GET /search."""

    k = _k(strict=False)


class SearchQuery(SemanticQuery):
    q = fields.String(required=True, error_messages={"required": "is required", **_STR},
                      validate=validate.Length(1, Q_MAX, error=f"must be 1..{Q_MAX} characters"),
                      metadata={"description": "The query text, embedded by the API's model."})

    @pre_load
    def _strip_q(self, data, **kwargs):
        if isinstance(data.get("q"), str):
            data = {**data, "q": data["q"].strip()}
            if not data["q"]:
                del data["q"]
        return data


class RecommendationQuery(FilterQuery):
    """placement, k, explain and filters of GET /items/<id>/recommendations and /users/<id>/recommendations."""

    k = _k(strict=False)
    placement = _text("Placement name (a row of pgrecs.placements).", PLACEMENT_MAX)
    explain = fields.Boolean(load_default=False, error_messages=_BOOL,
                             metadata={"description": "Return the full per-signal breakdown."})


# ----------------------------------------------------------------------------------------------
# JSON bodies
# ----------------------------------------------------------------------------------------------

class RecommendationsBody(JsonBody):
    examples = _ids("Items the user likes (external ids).")
    negative_examples = _ids("Items to steer away from (external ids).")
    context = _ids("Context items, e.g. the cart; they count as positive examples.")
    user_id = fields.String(allow_none=True, error_messages={"invalid": "must be a user id (a string)"},
                            validate=validate.Length(1, ID_MAX, error=f"must be a user id of 1..{ID_MAX} characters"),
                            metadata={"description": "Optional user (external id), logged with the request."})
    placement = _text("Placement name.", PLACEMENT_MAX, allow_none=True)
    k = _k(strict=True)
    filters = fields.Nested(Filters, allow_none=True)
    explain = fields.Boolean(load_default=False, allow_none=True, error_messages=_BOOL)

    @validates_schema
    def _some_positive(self, data, **kwargs):
        if not (data.get("examples") or data.get("context")):
            raise ValidationError("give at least one item in examples or context")


class ItemBody(JsonBody):
    """Item fields; values are judged by the loader (pgrecs.ingest), whose reasons come back in a 400."""

    external_id = Scalar("string", "integer", metadata={"description": "Must equal the id in the URL when given."})
    title = Scalar("string", "null", max_len=2048)
    description = Scalar("string", "null", max_len=65536)
    brand = Scalar("string", "null")
    category_path = fields.Raw(allow_none=True, metadata={
        "description": "`A > B > C` or a JSON list of strings.",
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
    attributes = fields.Dict(allow_none=True, keys=fields.String(), error_messages={"invalid": "must be a JSON object"})
    price = Scalar("number", "string", "null", max_len=64, metadata={"description": "Not negative."})
    currency = Scalar("string", "null", max_len=16, metadata={"description": "Three letters, e.g. EUR."})
    stock = Scalar("integer", "string", "null", max_len=64)
    margin = Scalar("number", "string", "null", max_len=64)
    image_url = Scalar("string", "null", max_len=2048)
    active = Scalar("boolean", "string", "null", max_len=16)

    @validates_schema
    def _category_path(self, data, **kwargs):
        value = data.get("category_path")
        if value is None or isinstance(value, str):
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("must be a string or a list of strings", "category_path")


class Event(Schema):
    """One event. Values of the right JSON type that the loader refuses (unknown item, unknown event
    type, bad timestamp) are per-event rejects in the response, kept in pgrecs.ingest_rejects."""

    class Meta:
        unknown = RAISE

    user_id = Scalar("string", "integer", metadata={"description": "External user id (required)."})
    item_id = Scalar("string", "integer", metadata={"description": "External item id (required)."})
    event_type = Scalar("string", max_len=64, metadata={"description": "view, click, add_to_cart, purchase, ... "
                                                                       "(rows of pgrecs.event_types; required)."})
    occurred_at = Scalar("string", "number", max_len=64, metadata={
        "description": "ISO 8601 or unix epoch seconds/milliseconds; default now."})
    value = Scalar("number", "string", "null", max_len=64, metadata={"description": "e.g. a rating."})
    session_id = Scalar("string", "integer", "null")
    request_id = Scalar("string", "null", metadata={"description": "request_id of the list it came from."})
    event_id = Scalar("string", "integer", "null", metadata={"description": "Client id for idempotent retries."})


class EventsBody(JsonBody):
    """One event object or a list of 1..1000 (documented as such in the OpenAPI document)."""

    events = fields.List(fields.Nested(Event), required=True,
                         validate=validate.Length(1, EVENTS_MAX, error=f"give 1..{EVENTS_MAX} events per request"))

    @pre_load
    def _wrap(self, data, **kwargs):
        if isinstance(data, dict):
            return {"events": [data]}
        if isinstance(data, list):
            if not data:
                raise ValidationError("no events given")
            if not all(isinstance(e, dict) for e in data):
                raise ValidationError("the body must be an event object or a list of event objects")
            return {"events": data}
        raise ValidationError("the body must be an event object or a list of event objects")


# ----------------------------------------------------------------------------------------------
# Responses (documentation only)
# ----------------------------------------------------------------------------------------------

class Neighbour(Schema):
    item_id = fields.Integer(metadata={"description": "Internal item id (pgrecs's own, stable)."})
    external_id = fields.String(metadata={"description": "The shop's item id (the id in PUT /items/<external_id>)."})
    title = fields.String(allow_none=True)
    score = fields.Float()
    rank = fields.Integer()


class SimilarOut(Schema):
    item_id = fields.Integer(metadata={"description": "Internal item id (pgrecs's own, stable)."})
    external_id = fields.String(metadata={"description": "The shop's item id (the id in PUT /items/<external_id>)."})
    k = fields.Integer()
    filters = fields.Dict()
    results = fields.List(fields.Nested(Neighbour))


class SearchOut(Schema):
    q = fields.String()
    k = fields.Integer()
    model = fields.String()
    filters = fields.Dict()
    results = fields.List(fields.Nested(Neighbour))


class Recommended(Schema):
    item_id = fields.Integer(metadata={"description": "Internal item id (pgrecs's own, stable)."})
    external_id = fields.String(metadata={"description": "The shop's item id (the id in PUT /items/<external_id>)."})
    title = fields.String(allow_none=True)
    score = fields.Float()
    rank = fields.Integer()
    reasons = fields.List(fields.String(), metadata={
        "description": "Why the item is there: at most three reasons, strongest first; a signal gives one only when it"
                       " makes at least a fifth of the score (docs/scoring.md)."})
    contributions = fields.Dict(metadata={"description": "Per-signal contributions (full with explain)."})


class RecommendationsOut(Schema):
    request_id = fields.UUID(metadata={"description": "Log id of this list; events may carry it."})
    placement = fields.String()
    k = fields.Integer()
    items = fields.List(fields.Nested(Recommended))


class FieldWarning(Schema):
    field = fields.String()
    reason = fields.String(metadata={"description": "Why the field was left as it was (bad type, bad value, ...)."})


class ItemOut(Schema):
    item_id = fields.Integer(metadata={"description": "Internal item id (pgrecs's own, stable)."})
    external_id = fields.String(metadata={"description": "The shop's item id (the id in PUT /items/<external_id>)."})
    status = fields.String(validate=validate.OneOf(["inserted", "updated", "unchanged"]))
    embedding_queued = fields.Boolean()
    warnings = fields.List(fields.Nested(FieldWarning), metadata={
        "description": "Optional fields that did not parse: left empty on a new item, as stored on an existing one."})


class EventReject(Schema):
    index = fields.Integer(metadata={"description": "0-based index in the request's list."})
    reason = fields.String()


class EventsOut(Schema):
    accepted = fields.Integer()
    inserted = fields.Integer()
    duplicates = fields.Integer()
    rejected = fields.List(fields.Nested(EventReject))


class HealthOut(Schema):
    status = fields.String()


class ReadyOut(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())
    replicas = fields.Dict(keys=fields.String(), values=fields.Dict(),
                           metadata={"description": "Per read replica: state, serving, replay_lsn, lag_seconds, lag_bytes"})


def ok(schema: type[Schema], description: str, status: int = 200, **more) -> dict:
    """`@bp.doc(responses=...)` for a JSON success response plus extra error responses."""
    out: dict = {status: {"description": description, "content": {"application/json": {"schema": schema}}}}
    out.update(more)
    return out


# ----------------------------------------------------------------------------------------------
# Spec post-processing
# ----------------------------------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def complete_spec(spec: dict) -> dict:
    """Every 4xx/5xx as problem+json; the events body as one event or a list; /metrics as text."""
    from pgrecs.api.errors import PROBLEM_JSON

    schemas = spec.get("components", {}).get("schemas", {})
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if path not in ("/healthz",):
                responses.setdefault("503", {"description": "The database is unavailable or the statement timed out "
                                                            "(Retry-After: 1)"})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
            if "400" in responses and responses["400"].get("description") == "Validation error":
                responses["400"]["description"] = ("Invalid request: malformed JSON, a bad or missing field, a value "
                                                   "out of range (the detail names each)")
    events = spec.get("paths", {}).get("/events", {}).get("post")
    if events and "Event" in schemas:
        ref = {"$ref": "#/components/schemas/Event"}
        events["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": EVENTS_MAX}]}}}}
        schemas.pop("EventsBody", None)
    put_item = spec.get("paths", {}).get("/items/{external_id}", {}).get("put")
    if put_item and "404" in put_item["responses"]:
        # an upsert takes any id the route matches; a line break in the id matches no route
        put_item["responses"]["404"]["description"] = "No such route (an id holding a line break)"
    metrics = spec.get("paths", {}).get("/metrics", {}).get("get")
    if metrics:
        metrics["responses"]["200"] = {"description": "Prometheus text exposition format",
                                       "content": {"text/plain": {"schema": {"type": "string"}}}}
    for name in ("HTTPError", "ValidationError"):
        schemas.pop(name, None)
    for operation in (op for ops in spec.get("paths", {}).values() for op in ops.values() if isinstance(op, dict)):
        if operation.get("requestBody"):
            operation["requestBody"]["required"] = True
    return spec
