"""Global request limits, checked before any endpoint runs (endpoints validate their own fields).

- body size: MAX_CONTENT_LENGTH ($PGRECS_MAX_BODY_BYTES, default 1 MiB) -> 413
- JSON bodies: malformed JSON -> 400; nesting deeper than 32, a list longer than 1000 elements,
  a string longer than 100,000 characters, NUL characters or unpaired surrogates -> 400
- query string: at most 50 parameters, each value at most 2,000 characters, no NUL -> 400;
  `k` (query or JSON body), where given, must be an integer in 1..100 -> 400
- path: no NUL characters -> 400
The statement timeout per request is set by pgrecs.api.database ($PGRECS_STATEMENT_TIMEOUT_MS).
"""

from __future__ import annotations

from apiflask import abort
from flask import request

MAX_DEPTH = 32
MAX_LIST = 1000
MAX_STRING = 100_000
MAX_ARGS = 50
MAX_ARG_CHARS = 2000
K_MAX = 100


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        abort(400, message=f"NUL characters are not allowed in {where}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        abort(400, message=f"invalid Unicode (unpaired surrogate) in {where}")


def _check_json(value, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        abort(400, message=f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            abort(400, message=f"a JSON string is longer than {MAX_STRING} characters")
        _check_text(value, "the JSON body")
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            abort(400, message=f"a JSON list holds more than {MAX_LIST} elements")
        for v in value:
            _check_json(v, depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_LIST:
            abort(400, message=f"a JSON object holds more than {MAX_LIST} fields")
        for k, v in value.items():
            _check_text(k, "the JSON body")
            _check_json(v, depth + 1)
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        abort(400, message="JSON numbers must be finite")


def _check_k(value) -> None:
    if value is None or value == "":
        return
    if isinstance(value, bool):
        abort(400, message="k must be an integer")
    try:
        k = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError, OverflowError):
        k = None
    if k is None:
        abort(400, message="k must be an integer")
    if not 1 <= k <= K_MAX:
        abort(400, message=f"k must be between 1 and {K_MAX}")


def check_request() -> None:
    _check_text(request.path, "the path")
    if len(request.args) > MAX_ARGS:
        abort(400, message=f"at most {MAX_ARGS} query parameters")
    for name, value in request.args.items(multi=True):
        if len(value) > MAX_ARG_CHARS:
            abort(400, message=f"query parameter {name} is longer than {MAX_ARG_CHARS} characters")
        _check_text(name, "the query string")
        _check_text(value, f"query parameter {name}")
    _check_k(request.args.get("k"))
    if request.method in ("POST", "PUT", "PATCH") and request.content_length != 0 and request.is_json:
        body = request.get_data(cache=True)
        if body:
            try:
                data = request.get_json(force=True, silent=False)
            except Exception as exc:  # werkzeug BadRequest or a decoding error
                abort(400, message=f"malformed JSON body: {getattr(exc, 'description', None) or exc}")
            _check_json(data)
            if isinstance(data, dict):
                _check_k(data.get("k"))


def init_app(app) -> None:
    app.before_request(check_request)
