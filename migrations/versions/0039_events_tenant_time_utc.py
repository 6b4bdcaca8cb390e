"""The per-tenant time index of the event log on the UTC wall-clock time instead of occurred_at.

events_tenant_time (tenant_id, occurred_at) also matched the user-history range scans
(tenant_id, user_id, occurred_at >= ...), and the planner could take it over events_user_time,
filtering the user's rows out of the whole tenant's. On the expression `occurred_at at time zone
'UTC'` (immutable, one-to-one with occurred_at) only the reference-time lookup of
stg_pgrecs__events, which asks for that expression, uses it.

Revision ID: 0039_events_tenant_time_utc
Revises: 0038_events_tenant_time
Create Date: 2026-12-03
"""

from alembic import op

revision = "0039_events_tenant_time_utc"
down_revision = "0038_events_tenant_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("drop index if exists pgrecs.events_tenant_time")
    op.execute("create index if not exists events_tenant_time_utc"
               " on pgrecs.events (tenant_id, (occurred_at at time zone 'UTC'))")


def downgrade() -> None:
    op.execute("drop index if exists pgrecs.events_tenant_time_utc")
    op.execute("create index if not exists events_tenant_time on pgrecs.events (tenant_id, occurred_at)")
