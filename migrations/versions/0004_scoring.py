"""Hybrid scoring: placements, business rules, recommendation request log.

Revision ID: 0004_scoring
Revises: 0003_signals
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004_scoring"
down_revision = "0003_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Placements as data: every knob of a recommendation list. Changing a row changes the
        -- next request; nothing is cached.
        create table pgrecs.placements (
            tenant_id text not null default 'default' references pgrecs.tenants,
            placement text not null check (placement ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            description text not null default '',
            -- signal -> weight. Signals: semantic, cooccurrence, ease (neighbour lists),
            -- popularity, trending, category_popularity, margin. Missing or 0 switches a signal off.
            weights jsonb not null check (jsonb_typeof(weights) = 'object'),
            -- signal -> candidates taken per anchor item (neighbour signals) or in total (the others)
            pool_sizes jsonb not null default '{}' check (jsonb_typeof(pool_sizes) = 'object'),
            default_filters jsonb not null default '{}' check (jsonb_typeof(default_filters) = 'object'),
            fusion text not null default 'weighted' check (fusion in ('weighted', 'rrf')),
            rrf_k integer not null default 60 check (rrf_k > 0),
            -- maximal marginal relevance: 1 = relevance only, 0 = diversity only
            mmr_lambda real not null default 1 check (mmr_lambda between 0 and 1),
            mmr_pool_factor integer not null default 4 check (mmr_pool_factor between 1 and 10),
            max_per_brand integer check (max_per_brand > 0),
            max_per_category integer check (max_per_category > 0),
            category_level integer not null default 1 check (category_level >= 1),
            allow_repeats boolean not null default false,
            history_limit integer not null default 20 check (history_limit between 1 and 200),
            history_events integer not null default 200 check (history_events between 1 and 10000),
            history_half_life interval not null default '14 days',
            -- event_type -> weight, overriding pgrecs.event_types.default_weight
            event_weights jsonb not null default '{}' check (jsonb_typeof(event_weights) = 'object'),
            negative_weight real not null default 1 check (negative_weight >= 0),
            quality_threshold real not null default 0.3,
            quality_penalty real not null default 0.5 check (quality_penalty between 0 and 1),
            model_id smallint references pgrecs.embedding_models on delete set null,
            updated_at timestamptz not null default now(),
            primary key (tenant_id, placement)
        );
        comment on table pgrecs.placements is
            'Recommendation placements as data: signal weights, candidate pools, default filters, fusion, diversity, caps.';

        insert into pgrecs.placements
            (placement, description, weights, pool_sizes, default_filters, mmr_lambda,
             max_per_brand, max_per_category, allow_repeats)
        values
            ('pdp_similar', 'Product page: items similar to the one shown',
             '{"semantic": 1.0, "cooccurrence": 0.6, "ease": 0.6, "category_popularity": 0.1, "popularity": 0.05}',
             '{"semantic": 50, "cooccurrence": 50, "ease": 50, "category_popularity": 20, "popularity": 20}',
             '{"in_stock": true}', 0.8, 4, null, false),
            ('home_for_you', 'Home page: personal picks from the live history, popular items for new users',
             '{"semantic": 0.6, "cooccurrence": 0.8, "ease": 1.0, "popularity": 0.15, "trending": 0.1, "category_popularity": 0.1}',
             '{"semantic": 20, "cooccurrence": 20, "ease": 20, "popularity": 50, "trending": 20, "category_popularity": 10}',
             '{"in_stock": true}', 0.7, 3, 4, false),
            ('cart_complete_the_look', 'Cart: complements of the cart items (bought together), few per category',
             '{"cooccurrence": 1.0, "ease": 0.8, "semantic": 0.2, "popularity": 0.05}',
             '{"semantic": 20, "cooccurrence": 50, "ease": 50, "popularity": 20}',
             '{"in_stock": true}', 0.6, null, 2, false),
            ('more_like_these', 'More like these examples, less like those',
             '{"semantic": 1.0, "cooccurrence": 0.3, "ease": 0.3, "popularity": 0.02}',
             '{"semantic": 50, "cooccurrence": 30, "ease": 30, "popularity": 20}',
             '{"in_stock": true}', 0.9, null, null, false);

        -- Business rules as data. All non-null match columns must match (item, brand, category at
        -- any level of category_path, minimum margin). A rule is live inside [starts_at, ends_at).
        create table pgrecs.business_rules (
            rule_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            name text not null,
            kind text not null check (kind in ('boost', 'pin', 'block')),
            placement text,  -- null: every placement
            item_id bigint references pgrecs.items on delete cascade,
            brand text,
            category text,
            min_margin numeric,
            factor real,       -- boost: score multiplier (> 1 boosts, < 1 demotes)
            position integer,  -- pin: 1-based position in the list
            starts_at timestamptz,
            ends_at timestamptz,
            enabled boolean not null default true,
            created_at timestamptz not null default now(),
            check (kind <> 'boost' or factor > 0),
            check (kind <> 'pin' or (item_id is not null and position >= 1)),
            check (item_id is not null or brand is not null or category is not null or min_margin is not null),
            check (starts_at is null or ends_at is null or starts_at < ends_at)
        );
        create index business_rules_live on pgrecs.business_rules (tenant_id, kind) where enabled;
        comment on table pgrecs.business_rules is
            'Boosts (campaigns with a time window), pins at fixed positions and blocks, per placement or for all.';

        -- Every served list, so later events can reference it through events.request_id.
        create table pgrecs.recommendation_requests (
            request_id uuid primary key default gen_random_uuid(),
            tenant_id text not null default 'default' references pgrecs.tenants,
            endpoint text not null check (endpoint in ('item', 'user', 'examples')),
            placement text not null,
            user_id bigint references pgrecs.users on delete set null,
            anchor_item_ids bigint[] not null default '{}',
            k integer not null,
            filters jsonb not null default '{}',
            item_ids bigint[] not null,
            scores real[] not null default '{}',
            created_at timestamptz not null default now()
        );
        create index recommendation_requests_time on pgrecs.recommendation_requests (tenant_id, created_at);
        comment on table pgrecs.recommendation_requests is
            'Request log: one row per served recommendation list (placement, user, anchors, items in order).';

        -- Indexes the scoring functions need on hot paths.
        create index items_tenant_category_path on pgrecs.items (tenant_id, category_path);
        create index item_signals_trending on pgrecs.item_signals (tenant_id, trending desc);
        create index events_user_purchases on pgrecs.events (tenant_id, user_id) where event_type = 'purchase';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        -- functions from sql/050_scoring.sql whose types depend on these tables
        drop function if exists recs.recommend(bigint[], bigint[], integer, text, jsonb, boolean);
        drop function if exists recs.recommend_for_user(text, integer, text, jsonb, boolean);
        drop function if exists recs.recommend_for_user(bigint, integer, text, jsonb, boolean);
        drop function if exists recs.recommend_for_item(text, integer, text, jsonb, boolean);
        drop function if exists recs.recommend_for_item(bigint, integer, text, jsonb, boolean);
        drop function if exists pgrecs.user_history(bigint, text);
        drop function if exists pgrecs.rank_items(text, bigint[], real[], text[], bigint[], integer, jsonb, boolean);
        drop function if exists pgrecs.placement_row(text);
        drop index if exists pgrecs.events_user_purchases;
        drop index if exists pgrecs.item_signals_trending;
        drop index if exists pgrecs.items_tenant_category_path;
        drop table if exists pgrecs.recommendation_requests;
        drop table if exists pgrecs.business_rules;
        drop table if exists pgrecs.placements;
        """
    )
