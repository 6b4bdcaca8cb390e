"""docker-compose.yml cannot run here (no Docker engine); check it parses and names what exists."""

from __future__ import annotations

from pathlib import Path

import yaml

from pgrecs.cli import main

REPO = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_uses_pgvector_pg18_and_database_url():
    compose = _compose()
    assert compose["services"]["db"]["image"] == "pgvector/pgvector:pg18"
    for name in ("migrate", "api", "embedder"):
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in env["DATABASE_URL"]


def test_compose_commands_are_real_cli_commands():
    compose = _compose()
    commands = []
    for name in ("migrate", "api", "embedder"):
        command = compose["services"][name]["command"]
        text = command[-1] if command[0] == "sh" else " ".join(command)
        commands += [part.split() for part in text.split("&&")]
    for words in commands:
        assert words[0] == "pgrecs"
        assert words[1] in main.commands, f"compose runs unknown command: {' '.join(words)}"


def test_compose_migrate_job_runs_alembic_head():
    compose = _compose()
    assert "pgrecs migrate" in compose["services"]["migrate"]["command"][-1]
    assert compose["services"]["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
