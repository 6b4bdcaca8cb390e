"""The demo data with a little served traffic, for the console's browser tests and benchmark.

`build(url)` runs `pgrecs demo --no-serve` (migrate, load the shipped sample, embed with the real
model, refresh with dbt) into an empty database, then adds what a shop in use has and the sample
lacks: a second home placement, an experiment between the two, and lists served through the HTTP
API to the most active users with impression, click and purchase events citing them (each user's
choices fixed by a hash, so every build is the same).
"""

from __future__ import annotations

import hashlib
import re

import psycopg
from click.testing import CliRunner

EXPERIMENT = "home-diversity"
TRAFFIC_USERS = 60


def _pick(user: str, salt: str) -> float:
    return int(hashlib.md5(f"{salt}:{user}".encode()).hexdigest()[:8], 16) / 2**32


def build(url: str, users: int = TRAFFIC_USERS) -> dict:
    from pgrecs.cli import main

    result = CliRunner().invoke(main, ["--db-url", url, "demo", "--no-serve"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # what `make demo` tells a newcomer: where the console is and a merchant key to sign in with
    printed = re.search(r"^Merchant console: (\S+)\n(?:.*\n)*?\s*(pgr_\S+)\s*$", result.output, re.M)
    assert printed, result.output[-600:]
    return {**add_traffic(url, users), "printed_console_url": printed.group(1), "printed_merchant_key": printed.group(2)}


def add_traffic(url: str, users: int = TRAFFIC_USERS) -> dict:
    """The second placement, the experiment and the served lists, on a database holding the demo."""
    from pgrecs import api_keys
    from pgrecs.api import create_app
    from pgrecs.cli import main

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "insert into pgrecs.placements (tenant_id, placement, description, weights, pool_sizes, default_filters,"
            " mmr_lambda, max_per_brand, max_per_category)"
            " select tenant_id, 'home_diverse', 'Home page, more diverse (experiment variant)', weights, pool_sizes,"
            " default_filters, 0.5, max_per_brand, 2 from pgrecs.placements"
            " where tenant_id = 'default' and placement = 'home_for_you' on conflict do nothing")
        _, api_key = api_keys.create_key(admin, "default", ["read", "write"], name="traffic")
        _, merchant_key = api_keys.create_key(admin, "default", ["merchant"], name="Shop manager")
        active = [r[0] for r in admin.execute(
            "select u.external_id from pgrecs.events e join pgrecs.users u on u.user_id = e.user_id"
            " group by u.external_id order by count(*) desc, u.external_id limit %s", (users,))]
        exists = admin.execute("select 1 from pgrecs.experiments where tenant_id = 'default' and name = %s",
                               (EXPERIMENT,)).fetchone()
    if not exists:
        result = CliRunner().invoke(main, ["--db-url", url, "experiment", "create", EXPERIMENT,
                                           "--variant", "control=home_for_you", "--variant", "diverse=home_diverse",
                                           "--description", "Does a more diverse home page sell more?"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
    app = create_app({"DATABASE_URL": url})
    client = app.test_client()
    headers = {"X-API-Key": api_key}
    with psycopg.connect(url) as conn:
        conn.execute("set pgrecs.tenant = 'default'")
        assigned = {u: conn.execute("select placement from recs.assign_variant(%s, %s)", (EXPERIMENT, u)).fetchone()[0]
                    for u in active}
    for user in active:
        for placement, anchor in ((assigned[user], None), ("pdp_similar", "22728")):
            path = (f"/users/{user}/recommendations?placement={placement}&k=10" if anchor is None
                    else f"/items/{anchor}/recommendations?placement={placement}&k=10")
            listed = client.get(path, headers=headers).get_json()
            items = [x["external_id"] for x in listed["items"]]
            events = [{"user_id": user, "item_id": x, "event_type": "impression", "request_id": listed["request_id"]}
                      for x in items]
            if items and _pick(user, placement) < 0.45:
                clicked = items[int(_pick(user, "slot") * len(items))]
                events.append({"user_id": user, "item_id": clicked, "event_type": "click",
                               "request_id": listed["request_id"]})
                if _pick(user, "buy") < 0.4:
                    events.append({"user_id": user, "item_id": clicked, "event_type": "purchase", "value": 12.5,
                                   "request_id": listed["request_id"]})
            response = client.post("/events", json=events, headers=headers)
            assert response.status_code in (200, 201), response.get_json()
    app.extensions["pgrecs_pool"].close()
    return {"merchant_key": merchant_key, "users": active, "api_key": api_key}
