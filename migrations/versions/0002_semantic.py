"""Semantic layer: embedding models, item embeddings with HNSW indexes, the embedding queue.

Revision ID: 0002_semantic
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from alembic import op  # noqa: F401

revision = "0002_semantic"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
