"""The junk-text rule measured on the shared catalogs: how many items each rule refuses, with examples.

For every catalog (the dataset adapters' items, composed exactly as the embedding pipeline composes
them) the refusals of the junk-text rule (`pgrecs.item_text_problem`) are counted per reason and
set against the length rule it replaced (under 12 characters of composed text, or under half
letters), with examples of each reason, of the items the new rule embeds that the length rule
refused, and of those it refuses that the length rule embedded. One more catalog is every distinct
product name in the raw UCI Online Retail file, fees, stock notes and all (`retail_raw_names`):
the names a merchant's own export would carry.

`python -m benchmarks.run text_rule` (results in benchmarks/results/text_rule.json).
"""

from __future__ import annotations

import csv
import gzip
import json

from benchmarks.run import bench_server, fresh_database
from pgrecs import datasets

EXAMPLES = 8
# the rule this one replaced, for the comparison
LENGTH_RULE = """
    case
        when composed is null then 'empty text'
        when length(composed) < 12 then 'text too short'
        when length(regexp_replace(composed, '[^[:alpha:]]', '', 'g')) < 0.5 * length(composed)
            then 'mostly non-letters'
    end"""


def _raw_retail_names() -> list[dict]:
    names = set()
    with gzip.open(datasets.SHARED_DATA / "uci-online-retail/online_retail.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            names.add(row["Description"] or "")
    return [{"title": name or None} for name in sorted(names)]


def _catalogs() -> dict[str, list[dict]]:
    catalogs = {name: list(datasets.iter_items(name)) for name in datasets.DATASETS}
    catalogs["retail_raw_names"] = _raw_retail_names()
    return catalogs


def _measure(conn, items: list[dict]) -> dict:
    conn.execute("create temporary table catalog (n integer, title text, description text, brand text,"
                 " category_path text[], attributes jsonb) on commit drop")
    with conn.cursor().copy("copy catalog from stdin") as copy:
        for n, it in enumerate(items):
            copy.write_row((n, it.get("title"), it.get("description"), it.get("brand"), it.get("category_path") or [],
                            json.dumps(it.get("attributes") or {})))
    conn.execute(f"""
        create temporary table judged on commit drop as
        select n, composed, {LENGTH_RULE} as length_rule, pgrecs.item_text_problem(composed) as junk_rule
        from (select n, pgrecs.compose_item_text(title, description, brand, category_path, attributes) as composed
              from catalog) x""")

    def counts(column: str) -> dict:
        return dict(conn.execute(f"select {column}, count(*) from judged where {column} is not null"
                                 f" group by 1 order by 2 desc, 1").fetchall())

    def examples(where: str) -> list[str]:
        return [r[0] for r in conn.execute(
            f"select coalesce(composed, '') from judged where {where} order by length(composed), composed limit %s",
            (EXAMPLES,)).fetchall()]

    junk = counts("junk_rule")
    length = counts("length_rule")
    result = {
        "items": len(items),
        "refused_by_junk_rule": sum(junk.values()),
        "refused_by_length_rule": sum(length.values()),
        "junk_rule_reasons": junk,
        "length_rule_reasons": length,
        "junk_rule_examples": {reason: examples(f"junk_rule = '{reason}'") for reason in junk},
        "embedded_now_refused_before": conn.execute(
            "select count(*) from judged where junk_rule is null and length_rule is not null").fetchone()[0],
        "embedded_now_refused_before_examples": examples("junk_rule is null and length_rule is not null"),
        "refused_now_embedded_before": conn.execute(
            "select count(*) from judged where junk_rule is not null and length_rule is null").fetchone()[0],
        "refused_now_embedded_before_examples": examples("junk_rule is not null and length_rule is null"),
        "shortest_embedded_examples": examples("junk_rule is null"),
    }
    conn.rollback()
    return result


def run() -> dict:
    import psycopg

    catalogs = _catalogs()
    with bench_server() as server, fresh_database(server, "text_rule") as url, psycopg.connect(url) as conn:
        measured = {name: _measure(conn, items) for name, items in catalogs.items()}
    rescued = sum(m["embedded_now_refused_before"] for m in measured.values())
    return {
        "metric": "items refused as junk text, all catalogs",
        "value": sum(m["refused_by_junk_rule"] for m in measured.values()),
        "unit": "items",
        "baseline": sum(m["refused_by_length_rule"] for m in measured.values()),
        "note": f"baseline: the length rule (< 12 characters or < 50% letters); {rescued} items it refused are embedded now",
        "catalogs": measured,
    }
