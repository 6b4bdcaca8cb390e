"""The generated tables of docs/collaborative.md, from benchmarks/results: `python -m benchmarks.cf_report`
rewrites every block between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; `--check` exits 1
when the committed page differs from what the JSON gives (tests/test_cf_report.py runs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import docpage

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "collaborative.md"
DATASETS = ("magazine", "beauty", "retail", "movielens")
PROTOCOLS = ("leave_last_out", "time_split")
METHOD_LABELS = {
    "dense": "dense EASE (the reference)",
    "blocks": "EASE by blocks (1,000 + halo 1,000)",
    "blocks_500": "EASE by blocks (500 + halo 500)",
    "als_hnsw": "ALS factors + hnswlib neighbours",
    "head_20pct": "dense EASE on the 20% most interacted items only",
    "cooccurrence": "co-occurrence (cosine x n/(n+10))",
}


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def candidates_table() -> str:
    scale = _load("cf_scale")
    if not scale or not scale.get("quality"):
        return "_not measured yet: `python -m benchmarks.run cf_scale`_"
    quality = scale["quality"]
    names = [d for d in DATASETS if d in quality]
    lines = ["| model | " + " | ".join(f"{d} ({quality[d]['items']:,} items)" for d in names) + " |",
             "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for method, label in METHOD_LABELS.items():
        cells = []
        for d in names:
            row = quality[d]["methods"].get(method)
            cells.append("–" if row is None else f"{_num(row['ndcg@10'])} ({row['ndcg_vs_dense']:.3f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table() -> str:
    scale = _load("cf_scale")
    if not scale or not scale.get("cost"):
        return "_not measured yet: `python -m benchmarks.run cf_scale`_"
    lines = ["| items | interactions | users | model | fit (s) | peak RSS (GiB) | held-out NDCG@10 (synthetic) |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row in scale["cost"]:
        label = METHOD_LABELS.get(row["method"], row["method"])
        fit = row.get("fit_s")
        lines.append(f"| {row['items']:,} | {row['interactions']:,} | {row['users']:,} | {label} | "
                     f"{'failed: ' + row['error'] if fit is None else f'{fit:,.1f}'} | {_num(row.get('peak_rss_gib'), 2)} | "
                     f"{_num(row.get('holdout_ndcg@10'))} |")
    return "\n".join(lines)


def evaluation_table() -> str:
    lines = ["| dataset | protocol | users | ease (dense) | ease:blocks | blocks / dense | cooccurrence | blocks / cooccurrence "
             "| recall@20 blocks / dense |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    found = False
    for d in DATASETS:
        for p in PROTOCOLS:
            run = _load(f"evaluation_cf_{d}_{p}")
            if not run:
                continue
            found = True
            s = {name: v["all"] for name, v in run["strategies"].items() if "all" in v}
            dense, blocks, cooc = (s.get(n, {}).get("ndcg@10") for n in ("ease", "ease:blocks", "cooccurrence"))
            users = s.get("ease", {}).get("users")
            recall_dense, recall_blocks = (s.get(n, {}).get("recall@20") for n in ("ease", "ease:blocks"))
            lines.append(f"| {d} | {p.replace('_', '-')} | {users} | {_num(dense)} | {_num(blocks)} | "
                         f"{_num(blocks / dense if dense and blocks is not None else None, 3)} | {_num(cooc)} | "
                         f"{_num(blocks / cooc if cooc and blocks is not None else None, 3)} | "
                         f"{_num(recall_blocks / recall_dense if recall_dense and recall_blocks is not None else None, 3)} |")
    return "\n".join(lines) if found else "_not measured yet: `bash benchmarks/cf_quality.sh`_"


def targets_summary() -> str:
    scale = _load("cf_scale") or {}
    lines = []
    million = [r for r in scale.get("cost", []) if r["method"] == "blocks" and r["items"] == 1_000_000 and "fit_s" in r]
    if million:
        r = million[0]
        lines.append(f"- 1,000,000 items ({r['interactions']:,} interactions): fit {r['fit_s']:,.0f} s "
                     f"(target <= 1,800 s), peak RSS {r['peak_rss_gib']} GiB (target <= 8 GiB): "
                     + ("met" if r["fit_s"] <= 1800 and r["peak_rss_gib"] <= 8 else "NOT met"))
    ratios = []
    for d in DATASETS:
        for p in PROTOCOLS:
            run = _load(f"evaluation_cf_{d}_{p}")
            if run:
                s = {n: v["all"]["ndcg@10"] for n, v in run["strategies"].items() if "all" in v}
                if s.get("ease") and "ease:blocks" in s:
                    ratios.append((s["ease:blocks"] / s["ease"], d, p))
    if ratios:
        worst = min(ratios)
        lines.append(f"- `pgrecs evaluate`, EASE by blocks against dense EASE (NDCG@10), {len(ratios)} runs: lowest ratio "
                     f"{worst[0]:.3f} ({worst[1]}, {worst[2].replace('_', '-')}); target >= 0.97: "
                     + ("met" if worst[0] >= 0.97 else "NOT met"))
    substitute = {r["method"]: r for r in scale.get("cost", []) if r["items"] == 20_000 and "holdout_ndcg@10" in r}
    if "blocks" in substitute and "dense" in substitute and substitute["dense"]["holdout_ndcg@10"]:
        ratio = substitute["blocks"]["holdout_ndcg@10"] / substitute["dense"]["holdout_ndcg@10"]
        lines.append(f"- 20,000 synthetic items (the substitute for a 20,000-item subset of a larger real catalog, "
                     f"which the shared data lacks): EASE by blocks / dense EASE held-out NDCG@10 {ratio:.3f}; "
                     "target >= 0.97: " + ("met" if ratio >= 0.97 else "NOT met"))
    synthetic = [r for r in scale.get("cost", []) if r["items"] > 20_000 and "holdout_ndcg@10" in r]
    for n in sorted({r["items"] for r in synthetic}):
        by = {r["method"]: r["holdout_ndcg@10"] for r in synthetic if r["items"] == n}
        if "blocks" in by and "cooccurrence" in by:
            lines.append(f"- {n:,} synthetic items (above the dense limit): EASE by blocks {by['blocks']:.4f} against "
                         f"co-occurrence {by['cooccurrence']:.4f} held-out NDCG@10: "
                         + ("beats it" if by["blocks"] > by["cooccurrence"] else "does NOT beat it"))
    return "\n".join(lines) or "_not measured yet_"


SECTIONS = {"cf_targets": targets_summary, "cf_candidates": candidates_table, "cf_cost": cost_table,
            "cf_evaluation": evaluation_table}


def render(text: str) -> str:
    return docpage.render(text, SECTIONS)


def main(argv: list[str]) -> int:
    return docpage.main(DOC, SECTIONS, "benchmarks.cf_report", argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
