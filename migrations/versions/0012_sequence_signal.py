"""Next-item lists: the signal 'sequence' (what users went on to after an item).

`pgrecs refresh` publishes the dbt mart fct_item_sequence into pgrecs.item_neighbors as
signal 'sequence'. The seeded personal and cart placements get it as a signal where their
weights are still the seeded ones (a placement someone edited is left as it is).

Revision ID: 0012_sequence_signal
Revises: 0011_neighbor_cleanup
Create Date: 2026-11-26
"""

from alembic import op

revision = "0012_sequence_signal"
down_revision = "0011_neighbor_cleanup"
branch_labels = None
depends_on = None

SIGNALS_BEFORE = "'semantic', 'cooccurrence', 'ease'"
SIGNALS_AFTER = "'semantic', 'cooccurrence', 'ease', 'sequence'"

# (placement, the seeded weights, the sequence weight and pool added to them)
SEEDED = [
    ("home_for_you",
     '{"semantic": 0.6, "cooccurrence": 0.8, "ease": 1.0, "popularity": 0.15, "trending": 0.1, "category_popularity": 0.1}',
     1.0, 20),
    ("cart_complete_the_look", '{"cooccurrence": 1.0, "ease": 0.8, "semantic": 0.2, "popularity": 0.05}', 0.5, 50),
]


def _allow_signals(signals: str, origins: str) -> str:
    """The signal check of pgrecs.item_neighbors, its comment, and the deleted-items trigger
    function that names the signals (so its delete uses the (tenant_id, signal, item_id) index)."""
    return f"""
        alter table pgrecs.item_neighbors drop constraint item_neighbors_signal_check;
        alter table pgrecs.item_neighbors add constraint item_neighbors_signal_check
            check (signal in ({signals}));
        comment on table pgrecs.item_neighbors is 'Top-N neighbours per item and signal ({origins}).';
        create or replace function pgrecs.remove_deleted_items_from_neighbors()
        returns trigger
        language plpgsql
        as $$
        begin
            delete from pgrecs.item_neighbors as n
            using deleted_items as d
            where n.tenant_id = d.tenant_id and n.item_id = d.item_id
                and n.signal in ({signals});
            delete from pgrecs.item_neighbors as n
            using deleted_items as d
            where n.neighbor_item_id = d.item_id;
            return null;
        end
        $$;
    """


def upgrade() -> None:
    op.execute(_allow_signals(SIGNALS_AFTER, "semantic from embeddings; cooccurrence, sequence and ease from events"))
    for placement, seeded, weight, pool in SEEDED:
        op.execute(
            f"""
            update pgrecs.placements
            set weights = weights || jsonb_build_object('sequence', {weight}::float8),
                pool_sizes = pool_sizes || jsonb_build_object('sequence', {pool}::int),
                updated_at = now()
            where placement = '{placement}' and weights = '{seeded}'::jsonb
            """
        )


def downgrade() -> None:
    op.execute(
        """
        update pgrecs.placements
        set weights = weights - 'sequence', pool_sizes = pool_sizes - 'sequence'
        where weights ? 'sequence' or pool_sizes ? 'sequence';
        delete from pgrecs.item_neighbors where signal = 'sequence';
        """
    )
    op.execute(_allow_signals(SIGNALS_BEFORE, "semantic from embeddings, cooccurrence and ease from events"))
