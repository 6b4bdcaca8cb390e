"""recs.similar_items at 1,000,000 items (realistic vectors; isotropic: bench_similar_1m_isotropic.py):
benchmarks/bench_similar.py at N = 1,000,000 on its own
benchmark server (PGRECS_BENCH_1M_DIR, default /tmp/pgrecs_bench_1m) with shared_buffers 4GB (the HNSW
index alone is about 1.1 GB); results in benchmarks/results/similar_1m.json.

    flock /tmp/pgrecs-bench.lock .venv/bin/python -m benchmarks.run similar_1m

The first run builds the data set, its HNSW index and the hnswlib index (about 30 min on 2 shared
cores; maintenance_work_mem 3GB); later runs reuse them and take a few minutes. Set
PGRECS_BENCH_SIMILAR_PREPARE=1 to only build. The other knobs of bench_similar apply.
"""

from __future__ import annotations

import os
from pathlib import Path


def run() -> dict:
    import benchmarks.run as runner
    from benchmarks import bench_similar

    saved_env = dict(os.environ)
    saved_work = runner.WORK
    os.environ["PGRECS_BENCH_SIMILAR_N"] = "1000000"
    os.environ.setdefault("PGRECS_BENCH_SHARED_BUFFERS", "4GB")
    # bench_server() and the hnswlib index live under runner.WORK: point it at the 1M directory
    runner.WORK = Path(os.environ.get("PGRECS_BENCH_1M_DIR", "/tmp/pgrecs_bench_1m"))
    try:
        return bench_similar.run()
    finally:
        runner.WORK = saved_work
        os.environ.clear()
        os.environ.update(saved_env)
