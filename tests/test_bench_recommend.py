"""The recommend benchmark's baseline: a git ref exported, its own package served, its own sql/ on a copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from benchmarks import bench_recommend
from benchmarks.run import exported_tree, package_path, resolve_ref

REPO = Path(__file__).resolve().parent.parent


def test_an_unknown_ref_is_refused_in_one_line():
    with pytest.raises(SystemExit) as exc:
        resolve_ref("no-such-ref-anywhere")
    message = str(exc.value)
    assert message.startswith("error: 'no-such-ref-anywhere' is not a commit") and "\n" not in message


def test_the_exported_tree_is_what_a_served_process_imports(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.run.WORK", tmp_path)
    with exported_tree("HEAD") as tree:
        assert (tree / "app" / "__init__.py").is_file() and (tree / "sql").is_dir()
        assert not (tree / ".git").exists()
        env, package = bench_recommend._served_package(tree, package_path(tree, tree.parent / "pythonpath"))
        # the exported copy, not the working tree the virtual environment has installed
        assert package == (tree / "app").resolve()
        assert package != (REPO / "app").resolve()
    assert not tree.exists()


def test_a_tree_without_the_package_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools.package-dir]\npgrecs = "nowhere"\n')
    with pytest.raises(SystemExit, match="has no pgrecs package at nowhere/"):
        package_path(tmp_path, tmp_path / "pythonpath")


def _databases(server_url: str) -> set[str]:
    with psycopg.connect(server_url) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def test_the_baseline_sql_runs_on_a_copy_in_file_name_order(server_url, db_url, tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "020_second.sql").write_text(
        "create or replace function public.bench_marker() returns text language sql immutable"
        " as $$ select public.bench_first() || '+second' $$;")
    (tmp_path / "sql" / "010_first.sql").write_text(
        "create or replace function public.bench_first() returns text language sql immutable as $$ select 'first' $$;")
    with bench_recommend._baseline_database(server_url, db_url, tmp_path, "v0") as copy_url:
        with psycopg.connect(copy_url) as conn:
            assert conn.execute("select public.bench_marker()").fetchone()[0] == "first+second"
            assert conn.execute("select count(*) from pgrecs.placements").fetchone()[0] > 0  # the copied data
        copy_name = psycopg.conninfo.conninfo_to_dict(copy_url)["dbname"]
        assert copy_name in _databases(server_url)
    assert copy_name not in _databases(server_url)
    with psycopg.connect(db_url) as conn:  # the source is untouched
        assert conn.execute("select to_regprocedure('public.bench_marker()')").fetchone()[0] is None


def test_a_baseline_sql_file_that_fails_says_which_in_one_line(server_url, db_url, tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "010_ok.sql").write_text("select 1;")
    (tmp_path / "sql" / "020_old.sql").write_text("select no_such_column from pgrecs.items;")
    with pytest.raises(SystemExit) as exc:
        with bench_recommend._baseline_database(server_url, db_url, tmp_path, "v0"):
            pass
    message = str(exc.value)
    assert message.startswith("error: baseline v0: sql/020_old.sql fails on the current schema: ")
    assert "no_such_column" in message and "\n" not in message
    assert not any(name.endswith("_baseline") for name in _databases(server_url))


def test_within_noise():
    assert bench_recommend._within_noise({"sql_item_p99": 1.1, "sql_user_p99": 1.11,
                                          "http_item_requests_per_s": 0.9, "http_user_requests_per_s": 0.89}) == {
        "sql_item_p99": True, "sql_user_p99": False, "http_item_requests_per_s": True,
        "http_user_requests_per_s": False}


@pytest.mark.slow
def test_one_command_measures_the_baseline_then_the_current_code(server_url, tmp_path):
    env = dict(os.environ, PGRECS_BENCH_DATABASE_URL=server_url, PGRECS_BENCH_DIR=str(tmp_path), BENCH_REUSE="0",
               BENCH_ITEMS="1000", BENCH_EVENTS="10000", BENCH_QUERIES="20", BENCH_HTTP_SECONDS="1",
               BENCH_BASELINE_REF="HEAD")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_recommend"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["baseline_ref"] == "HEAD"
    assert set(result["ratios"]) == {"sql_item_p99", "sql_user_p99", "http_item_requests_per_s",
                                     "http_user_requests_per_s"}
    assert result["ratios"]["sql_item_p99"] == round(
        result["sql_recommend_for_item"]["p99_ms"] / result["baseline_sql_recommend_for_item"]["p99_ms"], 3)
    assert result["within_noise"] == all(result["ratios_within_noise"].values())
    assert result["met"] == (result["value"] <= 30 and result["within_noise"])
    for key in ("http_item", "http_user"):
        assert result[key]["errors"] == 0 and result[f"baseline_{key}"]["errors"] == 0
        assert result[key]["package"] == str((REPO / "app").resolve())
        assert result[f"baseline_{key}"]["package"].startswith(str(tmp_path))
    assert result["baseline_sql_recommend_for_user"]["queries"] == result["sql_recommend_for_user"]["queries"]
