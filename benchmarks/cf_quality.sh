#!/usr/bin/env bash
# EASE by blocks against dense EASE and co-occurrence, through `pgrecs evaluate`, on the shared
# datasets, under both protocols: benchmarks/results/evaluation_cf_<dataset>_<protocol>.json.
#   bash benchmarks/cf_quality.sh [DATASET ...]      (default: magazine beauty retail movielens)
# Each dataset gets its own database on the embedded server under $PGRECS_HOME (default
# /tmp/pgrecs_cf_quality): export, migrate, load, embed, then one evaluation per protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
export PGRECS_HOME="${PGRECS_HOME:-/tmp/pgrecs_cf_quality}"
WORK="$PGRECS_HOME/work"
mkdir -p "$WORK"
SERVER="$("$BIN/pgrecs" db url)"
trap '"$BIN/pgrecs" db stop >/dev/null' EXIT
for dataset in "${@:-magazine beauty retail movielens}"; do
  for name in $dataset; do
    db="cf_$name"
    url="$("$BIN/python" -c "import sys; from psycopg.conninfo import conninfo_to_dict, make_conninfo; p = conninfo_to_dict(sys.argv[1]); p['dbname'] = sys.argv[2]; print(make_conninfo(**p))" "$SERVER" "$db")"
    "$BIN/python" -c "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True); c.execute('drop database if exists ' + sys.argv[2] + ' with (force)'); c.execute('create database ' + sys.argv[2])" "$SERVER" "$db"
    "$BIN/python" -m pgrecs.datasets export "$name" "$WORK/$name"
    "$BIN/pgrecs" --db-url "$url" migrate
    "$BIN/pgrecs" --db-url "$url" load items "$WORK/$name/items.jsonl.gz"
    "$BIN/pgrecs" --db-url "$url" load events "$WORK/$name/events.jsonl.gz"
    "$BIN/pgrecs" --db-url "$url" embed
    users=()
    case "$name" in magazine|retail) users=(--max-users 3000) ;; esac
    for protocol in leave-last-out time-split; do
      "$BIN/pgrecs" --db-url "$url" evaluate --dataset "$name" --protocol "$protocol" --seed 0 "${users[@]}" \
        --strategies ease,ease:blocks,cooccurrence --out "$WORK/$name-$protocol" \
        --summary "benchmarks/results/evaluation_cf_${name}_${protocol//-/_}.json"
    done
  done
done
