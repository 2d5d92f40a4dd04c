"""Pretrained text encoders: a BERT-family encoder in Flax NNX, its weights and its tokenizer.

>>> from flax import nnx
>>> from rectk_plugins.text import default_model_dir, encode_texts, load_bert, load_tokenizer
>>> folder = default_model_dir()  # doctest: +SKIP
>>> model, config = load_bert(folder, rngs=nnx.Rngs(0))  # doctest: +SKIP
>>> emb_nd = encode_texts(model, load_tokenizer(folder), ["graph algorithms"])  # doctest: +SKIP
"""

from .bert import (
    LORA_TARGETS,
    POOLING,
    BertConfig,
    BertEmbeddings,
    BertEncoder,
    BertLayer,
    BertSelfAttention,
    Dense,
    LayerNorm,
    cls_pool,
    mean_pool,
)
from .tokenize import encode_texts, load_tokenizer, tokenize
from .weights import check_model_dir, default_model_dir, load_bert, read_config

__all__ = [
    "LORA_TARGETS",
    "POOLING",
    "BertConfig",
    "BertEmbeddings",
    "BertEncoder",
    "BertLayer",
    "BertSelfAttention",
    "Dense",
    "LayerNorm",
    "check_model_dir",
    "cls_pool",
    "default_model_dir",
    "encode_texts",
    "load_bert",
    "load_tokenizer",
    "mean_pool",
    "read_config",
    "tokenize",
]
