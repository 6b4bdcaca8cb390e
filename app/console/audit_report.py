"""The catalog audit as a report a merchant reads (`pgrecs audit --out audit.html`): the headline
numbers, the quality-score distribution and each finding's share as charts (inline SVG, see
charts.py), the items to fix first ordered by their traffic, and the lowest-quality items. One
self-contained HTML file (the console's stylesheet inline, nothing fetched), or Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# the audit's summary measures, in the order the report shows them
SUMMARY_LABELS = [
    ("items", "items"),
    ("no_title", "no title"),
    ("no_description", "no description"),
    ("short_description", "description < 50 characters"),
    ("no_brand", "no brand"),
    ("no_category", "no category"),
    ("no_price", "no price"),
    ("no_image", "no image"),
    ("duplicate_title_items", "items sharing their exact title"),
    ("duplicate_title_groups", "distinct duplicated titles"),
    ("near_duplicate_title_items", "near-duplicate titles (trigram)"),
    ("mostly_markup", "mostly markup"),
    ("mostly_non_letters", "mostly non-letters"),
    ("boilerplate", "boilerplate phrases"),
    ("repeated_description", "description shared by 3+ items"),
    ("mojibake", "mojibake repaired"),
    ("not_embeddable", "not embedded"),
    ("brands", "brands"),
    ("brands_with_spelling_variants", "brands with several spellings"),
    ("mean_description_length", "mean description length"),
    ("mean_quality_score", "mean quality score"),
    ("p10_quality_score", "10th percentile quality score"),
]
# counts of items with a finding (the rest are totals, means and brand counts)
FINDINGS = [key for key, _ in SUMMARY_LABELS[1:17] if key != "duplicate_title_groups"]
BINS = 10


@dataclass
class Audit:
    title: str
    summary: dict
    worst: list[dict]
    fix_first: list[dict]
    histogram: list[dict]


def _rows(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def audit_data(conn, tenant: str, worst: int, fix_first: int) -> Audit | None:
    """The built audit marts of one tenant (the connection's pgrecs.tenant); None when it has no audited items."""
    cur = conn.execute("select * from recs_marts.fct_catalog_audit_summary where tenant_id = %s", (tenant,))
    rows = _rows(cur)
    if not rows:
        return None
    lowest = _rows(conn.execute(
        "select external_id, title, quality_score, array_to_string(quality_flags, ', ') as flags"
        " from recs_marts.fct_item_audit where tenant_id = %s"
        " order by quality_score, item_id limit %s", (tenant, worst)))
    # the items with something to fix, most traffic first: a fix there reaches the most shoppers
    first = _rows(conn.execute("select * from recs.catalog_fix_first(n => %s)", (fix_first,)))
    histogram = _rows(conn.execute(
        """
        select b.bin, (b.bin - 1)::float8 / %(bins)s as low, b.bin::float8 / %(bins)s as high, count(a.item_id) as items
        from generate_series(1, %(bins)s) as b (bin)
        left join recs_marts.fct_item_audit a
          on a.tenant_id = %(tenant)s
         and least(width_bucket(a.quality_score, 0, 1, %(bins)s), %(bins)s) = b.bin
        group by b.bin
        order by b.bin
        """, {"tenant": tenant, "bins": BINS}))
    return Audit(f"Catalog audit ({tenant})", rows[0], lowest, first, histogram)


def _share(summary: dict, key: str) -> str:
    value = summary[key]
    if key in ("items", "brands") or isinstance(value, float) or "mean" in key or "p10" in key:
        return f"{value}"
    return f"{value} ({100.0 * value / summary['items']:.1f}%)" if summary["items"] else str(value)


def findings(summary: dict) -> list[tuple[str, int, float]]:
    """(label, items, share of the catalog) per finding, most frequent first."""
    labels = dict(SUMMARY_LABELS)
    counted = [(labels[key], int(summary[key] or 0), (summary[key] or 0) / max(summary["items"], 1)) for key in FINDINGS]
    return sorted(counted, key=lambda f: (-f[1], f[0]))


def render_markdown(audit: Audit) -> str:
    lines = [f"# {audit.title}", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {label} | {_share(audit.summary, key)} |" for key, label in SUMMARY_LABELS]
    lines += ["", f"## Fix these first: {len(audit.fix_first)} items with findings, most traffic first", "",
              "| # | external id | title | events | score | findings |", "| --- | --- | --- | --- | --- | --- |"]
    for n, it in enumerate(audit.fix_first, start=1):
        title_text = (it["title"] or "").replace("|", "\\|")[:80]
        lines.append(f"| {n} | {it['external_id']} | {title_text} | {it['events']} | {it['quality_score']} |"
                     f" {', '.join(it['quality_flags'])} |")
    lines += ["", f"## {len(audit.worst)} lowest-quality items", "", "| external id | title | score | flags |",
              "| --- | --- | --- | --- |"]
    for it in audit.worst:
        title_text = (it["title"] or "").replace("|", "\\|")[:80]
        lines.append(f"| {it['external_id']} | {title_text} | {it['quality_score']} | {it['flags']} |")
    return "\n".join(lines) + "\n"


def render_html(audit: Audit) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from pgrecs.console import charts

    shown = [f for f in findings(audit.summary) if f[1] > 0]
    quality_chart = charts.bars([f"{r['low']:.1f}" for r in audit.histogram], [r["items"] for r in audit.histogram],
                                "Items per quality score", xlabel="quality score (bin start)", ylabel="items")
    findings_chart = charts.bars([f[0] for f in shown], [100 * f[2] for f in shown], "Share of items per finding",
                                 ylabel="% of items", rotate=True, height=4.4) if shown else None
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    return env.get_template("audit/report.html").render(
        audit=audit, summary=audit.summary, findings=findings(audit.summary), shares=_share,
        labels=SUMMARY_LABELS, quality_chart=quality_chart, findings_chart=findings_chart,
        stylesheet=(HERE / "static" / "console.css").read_text())
