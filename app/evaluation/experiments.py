"""Online experiments: create experiments with variants, and per-variant statistics with the
difference against the control (read from recs.experiment_report / experiment_user_outcomes)."""

from __future__ import annotations

import hashlib
import math

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


def report(conn: psycopg.Connection, tenant: str, name: str, z: float = Z95) -> dict:
    if not conn.execute("select 1 from pgrecs.experiments where tenant_id = %s and name = %s",
                        (tenant, name)).fetchone():
        raise PgrecsError(f"unknown experiment: {name}")
    cur = conn.execute("select * from recs.experiment_report(experiment => %s, z => %s)", (name, z))
    cols = [d.name for d in cur.description]
    variants = [dict(zip(cols, r)) for r in cur.fetchall()]
    # per-user outcomes for the differences (user is the unit of randomisation)
    per_user: dict[str, list[tuple]] = {}
    for v, imp, clk, purchases, revenue in conn.execute(
            "select variant, impressions, clicks, purchases, revenue from recs.experiment_user_outcomes(%s)", (name,)):
        per_user.setdefault(v, []).append((imp, clk, purchases, revenue))
    control = next((v for v in variants if v["is_control"]), None)
    for v in variants:
        if control is None or v is control:
            continue
        a, b = per_user.get(control["variant"], []), per_user.get(v["variant"], [])
        v["vs_control"] = {
            "ctr": _ratio_diff(a, b, 1, 0, z),
            "conversion": _mean_diff([float(r[2] > 0) for r in a], [float(r[2] > 0) for r in b], z),
            "revenue_per_user": _mean_diff([r[3] for r in a], [r[3] for r in b], z),
        }
    return {"experiment": name, "z": z, "variants": variants}


def _mean_var(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return n, m, var


def _mean_diff(a, b, z):
    """Difference of means b - a with a Welch (normal) interval."""
    if len(a) < 2 or len(b) < 2:
        return None
    na, ma, va = _mean_var(a)
    nb, mb, vb = _mean_var(b)
    se = math.sqrt(va / na + vb / nb)
    d = mb - ma
    return {"diff": d, "low": d - z * se, "high": d + z * se, "relative": d / ma if ma else None}


def _ratio_stats(rows, num, den):
    nums = [r[num] for r in rows]
    dens = [r[den] for r in rows]
    n, mn, vn = _mean_var(nums)
    _, md, vd = _mean_var(dens)
    cov = sum((x - mn) * (y - md) for x, y in zip(nums, dens)) / (n - 1)
    r = mn / md
    var = (vn - 2 * r * cov + r * r * vd) / (n * md * md)
    return r, var


def _ratio_diff(a, b, num, den, z):
    """Difference of ratio metrics (sum num / sum den per variant), delta-method variances."""
    if len(a) < 2 or len(b) < 2:
        return None
    ra, va = _ratio_stats(a, num, den)
    rb, vb = _ratio_stats(b, num, den)
    d = rb - ra
    se = math.sqrt(max(va, 0) + max(vb, 0))
    return {"diff": d, "low": d - z * se, "high": d + z * se, "relative": d / ra if ra else None}
