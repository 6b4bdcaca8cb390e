"""A merchant's embedding decision per item, and each item's popularity percentile.

`items.embed_override` lets a merchant overrule the junk-text rule (pgrecs.item_embed_problem):
true embeds the item whatever the rule says (text permitting), false never embeds it, null lets
the rule decide. Loads never touch it.

`item_signals.popularity_percentile` is the share of the shop's items more popular than this one
(0 for the most popular), published from the dbt popularity mart: the reason "popular right now"
is given only to items in the top share of the catalog (docs/scoring.md).

Revision ID: 0023_embed_override
Revises: 0021_load_warnings
Create Date: 2026-12-02
"""

from alembic import op

revision = "0023_embed_override"
down_revision = "0021_load_warnings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.items add column embed_override boolean;
        comment on column pgrecs.items.embed_override is
            'The merchant''s embedding decision: true embeds the item whatever the junk-text rule says, false never '
            'embeds it, null (the default) lets the rule decide (pgrecs.item_embed_problem).';
        alter table pgrecs.item_signals add column popularity_percentile real;
        comment on column pgrecs.item_signals.popularity_percentile is
            'Share of the shop''s items more popular than this one (0: the most popular), from the popularity mart.';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table pgrecs.item_signals drop column if exists popularity_percentile;
        alter table pgrecs.items drop column if exists embed_override;
        """
    )
