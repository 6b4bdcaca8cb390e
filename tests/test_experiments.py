"""Online experiments: deterministic hash assignment, and statistics on a simulated experiment
whose true effect is known (treatment doubles the click probability, same purchases)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from pgrecs.evaluation import experiments

N_USERS = 2000
IMPRESSIONS = 10
P_CLICK = {"control": 0.05, "treatment": 0.10}
P_BUY = 0.2
PRICE = 25.0


@pytest.fixture
def experiment_db(conn):
    experiments.create(conn, "default", "home-v2",
                       [("control", "home_for_you", 1.0), ("treatment", "pdp_similar", 1.0)])
    conn.execute("insert into pgrecs.items (external_id, title) values ('sku-1', 'Item one')")
    conn.execute("insert into pgrecs.users (external_id) select 'user-' || g from generate_series(1, %s) g", (N_USERS,))
    conn.commit()
    return conn


def _simulate(conn, seed=11):
    """Events for every user according to the variant the database assigns them."""
    rng = np.random.default_rng(seed)
    item_id = conn.execute("select item_id from pgrecs.items").fetchone()[0]
    rows = conn.execute(
        "select u.user_id, a.variant from pgrecs.users u, recs.assign_variant('home-v2', u.external_id) a"
    ).fetchall()
    with conn.cursor().copy(
            "copy pgrecs.events (user_id, item_id, event_type, value, occurred_at, dedup_key) from stdin") as cp:
        for user_id, variant in rows:
            for _ in range(IMPRESSIONS):
                cp.write_row((user_id, item_id, "impression", None, "now", uuid.uuid4()))
            for _ in range(rng.binomial(IMPRESSIONS, P_CLICK[variant])):
                cp.write_row((user_id, item_id, "click", None, "now", uuid.uuid4()))
            if rng.random() < P_BUY:
                cp.write_row((user_id, item_id, "purchase", PRICE, "now", uuid.uuid4()))
    conn.commit()
    return dict(rows)


def test_assignment_is_deterministic_balanced_and_reproducible(experiment_db):
    conn = experiment_db
    first = dict(conn.execute("select u.external_id, a.variant from pgrecs.users u, "
                              "recs.assign_variant('home-v2', u.external_id) a").fetchall())
    again = dict(conn.execute("select u.external_id, a.variant from pgrecs.users u, "
                              "recs.assign_variant('home-v2', u.external_id) a").fetchall())
    assert first == again and len(first) == N_USERS
    share = sum(v == "treatment" for v in first.values()) / N_USERS
    assert 0.46 < share < 0.54
    for user, variant in list(first.items())[:200]:  # the Python twin agrees
        assert ("control" if experiments.bucket("home-v2", user) < 0.5 else "treatment") == variant
    placement = conn.execute("select placement from recs.assign_variant('home-v2', 'user-1')").fetchone()[0]
    assert placement in {"home_for_you", "pdp_similar"}
    assert conn.execute("select count(*) from recs.assign_variant('nope', 'user-1')").fetchone()[0] == 0


def test_unequal_allocation(conn):
    experiments.create(conn, "default", "skewed", [("a", "home_for_you", 9.0), ("b", "pdp_similar", 1.0)])
    shares = conn.execute(
        "select avg((a.variant = 'b')::int) from generate_series(1, 5000) g, recs.assign_variant('skewed', 'x' || g) a"
    ).fetchone()[0]
    assert 0.08 < float(shares) < 0.12


def test_simulated_experiment_recovers_the_true_effect(experiment_db):
    conn = experiment_db
    _simulate(conn)
    rep = experiments.report(conn, "default", "home-v2")
    by = {v["variant"]: v for v in rep["variants"]}
    assert by["control"]["users"] + by["treatment"]["users"] == N_USERS
    for name, p in P_CLICK.items():
        v = by[name]
        assert v["impressions"] == v["users"] * IMPRESSIONS
        assert v["ctr_low"] < p < v["ctr_high"], (name, v["ctr"], v["ctr_low"], v["ctr_high"])
        assert v["conversion_low"] < P_BUY < v["conversion_high"]
        assert v["revenue_per_user_low"] < P_BUY * PRICE < v["revenue_per_user_high"]
        assert v["average_order_value"] == pytest.approx(PRICE)
    d = by["treatment"]["vs_control"]["ctr"]
    true_diff = P_CLICK["treatment"] - P_CLICK["control"]
    assert d["low"] < true_diff < d["high"]
    assert d["low"] > 0  # the effect is detected
    # no true effect on conversion: a 99.9% interval (z = 3.29) covers zero (95% ones miss 1 in 20)
    wide = {v["variant"]: v for v in experiments.report(conn, "default", "home-v2", z=3.29)["variants"]}
    conv = wide["treatment"]["vs_control"]["conversion"]
    assert conv["low"] < 0 < conv["high"]
    assert wide["treatment"]["ctr_high"] - wide["treatment"]["ctr_low"] > by["treatment"]["ctr_high"] - by["treatment"]["ctr_low"]


def test_experiment_cli(cli, experiment_db):
    _simulate(experiment_db)
    out = cli("experiment", "report", "home-v2")
    assert out.exit_code == 0, out.output
    assert "treatment (pdp_similar)" in out.output and "vs control ctr: +0.0" in out.output
    data = json.loads(cli("experiment", "report", "home-v2", "--json").output)
    assert [v["variant"] for v in data["variants"]] == ["control", "treatment"]
    bad = cli("experiment", "create", "x", "--variant", "a=home_for_you", "--variant", "b=nope")
    assert bad.exit_code == 1 and "unknown placement: nope" in bad.output
    dup = cli("experiment", "create", "home-v2", "--variant", "a=home_for_you", "--variant", "b=pdp_similar")
    assert dup.exit_code == 1 and "already exists" in dup.output
    missing = cli("experiment", "report", "nope")
    assert missing.exit_code == 1 and "unknown experiment: nope" in missing.output


def _cross_attributed_events(conn, n=40):
    """Clicks and a purchase of `n` control users that cite a request served by the treatment's
    placement: attributed to the treatment through events.request_id, not to the hashed control."""
    item_id = conn.execute("select item_id from pgrecs.items").fetchone()[0]
    users = [r[0] for r in conn.execute(
        "select u.user_id from pgrecs.users u, recs.assign_variant('home-v2', u.external_id) a "
        "where a.variant = 'control' order by u.user_id limit %s", (n,))]
    with conn.cursor() as cur:
        for user_id in users:
            request_id = cur.execute(
                "insert into pgrecs.recommendation_requests (endpoint, placement, user_id, k, item_ids) "
                "values ('user', 'pdp_similar', %s, 1, array[%s]::bigint[]) returning request_id",
                (user_id, item_id)).fetchone()[0]
            for event_type, value in (("impression", None), ("impression", None), ("click", None), ("purchase", 40.0)):
                cur.execute("insert into pgrecs.events (user_id, item_id, event_type, value, occurred_at, request_id, dedup_key) "
                            "values (%s, %s, %s, %s, now(), %s, %s)",
                            (user_id, item_id, event_type, value, str(request_id), uuid.uuid4()))
    conn.commit()
    return set(users)


def _welch(a, b, z):
    """Oracle for a difference of means b - a: Welch's normal interval (numpy, sample variances)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b.mean() - a.mean()
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return d, d - z * se, d + z * se


def _ratio(rows):
    """Oracle for a ratio of per-user sums: the ratio and its delta-method variance."""
    num, den = np.asarray(rows, float).T
    r = num.mean() / den.mean()
    var = np.var(num - r * den, ddof=1) / (len(num) * den.mean() ** 2)
    return r, var


def test_the_difference_against_control_is_computed_in_sql(experiment_db):
    """recs.experiment_report's *_vs_control columns equal an independent numpy computation over
    recs.experiment_user_outcomes (Welch for means, delta method for ratios)."""
    conn = experiment_db
    _simulate(conn)
    _cross_attributed_events(conn)
    z = 1.959964
    outcomes = {}
    for variant, imp, clk, purchases, revenue in conn.execute(
            "select variant, impressions, clicks, purchases, revenue from recs.experiment_user_outcomes('home-v2')"):
        outcomes.setdefault(variant, []).append((imp, clk, purchases, revenue))
    cur = conn.execute("select * from recs.experiment_report(experiment => 'home-v2')")
    rows = {r[0]: dict(zip([d.name for d in cur.description], r)) for r in cur.fetchall()}
    assert all(v is None for k, v in rows["control"].items() if "_vs_control" in k)
    t = rows["treatment"]
    a, b = outcomes["control"], outcomes["treatment"]
    expected = {
        "conversion": _welch([p > 0 for _, _, p, _ in a], [p > 0 for _, _, p, _ in b], z),
        "revenue_per_user": _welch([r for *_, r in a], [r for *_, r in b], z),
    }
    for metric, (num, den) in {"ctr": (1, 0), "average_order_value": (3, 2)}.items():
        (ra, va), (rb, vb) = _ratio([(r[num], r[den]) for r in a]), _ratio([(r[num], r[den]) for r in b])
        expected[metric] = (rb - ra, rb - ra - z * np.sqrt(va + vb), rb - ra + z * np.sqrt(va + vb))
    for metric, (diff, low, high) in expected.items():
        got = (t[f"{metric}_vs_control"], t[f"{metric}_vs_control_low"], t[f"{metric}_vs_control_high"])
        assert got == pytest.approx((diff, low, high), rel=1e-9), metric
        assert t[f"{metric}_vs_control_relative"] == pytest.approx(diff / rows["control"][metric], rel=1e-9)
    # the Python layer only reshapes those columns
    shaped = {v["variant"]: v for v in experiments.report(conn, "default", "home-v2")["variants"]}
    assert "vs_control" not in shaped["control"]
    assert shaped["treatment"]["vs_control"]["ctr"] == {
        "diff": t["ctr_vs_control"], "low": t["ctr_vs_control_low"], "high": t["ctr_vs_control_high"],
        "relative": t["ctr_vs_control_relative"]}


@pytest.mark.slow
def test_dbt_experiment_marts_read_the_sql_statistics_for_every_tenant(experiment_db, db_url):
    from pgrecs import dbt

    conn = experiment_db
    _simulate(conn)
    crossed = _cross_attributed_events(conn)
    # a second tenant's experiment of the same name: the marts cover every tenant, recs.* the session's
    conn.execute("insert into pgrecs.tenants (tenant_id, name) values ('shop-b', 'shop-b')")
    experiments.create(conn, "shop-b", "home-v2", [("control", "home_for_you", 1.0), ("treatment", "pdp_similar", 1.0)])
    conn.execute("insert into pgrecs.items (tenant_id, external_id, title) values ('shop-b', 'sku-b', 'B item')")
    conn.execute("insert into pgrecs.users (tenant_id, external_id) select 'shop-b', 'b-' || g from generate_series(1, 6) g")
    conn.execute("insert into pgrecs.events (tenant_id, user_id, item_id, event_type, occurred_at, dedup_key)"
                 " select 'shop-b', u.user_id, i.item_id, 'impression', now(), gen_random_uuid()"
                 " from pgrecs.users u, pgrecs.items i where u.tenant_id = 'shop-b' and i.tenant_id = 'shop-b'")
    conn.commit()
    dbt.run(db_url, "build", select="path:models/marts/experiments")
    sql_rows = {r["variant"]: r for r in experiments.report(conn, "default", "home-v2")["variants"]}
    cur = conn.execute("select * from recs_marts.fct_experiment_variants where experiment_name = 'home-v2'")
    cols = [d.name for d in cur.description]
    every = [dict(zip(cols, row)) for row in cur.fetchall()]
    assert sum(r["users"] for r in every if r["tenant_id"] == "shop-b") == 6
    mart_rows = {r["variant"]: r for r in every if r["tenant_id"] == "default"}
    assert set(mart_rows) == set(sql_rows) == {"control", "treatment"}
    # exposed users of default only (the cross-attributed ones count under both variants)
    assert sum(v["users"] for v in sql_rows.values()) == N_USERS + len(crossed)
    for variant, s in sql_rows.items():
        m = mart_rows[variant]
        for key in ("users", "impressions", "clicks", "orders"):
            assert m[key] == s[key], (variant, key)
        for key in ("ctr", "ctr_low", "ctr_high", "conversion", "conversion_low", "conversion_high",
                    "revenue_per_user", "revenue_per_user_low", "revenue_per_user_high",
                    "average_order_value", "average_order_value_low", "average_order_value_high"):
            assert m[key] == pytest.approx(s[key], rel=1e-9), (variant, key)
    assert mart_rows["treatment"]["ctr_vs_control"] == pytest.approx(sql_rows["treatment"]["vs_control"]["ctr"]["diff"])
    assert mart_rows["control"]["ctr_vs_control"] is None
    # the request-attributed control users appear under the treatment (with their cited events)
    attributed = conn.execute(
        "select count(distinct o.user_id) from recs_marts.fct_experiment_user_outcomes o "
        "join pgrecs.experiment_variants v using (variant_id) where o.request_attributed_events > 0 and v.name = 'treatment'"
    ).fetchone()[0]
    assert attributed == len(crossed)
    treated = {r[0] for r in conn.execute(
        "select user_id from recs.experiment_user_outcomes('home-v2') where variant = 'treatment'")}
    assert crossed <= treated
    # the 40 cross-attributed purchases of 40.0 raise the treatment's AOV above the simulated price
    assert sql_rows["treatment"]["average_order_value"] > PRICE > 0
