"""Configuration, read once from the environment. Every key is documented in .env.example."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    home: Path
    tenant: str
    statement_timeout_ms: int

    @property
    def embedded_data_dir(self) -> Path:
        return self.home / "pgdata"


def load_settings() -> Settings:
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        home=Path(os.environ.get("PGRECS_HOME", ".pgrecs")).expanduser().resolve(),
        tenant=os.environ.get("PGRECS_TENANT", DEFAULT_TENANT),
        statement_timeout_ms=int(os.environ.get("PGRECS_STATEMENT_TIMEOUT_MS", "5000")),
    )


def replica_urls() -> list[str]:
    """External read replicas (hot standbys of DATABASE_URL's server): PGRECS_REPLICA_URLS, comma-separated."""
    return [url.strip() for url in os.environ.get("PGRECS_REPLICA_URLS", "").split(",") if url.strip()]
