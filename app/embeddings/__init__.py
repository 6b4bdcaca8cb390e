"""Embeddings: models as data (registry + one cached instance per process), encoding, the queue worker.

Submodules are imported where they are used (`from pgrecs.embeddings import worker`), so that a
command that needs no model does not load numpy or torch.
"""
