"""Online experiments: create and stop experiments; their statistics, including the difference
against the control, are computed by recs.experiment_report (sql/060_experiments.sql) and only
reshaped here."""

from __future__ import annotations

import hashlib

import psycopg

from pgrecs.errors import PgrecsError

Z95 = 1.959964


def bucket(salt: str, user_key: str) -> float:
    """Python twin of pgrecs.hash_bucket (for clients and tests)."""
    return int(hashlib.md5(f"{salt}:{user_key}".encode()).hexdigest()[:8], 16) / 2**32


def create(conn: psycopg.Connection, tenant: str, name: str, variants: list[tuple[str, str, float]],
           description: str | None = None, salt: str | None = None, control: str | None = None) -> int:
    """variants: (variant name, placement, allocation); the first is the control unless named."""
    if len(variants) < 2:
        raise PgrecsError("an experiment needs at least two variants")
    placements = {r[0] for r in conn.execute(
        "select placement from pgrecs.placements where tenant_id = %s", (tenant,)).fetchall()}
    for _, placement, allocation in variants:
        if placement not in placements:
            raise PgrecsError(f"unknown placement: {placement}")
        if allocation <= 0:
            raise PgrecsError("a variant allocation must be positive")
    control = control or variants[0][0]
    if control not in {v[0] for v in variants}:
        raise PgrecsError(f"control variant {control!r} is not one of the variants")
    try:
        experiment_id = conn.execute(
            "insert into pgrecs.experiments (tenant_id, name, description, salt) values (%s, %s, %s, %s) "
            "returning experiment_id",
            (tenant, name, description, salt or name)).fetchone()[0]
    except psycopg.errors.UniqueViolation as exc:
        raise PgrecsError(f"experiment {name!r} already exists") from exc
    except psycopg.errors.CheckViolation as exc:
        raise PgrecsError(f"invalid experiment name {name!r}") from exc
    for position, (vname, placement, allocation) in enumerate(variants, start=1):
        conn.execute(
            "insert into pgrecs.experiment_variants (tenant_id, experiment_id, name, placement, allocation, is_control, position) "
            "values (%s, %s, %s, %s, %s, %s, %s)",
            (tenant, experiment_id, vname, placement, allocation, vname == control, position))
    return experiment_id


def stop(conn: psycopg.Connection, tenant: str, name: str) -> None:
    cur = conn.execute("update pgrecs.experiments set status = 'stopped', stopped_at = now() "
                       "where tenant_id = %s and name = %s and status <> 'stopped'", (tenant, name))
    if cur.rowcount != 1:
        raise PgrecsError(f"no running experiment named {name!r}")


METRICS = ("ctr", "conversion", "revenue_per_user", "average_order_value")


def report(conn: psycopg.Connection, tenant: str, name: str, z: float = Z95) -> dict:
    """recs.experiment_report as a dict: one entry per variant, each metric's difference against the
    control gathered under "vs_control" (absent for the control itself)."""
    if not conn.execute("select 1 from pgrecs.experiments where tenant_id = %s and name = %s",
                        (tenant, name)).fetchone():
        raise PgrecsError(f"unknown experiment: {name}")
    cur = conn.execute("select * from recs.experiment_report(experiment => %s, z => %s)", (name, z))
    cols = [d.name for d in cur.description]
    variants = []
    for row in cur.fetchall():
        v = dict(zip(cols, row))
        differences = {metric: {part: v.pop(f"{metric}_vs_control{suffix}")
                                for part, suffix in (("diff", ""), ("low", "_low"), ("high", "_high"),
                                                     ("relative", "_relative"))}
                       for metric in METRICS}
        if not v["is_control"]:
            v["vs_control"] = {m: (d if d["diff"] is not None else None) for m, d in differences.items()}
        variants.append(v)
    return {"experiment": name, "z": z, "variants": variants}
