"""The generated tables of docs/catalog-quality.md, from benchmarks/results/text_rule.json:
`python -m benchmarks.text_rule_report` rewrites every block between `<!-- generated: NAME -->` and
`<!-- end: NAME -->`; `--check` exits 1 when the committed page differs from what the JSON gives
(tests/test_generated_docs.py runs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import doc_tables

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "text_rule.json"
DOC = ROOT / "docs" / "catalog-quality.md"
REASONS = ("empty text", "no words", "repeated characters", "placeholder text")
LABELS = {"magazine": "Amazon magazines", "movielens": "MovieLens", "beauty": "Amazon beauty",
          "retail": "UCI Online Retail (products bought)", "retail_raw_names": "UCI Online Retail (every raw name)"}


def _catalogs() -> dict | None:
    return json.loads(RESULT.read_text())["catalogs"] if RESULT.exists() else None


def _quote(texts: list[str], most: int = 5) -> str:
    shown = [t.replace("|", "\\|")[:40] for t in texts[:most]]
    return ", ".join(f"`{t}`" if t.strip() else "(empty)" for t in shown) or "–"


def counts_table() -> str:
    catalogs = _catalogs()
    if not catalogs:
        return "_not measured yet: `python -m benchmarks.run text_rule`_"
    lines = ["| catalog | items | " + " | ".join(REASONS) + " | refused now | refused by the length rule | embedded now, refused before |",
             "| --- | ---: | " + " | ".join("---:" for _ in REASONS) + " | ---: | ---: | ---: |"]
    for name, m in catalogs.items():
        reasons = m["junk_rule_reasons"]
        lines.append(f"| {LABELS.get(name, name)} | {m['items']:,} | "
                     + " | ".join(f"{reasons.get(r, 0):,}" for r in REASONS)
                     + f" | {m['refused_by_junk_rule']:,} ({100 * m['refused_by_junk_rule'] / max(m['items'], 1):.1f}%)"
                     f" | {m['refused_by_length_rule']:,} | {m['embedded_now_refused_before']:,} |")
    return "\n".join(lines)


def examples_table() -> str:
    catalogs = _catalogs()
    if not catalogs:
        return "_not measured yet: `python -m benchmarks.run text_rule`_"
    lines = ["| catalog | refused, by reason | embedded now, refused by the length rule |", "| --- | --- | --- |"]
    for name, m in catalogs.items():
        refused = "; ".join(f"{reason}: {_quote(texts, 4)}" for reason, texts in m["junk_rule_examples"].items()) or "–"
        lines.append(f"| {LABELS.get(name, name)} | {refused} | {_quote(m['embedded_now_refused_before_examples'])} |")
    return "\n".join(lines)


SECTIONS = {"text_rule_counts": counts_table, "text_rule_examples": examples_table}


def render(text: str) -> str:
    return doc_tables.render(text, SECTIONS)


def main(argv: list[str]) -> int:
    return doc_tables.main(argv, DOC, SECTIONS, "python -m benchmarks.text_rule_report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
