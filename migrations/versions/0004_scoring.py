"""Hybrid scoring: placements, business rules, recommendation request log.

Revision ID: 0004_scoring
Revises: 0003_signals
Create Date: 2026-11-25
"""

from alembic import op  # noqa: F401

revision = "0004_scoring"
down_revision = "0003_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
