"""Refresh inputs: what the last `pgrecs refresh` was built from, so the next one can skip work.

pgrecs.refresh_state.inputs holds fingerprints per tenant, written by `pgrecs refresh`
(app/signals/refresh.py): `settings` (the dbt vars the incremental models depend on; a change
forces a full refresh), `items` (the catalog rows and the text functions; unchanged means the
item-text and audit models are not rebuilt) and `ease` (the binary interaction matrix EASE was
last computed from; unchanged means EASE is not recomputed).

Revision ID: 0008_refresh_inputs
Revises: 0007_embedding_filters
Create Date: 2026-11-25
"""

from alembic import op

revision = "0008_refresh_inputs"
down_revision = "0007_embedding_filters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.refresh_state add column if not exists inputs jsonb not null default '{}';
        comment on column pgrecs.refresh_state.inputs is
            'Fingerprints of what the last refresh was built from: settings, items, ease (see app/signals/refresh.py).';
        """
    )


def downgrade() -> None:
    op.execute("alter table pgrecs.refresh_state drop column if exists inputs;")
