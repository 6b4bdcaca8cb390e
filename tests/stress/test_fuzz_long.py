"""Long fuzzing run (make stress): the same schemathesis and hypothesis runs as tests/test_fuzz.py
with PGRECS_FUZZ_LONG_EXAMPLES examples per operation and mode (default 250, a few minutes).
Zero 5xx, and every response as the OpenAPI document declares it."""

from __future__ import annotations

import os

import pytest

import test_fuzz as fuzz

pytestmark = pytest.mark.stress

EXAMPLES = int(os.environ.get("PGRECS_FUZZ_LONG_EXAMPLES", "250"))


@pytest.fixture
def long_fuzz_app(db_url, conn, minilm):
    app = fuzz.build_fuzz_app(db_url, conn)
    yield app
    pool = app.extensions.get("pgrecs_pool")
    if pool is not None:
        pool.close()


def test_schemathesis_long(long_fuzz_app):
    calls = fuzz.run_schemathesis(long_fuzz_app, EXAMPLES)
    print("schemathesis calls per operation:", calls)
    assert sum(calls.values()) >= 6 * EXAMPLES


def test_hypothesis_bodies_long(long_fuzz_app):
    fuzz.run_hypothesis_bodies(long_fuzz_app, EXAMPLES)
