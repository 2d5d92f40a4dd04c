"""A text embedder ``texts -> [N, D]`` from the pretrained text tower, for ``rectk.resources``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flax import nnx

from .bert import BertEncoder
from .tokenize import encode_texts, load_tokenizer
from .weights import default_model_dir, load_bert

__all__ = ["text_embedder"]


def text_embedder(
    model_dir: str | Path | None = None,
    *,
    model: BertEncoder | None = None,
    max_length: int = 64,
    batch_size: int = 64,
    pooling: str = "mean",
) -> Callable[[Sequence[str]], np.ndarray]:
    """``embed(texts)``: unit-length pooled embeddings ``[N, D]`` (float32 numpy).

    Args:
      model_dir: a Hugging Face BERT folder; default: the installed all-MiniLM-L6-v2.
      model: an encoder already loaded from ``model_dir`` (e.g. a fine-tuned one); default:
        the folder's pretrained weights.
      max_length: texts are truncated to this many tokens.
      batch_size: texts per forward call.
      pooling: ``"mean"`` (what all-MiniLM-L6-v2 was trained with) or ``"cls"``.
    """
    folder = Path(model_dir) if model_dir else default_model_dir()
    bert = model if model is not None else load_bert(folder, rngs=nnx.Rngs(0))[0]
    tokenizer = load_tokenizer(folder)

    def embed(texts: Sequence[str]) -> np.ndarray:
        return encode_texts(
            bert,
            tokenizer,
            list(texts),
            batch_size=batch_size,
            max_length=max_length,
            pooling=pooling,
            normalize=True,
        )

    return embed
