#!/usr/bin/env bash
# The evaluation of record: every strategy through `pgrecs evaluate` on the shared datasets, under
# the time split and tie-aware leave-last-out, on the events as published and with the rows inside
# each (user, timestamp) tie shuffled; benchmarks/results/evaluation_<dataset>_<protocol>.json and
# evaluation_<dataset>_<protocol>_shuffled.json, then docs/evaluation.md generated from them.
#   bash benchmarks/evaluation.sh prepare [DATASET ...]    export, migrate, load, embed (once per dataset)
#   bash benchmarks/evaluation.sh run DATASET PROTOCOL [shuffled]   one run, on a clone of the prepared database
# Each dataset gets a database on the embedded server under $PGRECS_HOME (default
# /tmp/pgrecs_evaluation); its copy with shuffled ties is cloned from it (same catalogue and
# embeddings) and given the shuffled events. Sample sizes: $EVAL_USERS test users (default 1000),
# $TUNE_USERS validation users (default 400), $TUNE_TRIALS configurations (default 40); $STRATEGIES;
# TUNE_SIGNALS=0 keeps the default EASE lambda, side-information weight and co-occurrence shrinkage.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
export PGRECS_HOME="${PGRECS_HOME:-/tmp/pgrecs_evaluation}"
WORK="$PGRECS_HOME/work"
# every pgrecs signal alone, the configured and the tuned hybrid, the external baselines
STRATEGIES="${STRATEGIES:-random,baseline:popularity,baseline:item_knn,baseline:ease,baseline:als,popularity,cooccurrence,sequence,ease,semantic,hybrid:home_for_you,tuned}"
mkdir -p "$WORK"
SERVER="$("$BIN/pgrecs" db url)"

db_url() {
  "$BIN/python" -c "import sys; from psycopg.conninfo import conninfo_to_dict, make_conninfo; p = conninfo_to_dict(sys.argv[1]); p['dbname'] = sys.argv[2]; print(make_conninfo(**p))" "$SERVER" "$1"
}

sql_admin() {
  "$BIN/python" -c "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True); c.execute(sys.argv[2])" "$SERVER" "$1"
}

prepare() {
  local name="$1" url shuffled
  url="$(db_url "eval_$name")"
  sql_admin "drop database if exists eval_${name}_shuffled with (force)"
  sql_admin "drop database if exists eval_$name with (force)"
  sql_admin "create database eval_$name"
  "$BIN/python" -m pgrecs.datasets export "$name" "$WORK/$name"
  "$BIN/python" -m pgrecs.evaluation.ties shuffle "$WORK/$name/events.jsonl.gz" "$WORK/$name/events_shuffled.jsonl.gz"
  "$BIN/pgrecs" --db-url "$url" migrate
  "$BIN/pgrecs" --db-url "$url" load items "$WORK/$name/items.jsonl.gz"
  "$BIN/pgrecs" --db-url "$url" load events "$WORK/$name/events.jsonl.gz"
  # EMBED=0: no item embeddings (no semantic signal, EASE without text side information)
  if [ "${EMBED:-1}" != 0 ]; then "$BIN/pgrecs" --db-url "$url" embed; fi
  sql_admin "create database eval_${name}_shuffled template eval_$name"
  shuffled="$(db_url "eval_${name}_shuffled")"
  "$BIN/python" -c "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True); c.execute('delete from pgrecs.events')" "$shuffled"
  "$BIN/pgrecs" --db-url "$shuffled" load events "$WORK/$name/events_shuffled.jsonl.gz"
}

# One evaluation on a throw-away clone of the prepared database, so every run starts from the same
# placements (`--tune` writes the tuned configuration into home_for_you).
run() {
  local name="$1" protocol="$2" variant="${3:-}" source clone url suffix=""
  source="eval_$name"
  if [ "$variant" = shuffled ]; then source="eval_${name}_shuffled"; suffix="_shuffled"; fi
  clone="${source}_run_${protocol//-/_}"
  sql_admin "drop database if exists $clone with (force)"
  sql_admin "create database $clone template $source"
  url="$(db_url "$clone")"
  "$BIN/pgrecs" --db-url "$url" evaluate --dataset "$name" --protocol "$protocol" --seed 0 \
    --max-users "${EVAL_USERS:-1000}" --tune --tune-users "${TUNE_USERS:-400}" --tune-trials "${TUNE_TRIALS:-40}" \
    "$([ "${TUNE_SIGNALS:-1}" = 0 ] && echo --no-tune-signals || echo --tune-signals)" \
    --tune-folds 1 --k 5,10,20 --strategies "$STRATEGIES" --out "$WORK/$name-$protocol$suffix" \
    --summary "benchmarks/results/evaluation_${name}_${protocol//-/_}${suffix}.json"
  sql_admin "drop database if exists $clone with (force)"
}

case "${1:-}" in
  prepare)
    shift
    for name in ${@:-magazine beauty retail movielens}; do prepare "$name"; done
    ;;
  run)
    shift
    run "$@"
    ;;
  *)
    echo "usage: bash benchmarks/evaluation.sh prepare [DATASET ...] | run DATASET PROTOCOL [shuffled]" >&2
    exit 2
    ;;
esac
