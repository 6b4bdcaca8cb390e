"""Embeddings: models as data (registry + one cached instance per process), encoding, the queue worker."""

from pgrecs.embeddings.models import ModelSpec, encoder_for, get_encoder, load_spec, register_model  # noqa: F401
