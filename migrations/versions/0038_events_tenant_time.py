"""An index on the event log's time per tenant: the reference time of each tenant (its latest
event) is then one index lookup instead of a scan of the whole log.

stg_pgrecs__events joins every event to its tenant's reference time, and every dbt model and test
that reads the view computed it by scanning all events (once per model, once per test, on full
and incremental refreshes alike).

Revision ID: 0038_events_tenant_time
Revises: 0037_recs_titles
Create Date: 2026-12-03
"""

from alembic import op

revision = "0038_events_tenant_time"
down_revision = "0037_recs_titles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists events_tenant_time on pgrecs.events (tenant_id, occurred_at)")


def downgrade() -> None:
    op.execute("drop index if exists pgrecs.events_tenant_time")
