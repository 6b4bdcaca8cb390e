"""Request ids, structured JSON logs and Prometheus metrics.

- X-Request-Id: taken from the request when it is a safe token (1-128 of [A-Za-z0-9._-]),
  otherwise a new uuid4; echoed on every response, put in every log line and problem body.
- Logs: one JSON object per line on stderr (logger `pgrecs`), one access line per request with
  request id, method, path, endpoint, status, duration, tenant and API key id.
- GET /metrics (scope admin): `pgrecs_http_request_duration_seconds` histogram per method,
  endpoint (the route template) and status; `pgrecs_http_errors_total` per endpoint and status
  (4xx and 5xx); `pgrecs_embedding_queue_depth` per tenant (the caller's tenant, read at scrape
  time); per read replica `pgrecs_replica_up`, `pgrecs_replica_lag_seconds` and
  `pgrecs_replica_lag_bytes` (read from each replica at scrape time). Under gunicorn with several
  workers set PROMETHEUS_MULTIPROC_DIR to aggregate them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from apiflask import APIBlueprint
from flask import Response, current_app, g, has_request_context, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

from pgrecs.api.auth import require_scope

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY = Histogram(
    "pgrecs_http_request_duration_seconds", "HTTP request latency by endpoint",
    ["method", "endpoint", "status"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("pgrecs_http_errors_total", "HTTP responses with status >= 400", ["endpoint", "status"],
                 registry=REGISTRY)
QUEUE_DEPTH = Gauge("pgrecs_embedding_queue_depth", "Items waiting in pgrecs.embedding_queue", ["tenant"],
                    registry=REGISTRY, multiprocess_mode="livemax")

REPLICA_LAG_SECONDS = Gauge("pgrecs_replica_lag_seconds", "Replay lag of each read replica (0 when caught up)",
                            ["replica"], registry=REGISTRY, multiprocess_mode="livemax")
REPLICA_LAG_BYTES = Gauge("pgrecs_replica_lag_bytes", "WAL bytes each read replica has still to replay",
                          ["replica"], registry=REGISTRY, multiprocess_mode="livemax")
REPLICA_UP = Gauge("pgrecs_replica_up", "1 when the read replica answers as a standby and takes reads",
                   ["replica"], registry=REGISTRY, multiprocess_mode="livemin")

log = logging.getLogger("pgrecs")
access_log = logging.getLogger("pgrecs.access")

bp = APIBlueprint("metrics", __name__)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields passed in `extra` and the request id are included."""

    RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            out["request_id"] = g.request_id
        out.update({k: v for k, v in vars(record).items() if k not in self.RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the `pgrecs` loggers (once per process)."""
    if getattr(log, "_pgrecs_json", False):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(level)
    # the records stop here: a library that configures the root logger (dbt, run in-process by
    # `pgrecs demo` before it serves) would print every line a second time in its own format
    log.propagate = False
    log._pgrecs_json = True


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint, status = _route(), response.status_code
    LATENCY.labels(request.method, endpoint, str(status)).observe(elapsed)
    if status >= 400:
        ERRORS.labels(endpoint, str(status)).inc()
    access_log.info("request", extra={
        "method": request.method, "path": request.path, "endpoint": endpoint, "status": status,
        "duration_ms": round(elapsed * 1000, 2), "tenant": g.get("tenant"), "api_key_id": g.get("api_key_id"),
    })
    return response


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics", description="Text exposition format; needs the admin scope.")
@require_scope("admin")
def metrics():
    from pgrecs.api.database import current_tenant, get_conn

    from pgrecs.api.database import replica_set
    from pgrecs.replicas import WAL_POSITION

    depth, wal_lsn = get_conn().execute(
        f"select count(*), {WAL_POSITION} from pgrecs.embedding_queue").fetchone()
    QUEUE_DEPTH.labels(current_tenant()).set(depth)
    for name, state in replica_set().states(wal_lsn).items():
        REPLICA_UP.labels(name).set(1 if state["serving"] else 0)
        REPLICA_LAG_SECONDS.labels(name).set(state["lag_seconds"] if state["lag_seconds"] is not None else float("nan"))
        REPLICA_LAG_BYTES.labels(name).set(state["lag_bytes"] if state["lag_bytes"] is not None else float("nan"))
    if current_app.config["PROMETHEUS_MULTIPROC_DIR"]:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY)
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    setup_logging(app.config["LOG_LEVEL"])
    # first before_request, last after_request: every response, errors included, gets an id
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.after_request(finish_request)
    app.register_blueprint(bp)
