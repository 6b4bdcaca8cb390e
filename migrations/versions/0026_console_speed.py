"""Events by the served list they cite.

recs.placement_performance counts, for each served list, the clicks and purchases whose
request_id names it. Without an index that is a pass over the whole event log per overview page;
with it, a few index probes per list. Partial: most events (history loads, page views) cite no
list, and they pay nothing at insert.

Revision ID: 0026_console_speed
Revises: 0025_model_cutover
Create Date: 2026-12-02
"""

from alembic import op

revision = "0026_console_speed"
down_revision = "0025_model_cutover"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create index events_request on pgrecs.events (tenant_id, request_id) where request_id is not null;
        comment on index pgrecs.events_request is 'Events by the served list (recommendation request) they cite.';
        """
    )


def downgrade() -> None:
    op.execute("drop index if exists pgrecs.events_request")
