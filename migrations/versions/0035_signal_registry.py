"""A registry of signals: one row per signal drives ranking, publishing and evaluation.

pgrecs.signals names every signal scoring knows, its kind ('neighbors': neighbour lists in
pgrecs.item_neighbors; 'item': a value per item, from pgrecs.item_signals or pgrecs.items), the
wording of its reason and a description. It is reference data, shared by every tenant (no
tenant_id). pgrecs.item_neighbors.signal references it instead of naming the signals in a check
constraint; the reference is enforced once per statement by the triggers of
sql/038_signal_registry.sql, not by a per-row foreign key (migration 0011 took those off this
table: they cost more than the insert).

pgrecs.publish_signals now takes the map of what to publish ({signal: source relation}): its old
signature, which published whatever temporary tables existed, is dropped here; sql/040_signals.sql
creates the new one.

Revision ID: 0035_signal_registry
Revises: 0034_sql_owns_functions
Create Date: 2026-12-03
"""

from alembic import op

revision = "0035_signal_registry"
down_revision = "0034_sql_owns_functions"
branch_labels = None
depends_on = None

# the wording rank_items used before the registry, so reasons read exactly as they did
SIGNALS = [
    ("semantic", "neighbors", "similar to %s",
     "Items whose text embeddings (the default model) are nearest: pgrecs.item_neighbors lists kept by the embedding worker."),
    ("cooccurrence", "neighbors", "often bought together with %s",
     "Items chosen in the same user and session baskets (shrunk cosine): the dbt mart fct_item_cooccurrence, computed by `pgrecs refresh`."),
    ("sequence", "neighbors", "often chosen next after %s",
     "What users went on to after an item: the dbt mart fct_item_sequence; anchors are weighted by recency position."),
    ("ease", "neighbors", "customers who chose %s also chose this",
     "The learned item-to-item model (EASE) fitted on the user x item matrix by `pgrecs refresh` or `pgrecs refresh --cf`."),
    ("popularity", "item", "popular right now",
     "Decayed event count (pgrecs.item_signals.popularity); the reason is given in the top 5% of the shop."),
    ("trending", "item", "trending",
     "Recent events against the long-run rate (pgrecs.item_signals.trending)."),
    ("category_popularity", "item", "popular in %s",
     "Popularity among the items of the anchors' categories; the reason is given among the 10 most popular of the category."),
    ("margin", "item", None, "The item's margin (pgrecs.items.margin); it gives no reason."),
]
NEIGHBOR_SIGNALS_BEFORE = "'semantic', 'cooccurrence', 'ease', 'sequence'"


def _literal(value: str | None) -> str:
    return "null" if value is None else "'" + value.replace("'", "''") + "'"


def upgrade() -> None:
    rows = ",\n            ".join(f"({', '.join(_literal(v) for v in row)})" for row in SIGNALS)
    op.execute(
        f"""
        create table pgrecs.signals (
            signal text primary key,
            kind text not null check (kind in ('neighbors', 'item')),
            reason_format text,
            description text not null
        );
        comment on table pgrecs.signals is
            'The registry of signals (shared by all tenants): one row per signal a placement can weight. kind neighbors: lists in pgrecs.item_neighbors; kind item: a value per item.';
        comment on column pgrecs.signals.reason_format is
            'The reason shown for a material contribution, a format() string: %s is the anchor''s name for neighbour signals; null gives no reason.';
        insert into pgrecs.signals (signal, kind, reason_format, description) values
            {rows};

        alter table pgrecs.item_neighbors drop constraint item_neighbors_signal_check;
        comment on column pgrecs.item_neighbors.signal is
            'A neighbour signal of pgrecs.signals (checked once per statement).';

        drop function if exists pgrecs.publish_signals(jsonb, boolean);
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        drop trigger if exists item_neighbors_check_signal_on_insert on pgrecs.item_neighbors;
        drop trigger if exists item_neighbors_check_signal_on_update on pgrecs.item_neighbors;
        drop function if exists pgrecs.check_signal_references() cascade;
        drop function if exists pgrecs.placement_signals(pgrecs.placements);
        drop function if exists pgrecs.publish_signals(jsonb, boolean, jsonb);
        drop function if exists pgrecs.publish_signal_lists(text, regclass, regclass);
        delete from pgrecs.item_neighbors where signal not in ({NEIGHBOR_SIGNALS_BEFORE});
        alter table pgrecs.item_neighbors add constraint item_neighbors_signal_check
            check (signal in ({NEIGHBOR_SIGNALS_BEFORE}));
        comment on column pgrecs.item_neighbors.signal is null;
        drop table pgrecs.signals cascade;
        """
    )
