"""The wheel carries everything pgrecs needs at run time: built from the repository and installed
into a fresh virtual environment outside it, it runs the demo without serving."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# what a checkout holds besides the source: environments, local state, build and dbt outputs
LOCAL = shutil.ignore_patterns(".git", ".venv", ".pgrecs", "build", "dist", "*.egg-info", "__pycache__",
                               "target", "logs", "artifacts", ".pytest_cache", "reports")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_wheel_runs_the_demo_outside_the_checkout(server_url, tmp_path):
    from conftest import create_database, drop_database

    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=LOCAL)
    # no build isolation: the build backend comes from this environment, nothing is downloaded
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(source)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("pgrecs-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    # the dependencies from this environment's site directories, listed as plain paths (their own
    # .pth files are not run, so an editable install of the checkout cannot shadow the wheel)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    here = {sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("site-packages"))}
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(here)))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PGRECS_HOME": str(tmp_path / "home")}
    located = _run([str(python), "-c", "import pgrecs, pgrecs.resources as r; print(pgrecs.__file__);"
                    "print(r.resource('sql')); print(r.resource('dbt_project')); print(r.resource('data/sample'))"],
                   cwd=elsewhere, env=env).stdout.split()
    assert all(path.startswith(str(venv)) for path in located), located

    url = create_database(server_url, "template0")
    try:
        demo = _run([str(venv / "bin" / "pgrecs"), "--db-url", url, "demo", "--no-serve"], cwd=elsewhere, env=env,
                    timeout=1500)
        assert "Traceback" not in demo.stdout + demo.stderr
        top = _run([str(python), "-c",
                    "import sys, psycopg\n"
                    "with psycopg.connect(sys.argv[1]) as conn:\n"
                    "    rows = conn.execute(\"select r.external_id, i.title from recs.recommend_for_item(item => '22728',"
                    " k => 5) as r join pgrecs.items as i using (item_id) order by r.rank\").fetchall()\n"
                    "print(len(rows)); print(rows[0][1])", url], cwd=elsewhere, env=env).stdout.splitlines()
        assert top[0] == "5" and top[1], top
    finally:
        drop_database(server_url, url)
    assert os.listdir(elsewhere) == []  # nothing written where it was run
