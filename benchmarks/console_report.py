"""The speed table of docs/console.md, from benchmarks/results/console.json:
`python -m benchmarks.console_report` rewrites the block between `<!-- generated: console_speed -->`
and `<!-- end: console_speed -->`; `--check` exits 1 when the page differs from what the JSON gives."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "console.json"
DOC = ROOT / "docs" / "console.md"
BLOCK = re.compile(r"(<!-- generated: console_speed -->\n).*?(<!-- end: console_speed -->)", re.S)


def _ms(summary: dict | None) -> str:
    return "–" if not summary else f"{summary['median_ms']:,.0f} ({summary['p95_ms']:,.0f})"


def speed_table() -> str:
    if not RESULT.exists():
        return "_not measured yet: `python -m benchmarks.run console`_"
    result = json.loads(RESULT.read_text())
    base = result.get("baseline_code")
    head = ["page", "median (p95) ms", "charts drawn afresh: median (p95) ms"]
    if base:
        head += [f"before ({base['commit']}): median (p95) ms", "median / before"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for page, r in result["pages"].items():
        cells = [f"{page} `{r.get('path', '')}`".replace(" ``", ""), _ms(r), _ms(r.get("cold_charts"))]
        if base:
            cells += [_ms(r.get("baseline")), f"{r['ratio']:.2f}" if "ratio" in r else "–"]
        rows.append("| " + " | ".join(cells) + " |")
    load = result.get("load_average_1m", ["?", "?"])
    api = result["api_recommendations_ms"]
    rows.append("")
    rows.append(f"Target: {result['target']} on the demo data: " + ("met" if result["met"] else "NOT met")
                + f". {result['runs']} requests per page after 2 warm-ups, in {result.get('rounds', 1)} rounds, "
                f"in-process WSGI, on {result['machine']['cpu_count']} cores with a 1-minute load average of "
                f"{load[0]} before and {load[1]} after (a shared machine: medians, not means). "
                f"For scale: the JSON API's GET /items/22728/recommendations took {api['median_ms']:,.0f} ms "
                f"({api['p95_ms']:,.0f} p95) in the same run. Measured {result['started_at'][:16].replace('T', ' ')} UTC.")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    wanted = BLOCK.sub(lambda m: m.group(1) + speed_table() + "\n" + m.group(2), current)
    if argv == ["--check"]:
        if wanted != current:
            print("error: docs/console.md differs from benchmarks/results/console.json: "
                  "run `python -m benchmarks.console_report`", file=sys.stderr)
        return int(wanted != current)
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
