"""API keys as data: a key is `pgr_` + 43 url-safe characters (256 random bits); the table
pgrecs.api_keys stores only its sha256, with the tenant and scopes (pgrecs.api.auth checks them on
each request).

The management functions (`pgrecs keys`, the demo, tests) run as the operator's role, not the API
role. This module imports no web framework, so the CLI stays quick to start.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from pgrecs.errors import PgrecsError

if TYPE_CHECKING:
    import psycopg

PREFIX = "pgr_"
SCOPES = ("read", "write", "admin", "merchant")


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise PgrecsError(f"scopes must be a comma-separated subset of {','.join(SCOPES)} (got {text!r})")
    return sorted(set(scopes), key=SCOPES.index)


def create_key(conn: psycopg.Connection, tenant: str, scopes: list[str], name: str = "") -> tuple[int, str]:
    """Store a new key's hash (adding the tenant when new); returns (key id, key), the key shown once."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute("insert into pgrecs.tenants (tenant_id, name) values (%s, %s) on conflict do nothing",
                         (tenant, tenant))
    except psycopg.errors.CheckViolation:
        raise PgrecsError(f"invalid tenant id {tenant!r}: lowercase letters, digits, '_' and '-', at most 63") from None
    if len(name) > 200:
        raise PgrecsError("key name must be at most 200 characters")
    key = new_key()
    key_id = conn.execute(
        "insert into pgrecs.api_keys (tenant_id, name, key_prefix, key_sha256, scopes)"
        " values (%s, %s, %s, %s, %s) returning key_id",
        (tenant, name, key[: len(PREFIX) + 6], key_sha256(key), scopes),
    ).fetchone()[0]
    return key_id, key


def list_keys(conn: psycopg.Connection, tenant: str | None = None) -> list[tuple]:
    return conn.execute(
        "select key_id, tenant_id, name, key_prefix, scopes, created_at, revoked_at from pgrecs.api_keys"
        " where %(tenant)s::text is null or tenant_id = %(tenant)s order by key_id",
        {"tenant": tenant},
    ).fetchall()


def revoke_key(conn: psycopg.Connection, key_id: int) -> bool:
    """Revoke a key (idempotent); False when no such key exists."""
    row = conn.execute(
        "update pgrecs.api_keys set revoked_at = coalesce(revoked_at, now()) where key_id = %s returning key_id",
        (key_id,),
    ).fetchone()
    return row is not None
