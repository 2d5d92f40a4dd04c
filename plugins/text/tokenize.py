"""Tokenising texts and encoding them into embeddings with a :class:`BertEncoder`.

The tokenizer comes from ``transformers`` and is read from the model folder only: the Hugging Face
hub is switched off (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``) before ``transformers`` is
imported, unless the user set those variables.

:func:`encode_texts` is built for speed on CPU and accelerators alike: texts are sorted by length,
batched, and each batch is padded to a *bucketed* length (a multiple of ``bucket`` up to
``max_length``) and always to the full batch size, so the jitted forward compiles once per bucket
and short texts do not pay for long ones. The output keeps the input order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rectk.errors import DataError

from .bert import POOLING, BertEncoder
from .weights import check_model_dir


def load_tokenizer(folder: str | Path) -> Any:
    """The Hugging Face tokenizer of a model folder, read from local files only.

    Raises:
        DataError: the folder or its tokenizer files are missing or unreadable.
    """
    folder = check_model_dir(folder)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise DataError(f"the tokenizer in {folder} could not be loaded: {err}") from err


def tokenize(
    tokenizer: Any, texts: Sequence[str], *, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenises ``texts``, truncated and padded to exactly ``max_length`` tokens.

    Returns:
        ``(input_ids_bl, mask_bl)``, both int32 numpy arrays ``[B, max_length]``; the mask is 1
        for real tokens and 0 for padding.
    """
    out = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_attention_mask=True,
        return_token_type_ids=False,
        return_tensors="np",
    )
    return out["input_ids"].astype(np.int32), out["attention_mask"].astype(np.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "pooling", "normalize"))
def _embed(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    input_ids_bt: jax.Array,
    mask_bt: jax.Array,
    *,
    pooling: str,
    normalize: bool,
) -> jax.Array:
    model = nnx.merge(graphdef, state)
    hidden_btd = model(input_ids_bt, mask_bt)
    emb_bd = POOLING[pooling](hidden_btd, mask_bt)
    if normalize:
        norm_b1 = jnp.linalg.norm(emb_bd, axis=-1, keepdims=True)
        emb_bd = emb_bd / jnp.maximum(norm_b1, 1e-12)
    return emb_bd


def _bucket_lengths(lengths_n: np.ndarray, *, bucket: int, max_length: int) -> np.ndarray:
    return np.minimum(-(-lengths_n // bucket) * bucket, max_length)


def encode_texts(
    model: BertEncoder,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 128,
    pooling: str = "mean",
    normalize: bool = False,
    bucket: int = 16,
) -> np.ndarray:
    """Embeds ``texts`` with ``model``; returns float32 numpy ``[N, D]`` in the input order.

    Args:
        model: the encoder.
        tokenizer: its tokenizer (:func:`load_tokenizer`).
        texts: the texts.
        batch_size: texts per forward call; every call has exactly this many rows. Small batches
            suit a CPU (docs/notes/2026-11-29-text-towers.md); accelerators want more.
        max_length: texts are truncated to this many tokens ([CLS] and [SEP] included).
        pooling: ``"mean"`` (masked mean of the last hidden states) or ``"cls"``.
        normalize: scale every embedding to unit L2 norm.
        bucket: padded lengths are rounded up to a multiple of this (capped at ``max_length``),
            which bounds the number of compilations by ``max_length / bucket``.
    """
    if pooling not in POOLING:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {sorted(POOLING)}")
    if batch_size <= 0 or max_length <= 0 or bucket <= 0:
        raise ValueError("batch_size, max_length and bucket must be positive")
    texts = list(texts)
    dim = model.config.hidden_size
    if not texts:
        return np.zeros((0, dim), np.float32)
    ids = tokenizer(
        texts,
        padding=False,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    lengths_n = np.array([len(x) for x in ids], np.int64)
    order_n = np.argsort(lengths_n, kind="stable")
    graphdef, state = nnx.split(model)
    out_nd = np.empty((len(texts), dim), np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order_n[start : start + batch_size]
        t = int(_bucket_lengths(lengths_n[rows].max(), bucket=bucket, max_length=max_length))
        ids_bt = np.zeros((batch_size, t), np.int32)
        mask_bt = np.zeros((batch_size, t), np.int32)
        for i, row in enumerate(rows):
            ids_bt[i, : lengths_n[row]] = ids[row]
            mask_bt[i, : lengths_n[row]] = 1
        emb_bd = _embed(graphdef, state, ids_bt, mask_bt, pooling=pooling, normalize=normalize)
        out_nd[rows] = np.asarray(emb_bd[: len(rows)], dtype=np.float32)
    return out_nd
