"""Shadow embedding and cut-over: a candidate is embedded (index, lists) while the default serves,
items changed meanwhile are embedded for both, promotion and rollback switch the serving model in
one transaction (requests running throughout see no error, no empty answer and never a query
encoded by one model searched in another's embeddings), and drop removes a model that is not active."""

from __future__ import annotations

import collections
import gzip
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import close_app, new_app
from test_cli_errors import one_line_error


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
ITEMS = 300


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def shop(cli, db_url, tmp_path, monkeypatch, minilm):
    """The sample shop's ITEMS most bought items and their events, embedded by the default model."""
    monkeypatch.setenv("PGRECS_HOME", str(tmp_path / "home"))
    with gzip.open(SAMPLE / "events.jsonl.gz", "rt") as f:
        events = [json.loads(line) for line in f]
    counts = collections.Counter(e["item_id"] for e in events)
    keep = {item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:ITEMS]}
    with gzip.open(SAMPLE / "items.jsonl.gz", "rt") as f:
        items = [r for r in (json.loads(line) for line in f) if r["external_id"] in keep]
    assert cli("load", "items", str(write_jsonl(tmp_path / "items.jsonl", items)), "-q").exit_code == 0
    assert cli("load", "events", str(write_jsonl(tmp_path / "events.jsonl",
                                                 [e for e in events if e["item_id"] in keep])), "-q").exit_code == 0
    assert cli("embed").exit_code == 0
    return items


def finetune_candidate(cli, name: str, *extra: str) -> None:
    """A tiny, hot fine-tune (seconds): far enough from the base model that its vectors differ."""
    result = cli("models", "finetune", "--name", name, "--before", "2011-09-01", "--max-pairs", "200",
                 "--max-seq-length", "16", "--batch-size", "16", "--learning-rate", "5e-4", "--mix", "1", "--quiet",
                 *extra)
    assert result.exit_code == 0, result.output


def model_row(conn, name: str) -> dict:
    row = conn.execute("select model_id, state, is_default, lineage from pgrecs.embedding_models where name = %s",
                       (name,)).fetchone()
    return dict(zip(("model_id", "state", "default", "lineage"), row)) if row else None


def lists(conn, model_id: int) -> set[tuple]:
    return set(conn.execute("select item_id, neighbor_item_id from pgrecs.semantic_lists where model_id = %s",
                            (model_id,)).fetchall())


def listed(cli) -> dict[str, list[str]]:
    out = cli("models", "list").output
    return {line[2:].split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}


def test_shadow_embedding_then_promote_rollback_and_drop(shop, cli, conn):
    base = model_row(conn, "all-MiniLM-L6-v2")
    finetune_candidate(cli, "shop-v2")
    new = model_row(conn, "shop-v2")
    assert listed(cli)["shop-v2"][0:2] == ["candidate", f"{ITEMS} stale, 0 queued"]
    assert listed(cli)["all-MiniLM-L6-v2"][0:2] == ["active", "complete"]
    assert one_line_error(cli("models", "promote", "shop-v2", "--force")).startswith(
        f"error: model shop-v2 is not completely embedded for tenant default: {ITEMS} stale, 0 queued")

    # shadow embedding: `pgrecs embed` serves every maintained model; the default has nothing to do
    serving_before = lists(conn, base["model_id"])
    result = cli("embed", "--json")
    assert json.loads(result.stdout)["models"] == {"all-MiniLM-L6-v2": 0, "shop-v2": ITEMS}
    assert lists(conn, base["model_id"]) == serving_before
    assert len({i for i, _ in lists(conn, new["model_id"])}) == ITEMS
    assert conn.execute("select count(*) from pgrecs.semantic_neighbors where model_id = %s",
                        (new["model_id"],)).fetchone()[0] == ITEMS * 50
    assert conn.execute("select to_regclass(%s) is not null", (f"pgrecs.item_embeddings_hnsw_m{new['model_id']}",)
                        ).fetchone()[0]
    assert listed(cli)["shop-v2"][0:2] == ["candidate", "complete"]

    # an item changed meanwhile is queued and embedded for both models
    item_id, title = conn.execute("select item_id, title from pgrecs.items order by item_id limit 1").fetchone()
    conn.execute("update pgrecs.items set title = %s where item_id = %s", (title + " XL", item_id))
    conn.commit()
    assert sorted(r[0] for r in conn.execute("select model_id from pgrecs.embedding_queue where item_id = %s",
                                             (item_id,))) == sorted([base["model_id"], new["model_id"]])
    assert listed(cli)["shop-v2"][1] == "1 stale, 1 queued"
    assert json.loads(cli("embed", "--json").stdout)["models"] == {
        "all-MiniLM-L6-v2": 1, "shop-v2": 1}
    fresh = conn.execute(
        "select count(*) from pgrecs.item_embeddings e join pgrecs.items i using (item_id) "
        "where e.item_id = %s and e.text_sha256 = pgrecs.item_text_sha256(pgrecs.compose_item_text("
        "i.title, i.description, i.brand, i.category_path, i.attributes))", (item_id,)).fetchone()[0]
    assert fresh == 2

    # the gate has not run: promotion refused without --force
    assert one_line_error(cli("models", "promote", "shop-v2")) == (
        "error: model shop-v2 has no evaluation against the active model: run pgrecs models evaluate shop-v2 "
        "(or promote --force)")
    candidate_lists, serving = lists(conn, new["model_id"]), lists(conn, base["model_id"])
    result = cli("models", "promote", "shop-v2", "--force")
    assert result.exit_code == 0, result.output
    assert "shop-v2 is the active model (forced); all-MiniLM-L6-v2 is on standby" in result.output
    new, base = model_row(conn, "shop-v2"), model_row(conn, "all-MiniLM-L6-v2")
    assert (new["state"], new["default"], base["state"], base["default"]) == ("active", True, "standby", False)
    promotion = new["lineage"]["promotions"][-1]
    assert (promotion["action"], promotion["replaced"], promotion["forced"]) == ("promoted", "all-MiniLM-L6-v2", True)
    # the serving lists are the candidate's now; the old default keeps its own for a rollback
    assert set(conn.execute("select item_id, neighbor_item_id from pgrecs.item_neighbors where signal = 'semantic'")
               .fetchall()) == candidate_lists
    assert lists(conn, base["model_id"]) == serving
    assert listed(cli)["all-MiniLM-L6-v2"][0:2] == ["standby", "complete"]

    # the standby model is still maintained: a change is embedded for both
    conn.execute("update pgrecs.items set title = %s where item_id = %s", (title + " XXL", item_id))
    conn.commit()
    assert json.loads(cli("embed", "--json").stdout)["models"] == {
        "shop-v2": 1, "all-MiniLM-L6-v2": 1}

    standby_lists = lists(conn, base["model_id"])
    result = cli("models", "rollback")
    assert result.exit_code == 0, result.output
    assert "all-MiniLM-L6-v2 is the active model again; shop-v2 is retired" in result.output
    new, base = model_row(conn, "shop-v2"), model_row(conn, "all-MiniLM-L6-v2")
    assert (new["state"], base["state"], base["default"]) == ("retired", "active", True)
    assert set(conn.execute("select item_id, neighbor_item_id from pgrecs.item_neighbors where signal = 'semantic'")
               .fetchall()) == standby_lists
    assert one_line_error(cli("models", "rollback")) == "error: no model is on standby: nothing to roll back to"
    # a retired model is not maintained any more (its embeddings stay until dropped)
    conn.execute("update pgrecs.items set title = %s where item_id = %s", (title, item_id))
    conn.commit()
    assert [r[0] for r in conn.execute("select model_id from pgrecs.embedding_queue where item_id = %s",
                                       (item_id,))] == [base["model_id"]]
    assert one_line_error(cli("models", "promote", "shop-v2")) == (
        "error: model shop-v2 is retired, not a candidate: only a candidate can be promoted")

    assert one_line_error(cli("models", "drop", "all-MiniLM-L6-v2")) == (
        "error: model all-MiniLM-L6-v2 is the active model: promote another one (or roll back) before dropping it")
    result = cli("models", "drop", "shop-v2")
    assert result.exit_code == 0, result.output
    assert f"dropped shop-v2: {ITEMS} embeddings removed" in result.output
    assert model_row(conn, "shop-v2") is None
    assert conn.execute("select count(*) from pgrecs.item_embeddings where model_id = %s",
                        (new["model_id"],)).fetchone()[0] == 0
    assert conn.execute("select count(*) from pg_class where relname like %s",
                        (f"item_embeddings_hnsw_m{new['model_id']}%",)).fetchone()[0] == 0
    assert one_line_error(cli("models", "drop", "shop-v2")) == "error: unknown embedding model: shop-v2"


def test_requests_throughout_promote_and_rollback(shop, cli, conn, db_url):
    from pgrecs.embeddings.models import get_encoder

    finetune_candidate(cli, "shop-v2")
    finetune_candidate(cli, "shop-v3", "--seed", "1")
    assert cli("embed").exit_code == 0
    # embedded items whose text no other item shares: a search for the text has one right answer
    texts = dict(conn.execute(
        """
        with composed as (
            select i.item_id, i.external_id,
                pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as txt
            from pgrecs.items as i
            where exists (select from pgrecs.item_embeddings as e where e.item_id = i.item_id)
        )
        select c.external_id, c.txt
        from composed as c
        where (select count(*) from composed as o where o.txt = c.txt) = 1
        order by c.item_id
        limit 40
        """).fetchall())
    assert len(texts) == 40
    sources = dict(conn.execute("select name, source from pgrecs.embedding_models").fetchall())
    # the two models disagree enough that a query encoded by one and searched in the other's
    # embeddings would show: its own item's cosine falls well below 1
    a = get_encoder(sources["all-MiniLM-L6-v2"]).encode(list(texts.values()))
    b = get_encoder(sources["shop-v2"]).encode(list(texts.values()))
    assert float(np.median((a * b).sum(axis=1))) < 0.98
    users = [r[0] for r in conn.execute("select external_id from pgrecs.users order by user_id limit 20")]

    app = new_app(db_url, TENANT="default")
    stop = threading.Event()
    errors, empty, mismatched, answered = [], [], [], collections.Counter()

    def call(kind: str, client, n: int) -> None:
        external_id = list(texts)[n % len(texts)]
        if kind == "search":
            response = client.get("/search", query_string={"q": texts[external_id], "k": 5})
        elif kind == "similar":
            response = client.get(f"/items/{external_id}/similar?k=5")
        else:
            response = client.get(f"/users/{users[n % len(users)]}/recommendations?k=5")
        if response.status_code != 200:
            errors.append((kind, response.status_code, response.get_data(as_text=True)[:200]))
            return
        body = response.get_json()
        if not body["items" if kind == "recommend" else "results"]:
            empty.append((kind, external_id))
            return
        answered[kind] += 1
        if kind == "search":
            top = body["results"][0]
            # encoded and searched by the same model: the item's own text finds it at cosine ~1
            if top["external_id"] != external_id or top["score"] < 0.995:
                mismatched.append((body["model"], external_id, top))
            answered[f"search:{body['model']}"] += 1

    def loop(kind: str) -> None:
        with app.test_client() as client:
            n = 0
            while not stop.is_set():
                try:
                    call(kind, client, n)
                except Exception as exc:  # noqa: BLE001 - every failure is counted, none kills the thread
                    errors.append((kind, repr(exc)))
                n += 1

    threads = [threading.Thread(target=loop, args=(kind,)) for kind in ("search", "search", "similar", "recommend")]
    for thread in threads:
        thread.start()
    try:
        for candidate in ("shop-v2", "shop-v3"):
            time.sleep(1.5)
            result = cli("models", "promote", candidate, "--force")
            assert result.exit_code == 0, result.output
            time.sleep(1.5)
            assert cli("models", "rollback").exit_code == 0
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        close_app(app)
    assert errors == [] and empty == [] and mismatched == []
    # both models answered searches, and every kind of request ran throughout
    assert min(answered[f"search:{m}"] for m in ("all-MiniLM-L6-v2", "shop-v2", "shop-v3")) > 0, answered
    assert min(answered["search"], answered["similar"], answered["recommend"]) >= 5, answered
