"""Evaluation report: JSON and one self-contained HTML page (tables + inline SVG plots)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

HEADLINE = ("ndcg@10", "hit_rate@10", "recall@10", "map@10", "mrr@10", "precision@10",
            "coverage@10", "diversity@10", "novelty@10", "popularity_bias@10", "gini_brand@10", "gini_category@10")


def summary_rows(report: dict, slice_name: str = "all", columns=HEADLINE) -> list[list]:
    rows = []
    for name, row in report["strategies"].items():
        s = row["slices"].get(slice_name)
        if s:
            rows.append([name, s["users"], *[s["metrics"].get(c) for c in columns]])
    rows.sort(key=lambda r: -(r[2] if r[2] is not None else -1))
    return rows


def markdown_table(report: dict, columns=("ndcg@10", "hit_rate@10", "coverage@10")) -> str:
    lines = ["| strategy | users | " + " | ".join(columns) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    for r in summary_rows(report, columns=columns):
        lines.append(f"| {r[0]} | {r[1]} | " + " | ".join("" if v is None else f"{v:.3f}" for v in r[2:]) + " |")
    return "\n".join(lines)


def _svg_scatter(report: dict, x: str, y: str = "ndcg@10") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional
        return ""
    pts = [(n, r["slices"]["all"]["metrics"].get(x), r["slices"]["all"]["metrics"].get(y))
           for n, r in report["strategies"].items() if "all" in r["slices"]]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    if not pts:
        return ""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, xv, yv in pts:
        ax.scatter(xv, yv)
        ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]


def _svg_bars(report: dict, metric: str = "ndcg@10") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    rows = [(r[0], r[2]) for r in summary_rows(report, columns=(metric,)) if r[2] is not None]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 1))
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1])
    ax.set_xlabel(metric)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]


def _html_table(report: dict, slice_name: str, columns) -> str:
    rows = summary_rows(report, slice_name, columns)
    if not rows:
        return "<p>(no users in this slice)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("strategy", "users", *columns))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v)) if i < 2 else ('' if v is None else f'{v:.4f}')}</td>"
                         for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_comparisons(report: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(c['reference'])}</td><td>{c['diff']:+.4f}</td>"
        f"<td>[{c['low']:+.4f}, {c['high']:+.4f}]</td><td>{'better' if c['better'] else 'worse' if c['worse'] else '-'}</td></tr>"
        for name, c in (report.get("comparisons") or {}).items())
    if not rows:
        return ""
    return ("<h2>Paired bootstrap 95% intervals (NDCG@10, over test users)</h2><table><thead><tr><th>comparison</th>"
            "<th>reference</th><th>difference</th><th>interval</th><th></th></tr></thead><tbody>" + rows + "</tbody></table>")


def render_html(report: dict) -> str:
    ks = report["params"]["ks"]
    acc_cols = [f"{m}@{k}" for k in ks for m in ("ndcg", "hit_rate", "recall", "precision", "map", "mrr")]
    beyond = [f"{m}@10" for m in ("coverage", "diversity", "novelty", "popularity_bias", "gini_brand", "gini_category")]
    slice_cols = ("ndcg@10", "hit_rate@10", "recall@10")
    title = f"pgrecs evaluation: {report.get('dataset') or 'database'} ({report['protocol']})"
    tuned = report.get("tuned")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;font-size:13px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.plots{{display:flex;flex-wrap:wrap;gap:1em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Split: {html.escape(json.dumps(report['split']))}</p>
<p>Parameters: {html.escape(json.dumps(report['params']))}; SQL strategies scored: {report['sql_strategies']}</p>
{f"<p>Tuned configuration (validation split): {html.escape(json.dumps(tuned))}</p>" if tuned else ""}
<h2>Accuracy per strategy (all test users)</h2>{_html_table(report, 'all', acc_cols)}
<h2>Beyond accuracy</h2>{_html_table(report, 'all', ('ndcg@10', *beyond))}
<div class="plots">{_svg_bars(report)}{_svg_scatter(report, 'coverage@10')}{_svg_scatter(report, 'diversity@10')}</div>
{_html_comparisons(report)}
<h2>Repeat targets (held-out items already in the user's history; unreachable while lists leave it out)</h2>{_html_table(report, 'repeat_items', slice_cols)}
<h2>Cold-start item slice (test items never seen in training)</h2>{_html_table(report, 'cold_items', slice_cols)}
<h2>New-user slice (at most 2 training items)</h2>{_html_table(report, 'new_users', slice_cols)}
</body></html>"""


def write(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    html_path = out_dir / "evaluation.html"
    json_path.write_text(json.dumps(report, indent=2, default=float))
    html_path.write_text(render_html(report))
    return json_path, html_path


SUMMARY_METRICS = ("ndcg@10", "hit_rate@10", "recall@10", "recall@20", "mrr@10", "revenue@10", "revenue_share@10",
                   "margin@10", "margin_share@10", "coverage@10", "diversity@10", "novelty@10")
SLICE_METRICS = ("ndcg@10", "hit_rate@10", "recall@10", "revenue_share@10")


def summary(report: dict) -> dict:
    """A small, diff-friendly digest of a run (docs/evaluation.md is generated from these): split,
    tuned configuration, per strategy the headline metrics of the whole test set and of each slice
    (with its users and targets), and the bootstrap intervals of the comparisons."""
    def rnd(v):
        return None if v is None else round(float(v), 4)

    strategies = {}
    for name, row in report["strategies"].items():
        entry = {"seconds": rnd(row.get("seconds"))}
        for slice_name, s in row["slices"].items():
            cols = SUMMARY_METRICS if slice_name == "all" else SLICE_METRICS
            entry[slice_name] = {"users": s["users"], "targets": s.get("targets"),
                                 **{c: rnd(s["metrics"][c]) for c in cols if c in s["metrics"]}}
        strategies[name] = entry
    comparisons = {name: {k: (rnd(v) if isinstance(v, float) else v) for k, v in c.items()}
                   for name, c in (report.get("comparisons") or {}).items()}
    return {
        "dataset": report.get("dataset"),
        "protocol": report.get("protocol"),
        "params": report.get("params"),
        "split": report.get("split"),
        "tuned": report.get("tuned"),
        "tuning_trials": len(report.get("tuning_trace") or []),
        "ease_lambda_grid": report.get("ease_lambda_grid"),
        "seconds": rnd(report.get("seconds")),
        "comparisons": comparisons,
        "strategies": dict(sorted(strategies.items(), key=lambda kv: -(kv[1].get("all", {}).get("ndcg@10") or 0))),
    }


def write_summary(report: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary(report), indent=2, default=float) + "\n")
    return path
