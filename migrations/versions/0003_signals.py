"""Signals read by scoring: item neighbours (semantic, co-occurrence, learned) and per-item signals.

Revision ID: 0003_signals
Revises: 0002_semantic
Create Date: 2026-11-25
"""

from alembic import op  # noqa: F401

revision = "0003_signals"
down_revision = "0002_semantic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
