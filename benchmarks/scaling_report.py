"""The generated tables of docs/scaling.md, from benchmarks/results: `python -m benchmarks.scaling_report`
rewrites every block between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; `--check` exits 1
when the committed page differs from what the JSON gives (tests/test_scaling_report.py runs it)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from benchmarks import doc_tables

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "scaling.md"
# request rates the sizing table is worked out for (reads/s at peak)
RATES = (100, 500, 2_000, 10_000)
# a replica is sized to run at most this busy, so losing one (or a burst) does not overload the rest
TARGET_UTILISATION = 0.6
CORES_PER_REPLICA = (4, 16)


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def replication_table() -> str:
    result = _load("replication")
    if not result:
        return "_not measured yet: `flock /tmp/pgrecs-heavy.lock python -m benchmarks.run replication`_"
    load = result["event_load"]
    primary, replica = result["reads_primary_alone"], result["reads_on_one_replica"]
    lines = [
        f"Measured {result['started_at']} on {result['machine'].get('cpu_count')} cores "
        f"(load average {result['load_average_1m'][0]} before, {result['load_average_1m'][1]} after); "
        f"{_num(result['items'], 0)} items, {_num(result['users'], 0)} users.",
        "",
        "| under the event load | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
        f"| replay lag (pg_stat_replication.replay_lag), ms | {_num(load['replay_lag_ms']['p50'], 2)} "
        f"| {_num(load['replay_lag_ms']['p95'], 2)} | {_num(load['replay_lag_ms']['max'], 2)} |",
        f"| WAL not yet replayed, bytes | {_num(load['replay_lag_bytes']['p50'])} "
        f"| {_num(load['replay_lag_bytes']['p95'])} | {_num(load['replay_lag_bytes']['max'])} |",
        "",
        f"Event load: {load['clients']} clients, {_num(load['events_per_s'])} events/s through the API's loader, "
        f"{load['errors']} errors, {load['samples']} lag samples over {load['seconds']} s.",
        "",
        "| reads (recs.recommend_for_user, k=10) | readers | reads/s | server CPU per read, ms | p50 ms | p95 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, reads in (("primary alone", primary), ("one replica", replica)):
        lines.append(f"| {label} | {reads['readers']} | {_num(reads['reads_per_s'])} "
                     f"| {_num(reads['server_cpu_ms_per_read'], 2)} | {_num(reads['latency_ms_p50'], 2)} "
                     f"| {_num(reads['latency_ms_p95'], 2)} |")
    ratio = replica["reads_per_s"] / primary["reads_per_s"] if primary["reads_per_s"] else None
    lines += ["", f"Replica / primary read throughput on this machine: {_num(ratio, 2)}x "
                  "(both servers and the load generator share the same two cores)."]
    return "\n".join(lines)


def sizing_table() -> str:
    recommend = _load("recommend")
    if not recommend or "http_user" not in recommend:
        return "_not measured yet: `flock /tmp/pgrecs-heavy.lock python -m benchmarks.run recommend`_"
    cpu = recommend["http_user"]["cpu_ms_per_request"]
    pg_ms, app_ms = cpu["postgres"], cpu["gunicorn"]
    lines = [
        f"From `benchmarks/results/recommend.json` ({_num(recommend['items'], 0)} items, "
        f"{_num(recommend['events'], 0)} events, GET /users/<id>/recommendations over HTTP): "
        f"{_num(pg_ms, 2)} ms of Postgres CPU and {_num(app_ms, 2)} ms of API CPU per request. "
        f"A replica is sized to run at most {int(TARGET_UTILISATION * 100)}% busy; API workers scale "
        "separately (stateless, any host).",
        "",
        "| reads/s at peak | Postgres cores needed | replicas of " + " | replicas of ".join(
            f"{c} cores" for c in CORES_PER_REPLICA) + " | API cores |",
        "| --- | --- | " + " | ".join("---" for _ in CORES_PER_REPLICA) + " | --- |",
    ]
    for rate in RATES:
        pg_cores = rate * pg_ms / 1000 / TARGET_UTILISATION
        replicas = [max(1, math.ceil(pg_cores / c)) for c in CORES_PER_REPLICA]
        api_cores = rate * app_ms / 1000 / TARGET_UTILISATION
        lines.append(f"| {rate:,} | {_num(pg_cores)} | " + " | ".join(str(r) for r in replicas)
                     + f" | {_num(api_cores)} |")
    lines += ["", "Add one replica beyond the count so that losing one keeps the rest under 100%; the "
                  "primary keeps the writes (events, catalog, request log) and the reads that carry a fresh "
                  "read-your-writes token."]
    return "\n".join(lines)


def similar_lists_table() -> str:
    """The maintained-list path of recs.similar_items beside the HNSW path and hnswlib, at each size measured."""
    measured = [(name, r) for name in ("similar", "similar_1m") if (r := _load(name)) and "lists" in r]
    if not measured:
        return "_not measured yet: `flock /tmp/pgrecs-heavy.lock python -m benchmarks.run similar`_"
    lines = ["| items | path | recall@10 | p50 ms | p99 ms | q/s 1 client | q/s 2 clients | q/s / hnswlib per call |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for name, r in measured:
        lists, hn = r["lists"], r["hnswlib_at_equal_recall"]
        ann = r["unfiltered_by_ef_search"][str(r["operating_ef_search"])]
        slow = lists.get("through_plpgsql_similar_to_item") or {}
        rows = [("maintained list (recs.similar_items)", lists, lists["qps_ratio_vs_hnswlib"]["1"]),
                ("same lists through the plpgsql body", slow,
                 slow["qps_1_client"] / hn["qps_1_thread"] if slow else None),
                (f"HNSW index, ef_search {r['operating_ef_search']}", ann, r["qps_ratio_vs_hnswlib"]["1"])]
        for label, v, ratio in rows:
            if v:
                lines.append(f"| {_num(r['items'], 0)} | {label} | {_num(v['recall_at_10'], 4)} | {_num(v['p50_ms'], 3)} "
                             f"| {_num(v['p99_ms'], 3)} | {_num(v['qps_1_client'])} | {_num(v.get('qps_2_clients'))} "
                             f"| {_num(ratio, 3)} |")
        lines.append(f"| {_num(r['items'], 0)} | hnswlib knn_query, one vector per call, ef {hn['ef']} "
                     f"| {_num(hn['recall_at_10'], 4)} | | | {_num(hn['qps_1_thread'])} (1 thread) "
                     f"| {_num(hn.get('qps_2_threads'))} (2 threads) | 1 |")
        build, fresh, sbv = lists["build"], r["freshness"], r["search_by_vector_vs_bare_scan"]
        notes.append(
            f"- {_num(r['items'], 0)} items ({name}.json, {r['started_at']}, load average "
            f"{r['load_average_1m'][0]} / {r['load_average_1m'][1]}): lists of {build['list_length']} built by "
            f"{build['workers']} list writer{'s' if build['workers'] != 1 else ''} in {_num(build['build_s'])} s "
            f"({_num(build['items_per_s'])} items/s, ef_search {build['ef_search']}"
            + (f"; {build['reused']}" if build.get("reused") else "") + "); "
            f"HNSW index scans while the lists served: {lists['hnsw_index_scans_during']}. "
            f"Freshness over {fresh['updates']} embedding updates: p50 {_num(fresh['seconds_p50'], 3)} s, "
            f"p95 {_num(fresh['seconds_p95'], 3)} s, max {_num(fresh['seconds_max'], 3)} s (target {fresh['target']}: "
            f"{'met' if fresh['met'] else 'NOT met'}); after them the moved items' own lists have recall@10 "
            f"{_num(fresh['own_list_recall_at_10'], 4)}, {_num(fresh['of_those_holding_it'], 4)} of the "
            f"{fresh['lists_that_should_hold_it']} lists whose exact top 10 now holds a moved item list it, and "
            f"{_num(fresh['of_those_still_holding_it'], 4)} of the {fresh['old_neighbour_lists_it_left']} old "
            "neighbours' lists it left still show it in their top 10. "
            f"recs.search_by_vector vs pgvector's bare scan (ef_search {sbv['ef_search']}): p50 "
            f"{_num(sbv['search_by_vector']['p50_ms'], 3)} vs {_num(sbv['bare_scan']['p50_ms'], 3)} ms, "
            f"overhead {_num(sbv['overhead_p50'], 2)}x (p50) / {_num(sbv['overhead_qps_1_client'], 2)}x (q/s, 1 client) "
            f"(target {sbv['target']}: {'met' if sbv['met'] else 'NOT met'}).")
    return "\n".join(lines + [""] + notes)


def call_floor_table() -> str:
    """Per-call queries/s of a bare round trip, a bare list read and recs.similar_items against hnswlib, one run."""
    r = _load("call_floor")
    if not r:
        return "_not measured yet: `python -m benchmarks.run call_floor`_"
    labels = {"select_1": "`select 1` (the round trip alone)",
              "list_read": "bare 10-row read of item_neighbors (index-only)",
              "similar_items": "recs.similar_items, maintained list, k 10",
              "hnswlib": f"hnswlib knn_query, one vector, ef {r['baseline_note'].split('ef ')[1].split(' ')[0]}"}
    lines = ["| per call, 1 client | q/s (median of rounds) | / hnswlib |", "| --- | --- | --- |"]
    for name, label in labels.items():
        lines.append(f"| {label} | {_num(r['qps_per_call'][name])} | {_num(r['ratios_vs_hnswlib'][name], 3)} |")
    return "\n".join(lines + ["", f"- {_num(r['items'], 0)} items (call_floor.json, {r['started_at']}, load average "
                               f"{r['load_average_1m'][0]} / {r['load_average_1m'][1]}): {r['baseline_note']}; "
                               f"{r['rounds']} interleaved rounds of {_num(r['calls_per_round'], 0)} calls."])


SECTIONS = {"replication": replication_table, "replica_sizing": sizing_table, "similar_lists": similar_lists_table,
            "call_floor": call_floor_table}


def render(text: str) -> str:
    return doc_tables.render(text, SECTIONS)


def main(argv: list[str]) -> int:
    return doc_tables.main(argv, DOC, SECTIONS, "python -m benchmarks.scaling_report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
