"""Default placements per tenant; experiment statistics with the difference against the control.

pgrecs.placement_defaults holds the placements every tenant starts with (the values tenant
'default' was seeded with). sql/046_tenant_defaults.sql copies them for each tenant created from
now on; here, once, for the tenants that exist already (only the placements they lack).

recs.experiment_report gains the difference against the control and, like
recs.experiment_user_outcomes, an optional tenant (sql/060_experiments.sql): their signatures
change, so the old functions are dropped here and the sql/ files create the new ones.

Revision ID: 0024_tenant_defaults
Revises: 0023_embed_override
Create Date: 2026-12-02
"""

from alembic import op

revision = "0024_tenant_defaults"
down_revision = "0023_embed_override"
branch_labels = None
depends_on = None

COLUMNS = ("placement, description, weights, pool_sizes, default_filters, fusion, rrf_k, mmr_lambda, "
           "mmr_pool_factor, max_per_brand, max_per_category, category_level, allow_repeats, history_limit, "
           "history_events, history_half_life, event_weights, negative_weight, quality_threshold, quality_penalty")


def upgrade() -> None:
    op.execute(
        """
        create table pgrecs.placement_defaults (like pgrecs.placements including defaults including constraints);
        alter table pgrecs.placement_defaults drop column tenant_id, drop column model_id, drop column updated_at,
            add primary key (placement);
        comment on table pgrecs.placement_defaults is
            'The placements every new tenant starts with (pgrecs.ensure_default_placements copies them).';

        insert into pgrecs.placement_defaults
            (placement, description, weights, pool_sizes, default_filters, mmr_lambda,
             max_per_brand, max_per_category, allow_repeats)
        values
            ('pdp_similar', 'Product page: items similar to the one shown',
             '{"semantic": 1.0, "cooccurrence": 0.6, "ease": 0.6, "category_popularity": 0.1, "popularity": 0.05}',
             '{"semantic": 50, "cooccurrence": 50, "ease": 50, "category_popularity": 20, "popularity": 20}',
             '{"in_stock": true}', 0.8, 4, null, false),
            ('home_for_you', 'Home page: personal picks from the live history, popular items for new users',
             '{"semantic": 0.6, "cooccurrence": 0.8, "ease": 1.0, "sequence": 1.0, "popularity": 0.15, "trending": 0.1,
               "category_popularity": 0.1}',
             '{"semantic": 20, "cooccurrence": 20, "ease": 20, "sequence": 20, "popularity": 50, "trending": 20,
               "category_popularity": 10}',
             '{"in_stock": true}', 0.7, 3, 4, false),
            ('cart_complete_the_look', 'Cart: complements of the cart items (bought together), few per category',
             '{"cooccurrence": 1.0, "ease": 0.8, "sequence": 0.5, "semantic": 0.2, "popularity": 0.05}',
             '{"semantic": 20, "cooccurrence": 50, "ease": 50, "sequence": 50, "popularity": 20}',
             '{"in_stock": true}', 0.6, null, 2, false),
            ('more_like_these', 'More like these examples, less like those',
             '{"semantic": 1.0, "cooccurrence": 0.3, "ease": 0.3, "popularity": 0.02}',
             '{"semantic": 50, "cooccurrence": 30, "ease": 30, "popularity": 20}',
             '{"in_stock": true}', 0.9, null, null, false);
        """
    )
    op.execute(
        f"""
        insert into pgrecs.placements (tenant_id, {COLUMNS})
        select t.tenant_id, {', '.join('d.' + c for c in COLUMNS.split(', '))}
        from pgrecs.tenants as t
        cross join pgrecs.placement_defaults as d
        on conflict (tenant_id, placement) do nothing;

        drop function if exists recs.experiment_report(text, double precision);
        drop function if exists recs.experiment_user_outcomes(text);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop trigger if exists tenants_seed_defaults on pgrecs.tenants;
        drop function if exists pgrecs.tenants_seed_defaults();
        drop function if exists pgrecs.ensure_default_placements(text);
        drop table pgrecs.placement_defaults;
        """
    )
