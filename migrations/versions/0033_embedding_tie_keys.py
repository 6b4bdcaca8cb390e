"""Tie keys on embedding rows: the semantic scans break distance ties without a join.

`pgrecs.item_embeddings.tie_key` copies `pgrecs.items.tie_key` (like the filter columns of
migration 0007, kept in step by the triggers in sql/), so the exact scan orders by
(distance, tie_key) and the index scans cut their slack by it.

Revision ID: 0033_embedding_tie_keys
Revises: 0026_console_speed
Create Date: 2026-12-02
"""

from alembic import op

revision = "0033_embedding_tie_keys"
down_revision = "0026_console_speed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.item_embeddings add column tie_key bigint;
        update pgrecs.item_embeddings as e set tie_key = i.tie_key
        from pgrecs.items as i
        where i.item_id = e.item_id;
        alter table pgrecs.item_embeddings alter column tie_key set not null;
        comment on column pgrecs.item_embeddings.tie_key is
            'Copy of pgrecs.items.tie_key: breaks distance ties in the semantic scans.';
        """
    )


def downgrade() -> None:
    op.execute("alter table pgrecs.item_embeddings drop column tie_key")
