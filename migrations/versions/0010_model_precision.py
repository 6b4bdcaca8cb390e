"""Compute precision per embedding model.

On CPUs with native bfloat16 matrix units (Intel AMX, AVX512-BF16) MiniLM encodes about 2.8x
faster under bfloat16 autocast than in float32, with embeddings at cosine >= 0.9999 to the float32
ones and top-10 neighbour overlap 0.99 (benchmarks/bench_embed.py measures both). Embeddings are
stored as halfvec (float16) anyway. 'auto' picks bfloat16 where the CPU has it natively and float32
elsewhere; 'float32' and 'bfloat16' force one.

Revision ID: 0010_model_precision
Revises: 0009_category_key
Create Date: 2026-11-25
"""

from alembic import op

revision = "0010_model_precision"
down_revision = "0009_category_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.embedding_models
            add column if not exists compute_precision text not null default 'auto'
            check (compute_precision in ('auto', 'float32', 'bfloat16'));
        comment on column pgrecs.embedding_models.compute_precision is
            'Precision the encoder computes in: auto (bfloat16 on CPUs with native bfloat16, float32 otherwise), '
            'float32 or bfloat16. Static (model2vec) models ignore it.';
        """
    )


def downgrade() -> None:
    op.execute("alter table pgrecs.embedding_models drop column if exists compute_precision")
