"""recs.similar_items at 1,000,000 isotropic-cluster vectors (the worst case described in
benchmarks/bench_similar.py): bench_similar_1m with PGRECS_BENCH_SIMILAR_DATA=isotropic, results in
similar_1m_isotropic.json.

    flock /tmp/pgrecs-bench.lock .venv/bin/python -m benchmarks.run similar_1m_isotropic
"""

from __future__ import annotations

import os


def run() -> dict:
    from benchmarks import bench_similar_1m

    saved = os.environ.get("PGRECS_BENCH_SIMILAR_DATA")
    os.environ["PGRECS_BENCH_SIMILAR_DATA"] = "isotropic"
    try:
        return bench_similar_1m.run()
    finally:
        if saved is None:
            os.environ.pop("PGRECS_BENCH_SIMILAR_DATA", None)
        else:
            os.environ["PGRECS_BENCH_SIMILAR_DATA"] = saved
