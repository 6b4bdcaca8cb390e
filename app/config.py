"""Configuration: every setting pgrecs reads, read once from the environment.

`Settings` is the only place that reads pgrecs' environment variables. The CLI reads it once per
invocation (its --db-url and --tenant options override two fields), and the API reads it once in
`create_app`, which copies it into the Flask config (the key is the field name in capitals). Each
field names its variable, its default and one sentence; `.env.example` is generated from them
(`python -m pgrecs.config > .env.example`) and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pgrecs.errors import PgrecsError

DEFAULT_TENANT = "default"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SECURE_COOKIE_MODES = ("auto", "always")


def _key(env: str, default: str, doc: str, *, choices: tuple[str, ...] = (), minimum: int | None = None):
    return {"env": env, "default": default, "doc": doc, "choices": choices, "minimum": minimum}


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, metadata=_key(
        "DATABASE_URL", "",
        "PostgreSQL URL. Unset: pgrecs starts an embedded PostgreSQL 18 + pgvector under $PGRECS_HOME."))
    home: Path = field(default=Path(".pgrecs"), metadata=_key(
        "PGRECS_HOME", ".pgrecs",
        "Where pgrecs keeps local state: the embedded server's data (pgdata/) and fine-tuned models (models/)."))
    tenant: str = field(default=DEFAULT_TENANT, metadata=_key(
        "PGRECS_TENANT", DEFAULT_TENANT,
        "Tenant used by the CLI when no --tenant is given (the API takes the tenant from the API key)."))
    api_database_url: str | None = field(default=None, metadata=_key(
        "PGRECS_API_DATABASE_URL", "",
        "The API's own login (a role granted pgrecs_api, so row-level security applies). Unset: the API "
        "logs in with DATABASE_URL and switches with SET ROLE pgrecs_api."))
    replica_urls: str | None = field(default=None, metadata=_key(
        "PGRECS_REPLICA_URLS", "",
        "Read replicas (hot standbys of DATABASE_URL's server), comma-separated URLs with the API's database "
        "and login. The API sends recommendations, similar items and search to them. Unset: none, except the "
        "running embedded replicas of `pgrecs db replica add` when the primary is the embedded server."))
    statement_timeout_ms: int = field(default=5000, metadata=_key(
        "PGRECS_STATEMENT_TIMEOUT_MS", "5000",
        "Statement timeout for each API request, in milliseconds (0: none).", minimum=0))
    max_body_bytes: int = field(default=1048576, metadata=_key(
        "PGRECS_MAX_BODY_BYTES", "1048576", "Largest accepted request body, in bytes.", minimum=1))
    log_level: str = field(default="INFO", metadata=_key(
        "PGRECS_LOG_LEVEL", "INFO", "Level of the API's JSON logs on stderr.", choices=LOG_LEVELS))
    embedding_model: str | None = field(default=None, metadata=_key(
        "PGRECS_EMBEDDING_MODEL", "",
        "Registered model the API embeds /search queries with (pgrecs models list; pgrecs serve --model). "
        "Unset: the default model."))
    db_pool_size: int = field(default=8, metadata=_key(
        "PGRECS_DB_POOL_SIZE", "8",
        "Most database connections each API worker process keeps open.", minimum=1))
    prometheus_multiproc_dir: str | None = field(default=None, metadata=_key(
        "PROMETHEUS_MULTIPROC_DIR", "",
        "A writable directory shared by gunicorn workers, so /metrics adds up all workers (unset: per worker)."))
    console_idle_minutes: int = field(default=30, metadata=_key(
        "PGRECS_CONSOLE_IDLE_MINUTES", "30",
        "Minutes a merchant console session may stay unused before it has to sign in again.", minimum=1))
    console_secure_cookies: str = field(default="auto", metadata=_key(
        "PGRECS_CONSOLE_SECURE_COOKIES", "auto",
        "Console cookies carry Secure: auto (when the request or X-Forwarded-Proto is https) or always "
        "(behind a TLS proxy that sends no X-Forwarded-Proto).", choices=SECURE_COOKIE_MODES))

    @property
    def embedded_data_dir(self) -> Path:
        return self.home / "pgdata"

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def flask_config(self) -> dict:
        """The API's Flask config: each field under its name in capitals (the body limit under Flask's own key)."""
        config = {f.name.upper(): getattr(self, f.name) for f in dataclasses.fields(self)}
        config["MAX_CONTENT_LENGTH"] = config.pop("MAX_BODY_BYTES")
        del config["HOME"], config["TENANT"]  # the API takes the tenant from each request's key
        return config


def _parse(spec: dataclasses.Field, raw: str):
    meta, kind = spec.metadata, spec.type
    raw = raw.strip()
    if kind == "int":
        try:
            value = int(raw)
        except ValueError:
            raise PgrecsError(f"{meta['env']} must be a whole number, got {raw!r}") from None
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise PgrecsError(f"{meta['env']} must be at least {meta['minimum']}, got {value}")
        return value
    if kind == "Path":
        return Path(raw or meta["default"]).expanduser().resolve()
    if meta["choices"]:
        value = (raw or meta["default"])
        value = value.upper() if meta["choices"] == LOG_LEVELS else value.lower()
        if value not in meta["choices"]:
            raise PgrecsError(f"{meta['env']} must be one of {', '.join(meta['choices'])}, got {raw!r}")
        return value
    if kind == "str | None":
        return raw or None
    return raw or meta["default"]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (or the mapping given); unset or empty variables take their default.
    A malformed value is a PgrecsError naming the variable."""
    environ = os.environ if environ is None else environ
    values = {}
    for spec in dataclasses.fields(Settings):
        raw = environ.get(spec.metadata["env"], "")
        values[spec.name] = _parse(spec, raw if raw.strip() else spec.metadata["default"])
    return Settings(**values)


@functools.cache
def settings() -> Settings:
    """This process's settings, read from the environment on first use."""
    return load_settings()


def env_example() -> str:
    """The text of .env.example: every variable with its default and what it does."""
    lines = ["# Every pgrecs setting with its default (app/config.py; regenerate with",
             "# `python -m pgrecs.config > .env.example`). Empty means unset."]
    for spec in dataclasses.fields(Settings):
        meta = spec.metadata
        lines += ["", *(f"# {line}" for line in textwrap.wrap(meta["doc"], 98)), f"{meta['env']}={meta['default']}"]
    return "\n".join(lines) + "\n"


def replica_urls(settings: Settings | None = None) -> list[str]:
    """The external read replicas named by PGRECS_REPLICA_URLS (comma-separated)."""
    raw = (settings or load_settings()).replica_urls or ""
    return [url.strip() for url in raw.split(",") if url.strip()]


if __name__ == "__main__":
    print(env_example(), end="")
