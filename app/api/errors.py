"""Every error as RFC 9457 problem details (`application/problem+json`).

Body: `type` (about:blank: the status says it all), `title` (the HTTP reason phrase), `status`,
`detail` (what went wrong, for a human), `instance` (the request path), and the extensions
`request_id` (the X-Request-Id of the request, also in the logs), `message` (the same text as
`detail`, kept for APIFlask clients) and `errors` (field-level details, e.g. validation errors).

Request validation errors (pgrecs.api.schemas) are 400s whose `detail` names every bad field in one
line ("k must be between 1 and 100; unknown query parameter: colour") and whose `errors` holds
marshmallow's map by location ({"query": {"k": [...]}}).

Covers APIFlask's abort()/validation errors, werkzeug's HTTP errors (404, 405, 413, ...) and any
other exception: database timeouts and outages become 503, bad values the database refused 400,
anything else a 500 whose cause goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import psycopg
from apiflask import APIFlask, HTTPError
from apiflask.exceptions import _ValidationError
from flask import g, has_request_context, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from pgrecs.errors import first_line

log = logging.getLogger("pgrecs.api")

PROBLEM_JSON = "application/problem+json"

# The body schema, for the OpenAPI document.
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "message": {"type": "string"},
        "errors": {"type": "object"},
    },
    "required": ["type", "title", "status", "detail"],
}


def problem(status: int, detail: str, *, errors: dict | None = None, headers: dict | None = None,
            extra: dict | None = None):
    """A problem+json response tuple (body, status, headers)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail or title}
    if has_request_context():
        body["instance"] = request.path
        if g.get("request_id"):
            body["request_id"] = g.request_id
    body["message"] = body["detail"]
    if errors:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    out_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    out_headers["Content-Type"] = PROBLEM_JSON
    return body, status, out_headers


def _rollback() -> None:
    conn = g.get("db_conn")
    if conn is not None and not conn.closed:
        try:
            conn.rollback()
        except psycopg.Error:
            pass


def _path(parts: list) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _flatten(messages, parts: list, noun: str = "field") -> list[str]:
    """marshmallow's nested error map -> lines like "k must be between 1 and 100"."""
    if isinstance(messages, dict):
        lines: list[str] = []
        for key, value in messages.items():
            if key == "_schema":  # whole-object messages are full sentences
                texts = value if isinstance(value, list) else [value]
                lines += [_object_message(str(m), _path(parts)) for m in texts]
            else:
                lines += _flatten(value, parts + [key], noun)
        return lines
    if isinstance(messages, (list, tuple)):
        return [line for m in messages for line in _flatten(m, parts, noun)]
    text, where = str(messages), _path(parts)
    if text == "Unknown field.":
        return [f"unknown {noun}: {where}"]
    if not where or text.startswith(where + " "):
        return [text]
    if text[:1].islower():
        return [f"{where} {text}"]
    return [f"{where}: {text}"]


def _object_message(text: str, where: str) -> str:
    if text == "Invalid input type.":
        return f"{where} must be a JSON object" if where else "the body must be a JSON object"
    return text


def validation_detail(messages: dict) -> str:
    """One line for a validation error map ({location: {field: [messages]}}), each problem once."""
    lines: list[str] = []
    for location, fields in (messages or {}).items():
        noun = "query parameter" if location == "query" else "field"
        for line in _flatten(fields, [] if location in ("json", "query", "path", "view_args") else [location], noun):
            if line not in lines:
                lines.append(line)
    return "; ".join(lines) or "invalid request"


def _http_error(error: HTTPError):
    if isinstance(error, _ValidationError):
        return problem(error.status_code, validation_detail(error.detail), errors=error.detail,
                       headers=dict(error.headers or {}))
    detail = error.detail if isinstance(error.detail, dict) else ({"detail": error.detail} if error.detail else None)
    if error.status_code >= 500:
        _rollback()
    return problem(error.status_code, str(error.message or ""), errors=detail, headers=dict(error.headers or {}),
                   extra=error.extra_data)


def _werkzeug_error(error: HTTPException):
    headers = dict(error.get_headers())
    detail = error.description or error.name
    if error.code == 413:
        limit = request.max_content_length
        detail = f"the request body is larger than {limit} bytes" if limit else "the request body is too large"
    if (error.code or 500) >= 500:
        _rollback()
    return problem(error.code or 500, detail, headers=headers)


def _exception(error: Exception):
    _rollback()
    if isinstance(error, psycopg.errors.QueryCanceled):
        log.warning("statement timeout: %s", error.diag.message_primary)
        return problem(503, "the query ran longer than the statement timeout; try again or narrow it",
                       headers={"Retry-After": "1"})
    if isinstance(error, (PoolTimeout, psycopg.OperationalError)):
        log.error("database unavailable: %s", first_line(error))
        return problem(503, "the database is unavailable", headers={"Retry-After": "1"})
    if isinstance(error, psycopg.errors.NoDataFound):
        return problem(404, error.diag.message_primary or "not found")
    if isinstance(error, psycopg.DataError):
        return problem(400, error.diag.message_primary or "invalid value")
    log.exception("unhandled error on %s %s", request.method if has_request_context() else "-",
                  request.path if has_request_context() else "-")
    return problem(500, "internal server error")


def init_app(app: APIFlask) -> None:
    app.config["HTTP_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    # request validation (pgrecs.api.schemas) answers 400 like every other bad request here
    app.config["VALIDATION_ERROR_STATUS_CODE"] = 400
    app.config["VALIDATION_ERROR_SCHEMA"] = PROBLEM_SCHEMA
    app.config["VALIDATION_ERROR_DESCRIPTION"] = "Validation error"
    app.error_processor(_http_error)
    # replaces APIFlask's werkzeug handler, which drops the description
    app.register_error_handler(HTTPException, _werkzeug_error)
    app.register_error_handler(Exception, _exception)
