"""Tie keys: a non-informative, stable order for items of equal score.

Every ranking (the serving SQL, the neighbour lists, the evaluation's baselines) breaks score ties
by `tie_key`, a 64-bit hash of the item's external id, never by item_id: internal ids follow load
order, which follows the file, which is often grouped by product or category. A hash carries no
such information and stays the same whichever order a catalogue is loaded in.

The previous definitions of pgrecs.user_history (it now also returns each item's recency position)
and of pgrecs.rank_items (it now takes the anchors' recency positions) are dropped here; sql/
creates the new ones.

Revision ID: 0020_tie_keys
Revises: 0019_console
Create Date: 2026-12-02
"""

from alembic import op

revision = "0020_tie_keys"
down_revision = "0019_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.items
            add column tie_key bigint not null
                generated always as (('x' || left(md5(external_id), 16))::bit(64)::bigint) stored;
        comment on column pgrecs.items.tie_key is
            'First 64 bits of md5(external_id): breaks score ties in every ranking (stable, carries no load order).';
        drop function if exists pgrecs.user_history(bigint, text);
        drop function if exists pgrecs.rank_items(text, bigint[], real[], text[], bigint[], integer, jsonb, boolean);
        """
    )


def downgrade() -> None:
    op.execute("alter table pgrecs.items drop column tie_key")
