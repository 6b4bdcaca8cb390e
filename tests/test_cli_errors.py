"""Expected CLI failures: one clear line on stderr, exit status 1, never a traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgrecs.cli import main

REPO = Path(__file__).resolve().parent.parent


def one_line_error(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def items_csv(tmp_path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text("external_id,title\nA,Mug\n")
    return path


def test_missing_file(cli, tmp_path):
    assert "file not found" in one_line_error(cli("load", "items", str(tmp_path / "nope.csv")))


def test_unknown_extension(cli, tmp_path):
    path = tmp_path / "items.xlsx"
    path.write_bytes(b"PK\x03\x04 not a csv")
    assert "cannot tell the format" in one_line_error(cli("load", "items", str(path)))


def test_wrong_format(cli, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('{"external_id": "A"}\n')  # JSON Lines named .csv
    assert "no external_id column" in one_line_error(cli("load", "items", str(path)))
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("external_id,title\nA,Mug\n")  # CSV named .jsonl
    assert "does not look like JSON Lines" in one_line_error(cli("load", "items", str(jsonl)))
    binary = tmp_path / "items2.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01\x02garbage")
    assert "error:" in one_line_error(cli("load", "items", str(binary)))


def test_broken_gzip(cli, tmp_path):
    path = tmp_path / "items.csv.gz"
    path.write_bytes(gzip.compress(b"external_id,title\nA,Mug\n" * 100)[:40])
    assert "gzip" in one_line_error(cli("load", "items", str(path)))


def test_bad_mapping(cli, items_csv):
    assert "is not an items field" in one_line_error(cli("load", "items", str(items_csv), "--map", "sku=external_id"))
    assert "no column 'sku'" in one_line_error(cli("load", "items", str(items_csv), "--map", "external_id=sku"))
    assert "expected canonical=source" in one_line_error(cli("load", "items", str(items_csv), "--map", "external_id"))
    assert "with an events field" in one_line_error(cli("load", "events", str(items_csv), "--set", "colour=red"))


def test_unreachable_database(items_csv):
    result = CliRunner().invoke(main, ["--db-url", "postgresql://pgrecs@127.0.0.1:1/none?connect_timeout=2",
                                       "load", "items", str(items_csv)])
    assert "cannot reach the database" in one_line_error(result)


def test_unmigrated_database(empty_db_url, items_csv):
    result = CliRunner().invoke(main, ["--db-url", empty_db_url, "load", "items", str(items_csv)])
    assert "pgrecs migrate" in one_line_error(result)


def test_unknown_tenant(cli, items_csv, db_url):
    result = CliRunner().invoke(main, ["--db-url", db_url, "--tenant", "nobody", "load", "items", str(items_csv)])
    assert "unknown tenant" in one_line_error(result)


def test_real_process_prints_one_line(tmp_path):
    """The installed entry point, as a user runs it."""
    env = {**os.environ, "DATABASE_URL": "postgresql://127.0.0.1:1/none"}
    proc = subprocess.run([sys.executable, "-c", "from pgrecs.cli import main; main()", "load", "events", str(tmp_path / "missing.jsonl")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: file not found: {tmp_path / 'missing.jsonl'}"]
    assert proc.stdout == ""
