"""Configuration: one Settings object read from the environment, documented in .env.example."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgrecs.config import Settings, env_example, load_settings
from pgrecs.errors import PgrecsError

REPO = Path(__file__).resolve().parent.parent
ENV_NAMES = {f.metadata["env"] for f in dataclasses.fields(Settings)}


def _example_keys(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_env_example_is_generated_from_the_settings():
    committed = (REPO / ".env.example").read_text()
    assert committed == env_example(), "regenerate with: python -m pgrecs.config > .env.example"
    keys = _example_keys(committed)
    assert set(keys) == ENV_NAMES
    # the defaults written there are the ones load_settings applies to an empty environment
    assert load_settings(keys) == load_settings({})


def test_only_the_settings_module_reads_pgrecs_variables():
    reads = re.compile(r"""(?:os\.environ\.get|os\.getenv|os\.environ\[|envvar=)\(?\s*["']([A-Z_]+)["']""")
    found = {}
    for path in (REPO / "app").rglob("*.py"):
        if path.name == "config.py" and path.parent.name == "app":
            continue
        for name in reads.findall(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(REPO)))
    # PGUSER is libpq's own fallback for a URL without a user (app/dbt.py), not a pgrecs setting
    assert {name: files for name, files in found.items() if name != "PGUSER"} == {}


def test_values_are_parsed_and_bad_ones_name_their_variable():
    settings = load_settings({"DATABASE_URL": "postgresql://db/x", "PGRECS_DB_POOL_SIZE": " 3 ",
                              "PGRECS_LOG_LEVEL": "debug", "PGRECS_EMBEDDING_MODEL": "",
                              "PGRECS_CONSOLE_SECURE_COOKIES": "ALWAYS"})
    assert (settings.database_url, settings.db_pool_size, settings.log_level) == ("postgresql://db/x", 3, "DEBUG")
    assert settings.embedding_model is None and settings.console_secure_cookies == "always"
    assert settings.home.is_absolute()
    for env, value, message in [("PGRECS_DB_POOL_SIZE", "eight", "PGRECS_DB_POOL_SIZE must be a whole number"),
                                ("PGRECS_DB_POOL_SIZE", "0", "PGRECS_DB_POOL_SIZE must be at least 1"),
                                ("PGRECS_LOG_LEVEL", "loud", "PGRECS_LOG_LEVEL must be one of DEBUG, INFO"),
                                ("PGRECS_CONSOLE_SECURE_COOKIES", "never", "must be one of auto, always")]:
        with pytest.raises(PgrecsError, match=message):
            load_settings({env: value})


def test_flask_config_carries_every_setting_the_api_uses():
    config = load_settings({"PGRECS_MAX_BODY_BYTES": "2048"}).flask_config()
    assert config["MAX_CONTENT_LENGTH"] == 2048
    assert {"DATABASE_URL", "API_DATABASE_URL", "STATEMENT_TIMEOUT_MS", "LOG_LEVEL", "EMBEDDING_MODEL",
            "DB_POOL_SIZE", "PROMETHEUS_MULTIPROC_DIR", "CONSOLE_IDLE_MINUTES", "CONSOLE_SECURE_COOKIES"} <= set(config)


def test_the_api_applies_its_settings(db_url):
    from pgrecs.api import create_app

    settings = load_settings({"DATABASE_URL": db_url, "PGRECS_MAX_BODY_BYTES": "512",
                              "PGRECS_STATEMENT_TIMEOUT_MS": "1234", "PGRECS_DB_POOL_SIZE": "2"})
    app = create_app({"TESTING": True}, settings=settings)
    client = app.test_client()
    response = client.post("/events", data=b"[" + b" " * 600 + b"]", content_type="application/json")
    assert response.status_code == 413
    with app.app_context():
        from pgrecs.api.database import get_conn, get_pool

        assert get_conn().execute("show statement_timeout").fetchone()[0] == "1234ms"
        assert get_pool().max_size == 2


def test_a_bad_variable_is_one_line_from_the_cli(monkeypatch):
    from pgrecs.cli import main

    monkeypatch.setenv("PGRECS_STATEMENT_TIMEOUT_MS", "5s")
    result = CliRunner().invoke(main, ["db", "status"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: PGRECS_STATEMENT_TIMEOUT_MS must be a whole number, got '5s'"


def test_serve_refuses_an_unknown_model_in_one_line(cli):
    result = cli("serve", "--model", "no-such-model", "--port", "1")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown embedding model 'no-such-model' (pgrecs models list shows the registered ones)"]


@pytest.mark.slow
def test_db_env_lets_dbt_connect_by_hand(db_url, tmp_path):
    """`eval "$(pgrecs db env)"` and dbt's own CLI reaches the same database."""
    import psycopg

    from pgrecs.cli import main

    result = CliRunner().invoke(main, ["--db-url", db_url, "db", "env"])
    assert result.exit_code == 0, result.output
    exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in result.stdout.splitlines())
    assert {"PGRECS_DBT_HOST", "PGRECS_DBT_PORT", "PGRECS_DBT_USER", "PGRECS_DBT_DBNAME",
            "DBT_PROFILES_DIR"} <= set(exports)
    with psycopg.connect(db_url) as conn:
        dbname = conn.execute("select current_database()").fetchone()[0]
    assert exports["PGRECS_DBT_DBNAME"] == dbname
    bin_dir = Path(sys.executable).parent  # the scripts of this environment: pgrecs and dbt
    script = f'eval "$(pgrecs --db-url {shlex.quote(db_url)} db env)" && ' \
             f"dbt --no-use-colors debug --project-dir {shlex.quote(str(REPO / 'dbt_project'))} --log-path {tmp_path}"
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Connection test: [OK connection ok]" in run.stdout


def test_console_cookies_can_be_always_secure(db_url):
    from pgrecs.api import create_app
    from pgrecs.console.session import is_secure_request

    for mode, expected in [("auto", False), ("always", True)]:
        app = create_app({"TESTING": True}, settings=load_settings({"DATABASE_URL": db_url,
                                                                    "PGRECS_CONSOLE_SECURE_COOKIES": mode}))
        with app.test_request_context("/console/login", base_url="http://shop.example"):
            assert is_secure_request() is expected


def test_serve_on_an_unmigrated_database_says_what_to_do(empty_db_url):
    from pgrecs.cli import main

    result = CliRunner().invoke(main, ["--db-url", empty_db_url, "serve", "--port", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: the database has no pgrecs schema yet: run pgrecs migrate"
