"""Stress fixtures: a dedicated embedded PostgreSQL per module, which the fault tests kill."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stresskit import Server  # noqa: E402

from pgrecs import embedded  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("stress") / "pgdata")
    yield srv
    embedded.stop(srv.data_dir)
