"""The generated table of docs/cli.md, from benchmarks/results/cli_startup.json:
`python -m benchmarks.cli_report` (`--check`: tests/test_cli_report.py; see benchmarks/doc_tables.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import doc_tables

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "cli_startup.json"
DOC = ROOT / "docs" / "cli.md"


def startup_table() -> str:
    if not RESULT.exists():
        return "_not measured yet: `python -m benchmarks.run cli_startup`_"
    result = json.loads(RESULT.read_text())
    lines = ["| command | database | before (median s) | now (median s) | now / before |",
             "| --- | --- | ---: | ---: | ---: |"]
    for row in result["commands"]:
        lines.append(f"| `{row['command']}` | {'yes' if row['needs_database'] else 'no'} | "
                     f"{row['baseline_median_s']:.3f} | {row['median_s']:.3f} | {row['ratio']:.2f} |")
    floors = ", ".join(f"`{name}` {seconds:.3f} s" for name, seconds in result["floors_median_s"].items())
    imported = result["imported_by_pgrecs_cli"]
    heavy = {rev: ", ".join(v["heavy"]) or "none" for rev, v in imported.items()}
    lines += ["", f"Median of {result['note'].split(' interleaved')[0].removeprefix('median of ')} interleaved "
              f"runs each, before = revision {result['baseline_revision']}, on {result['machine']['cpu_count']} "
              f"cores (load average {result['load_average_1m'][0]} to {result['load_average_1m'][1]}). "
              f"Floors in the same run: {floors}.",
              "",
              f"Libraries `import pgrecs.cli` loads: before {imported['baseline']['modules']} modules ({heavy['baseline']}); "
              f"now {imported['tree']['modules']} modules ({heavy['tree']})."]
    return "\n".join(lines)


SECTIONS = {"cli_startup": startup_table}


def main(argv: list[str]) -> int:
    return doc_tables.main(argv, DOC, SECTIONS, "python -m benchmarks.cli_report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
