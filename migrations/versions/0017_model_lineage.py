"""Embedding model lifecycle and lineage.

Every model has a state: 'candidate' (registered, not serving: a fine-tuned model waiting for the
evaluation gate), 'active' (serving: the default model and any other tier in use) or 'retired'
(replaced; its embeddings stay until the model is dropped). The default model is always active.
A fine-tuned model records the model it was trained from (base_model_id) and its lineage (window,
pair counts by source, hyperparameters, training time, library versions); the evaluation gate
fills `evaluation`.

Revision ID: 0017_model_lineage
Revises: 0015_model_fits
Create Date: 2026-12-02
"""

from alembic import op

revision = "0017_model_lineage"
down_revision = "0015_model_fits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.embedding_models
            add column state text not null default 'active'
                check (state in ('candidate', 'active', 'retired')),
            add column base_model_id smallint references pgrecs.embedding_models on delete set null,
            add column lineage jsonb,
            add column evaluation jsonb,
            add constraint embedding_models_default_is_active check (not is_default or state = 'active');
        comment on column pgrecs.embedding_models.state is
            'candidate (registered, not serving), active (serving) or retired (replaced; embeddings kept until dropped).';
        comment on column pgrecs.embedding_models.base_model_id is 'The model a fine-tuned model was trained from.';
        comment on column pgrecs.embedding_models.lineage is
            'How a fine-tuned model was made: base model, training window, pair counts by source, hyperparameters, '
            'training time, device and library versions.';
        comment on column pgrecs.embedding_models.evaluation is
            'Evaluation results of the model against the active one (filled by the evaluation gate).';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table pgrecs.embedding_models
            drop constraint if exists embedding_models_default_is_active,
            drop column if exists evaluation,
            drop column if exists lineage,
            drop column if exists base_model_id,
            drop column if exists state;
        """
    )
