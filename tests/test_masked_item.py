"""Masked-item (Cloze) training for BERT4Rec: seeded masking, MASK input, end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rectk import recipe as recipe_lib
from rectk.config import ModelConfig
from rectk.data.pipeline import train_dataset
from rectk.data.split import Sequences
from rectk.errors import RectkError
from rectk.model import build_model
from rectk_plugins.tasks import MaskedItem
from tests.conftest import RECIPES, TINY

VOCAB = 40  # items 1..39; MASK = 40


def _sequences(seed=0, users=30):
    rng = np.random.default_rng(seed)
    rows = [rng.integers(1, VOCAB, size=rng.integers(2, 15)) for _ in range(users)]
    ptr = np.zeros(users + 2, np.int64)
    ptr[2:] = np.cumsum([len(r) for r in rows])
    return Sequences(ptr=ptr, items=np.concatenate(rows).astype(np.int32))


def _batches(seed, max_len=6, mask_prob=0.3):
    ds = train_dataset(
        _sequences(),
        max_len=max_len,
        batch_size=8,
        epochs=2,
        seed=seed,
        transform=MaskedItem(mask_prob=mask_prob).train_transform(vocab_size=VOCAB),
    )
    return ds, list(ds)


def test_masking_is_seeded_and_only_masked_positions_carry_targets():
    train = _sequences()
    ds, batches = _batches(seed=3)
    again = _batches(seed=3)[1]
    other = _batches(seed=4)[1]
    assert all(np.array_equal(a["input"], b["input"]) for a, b in zip(batches, again, strict=True))
    assert any(
        not np.array_equal(a["input"], b["input"]) for a, b in zip(batches, other, strict=True)
    )
    masked = real = 0
    for b in batches:
        inp, tgt = b["input"], b["target"]
        is_mask = inp == VOCAB
        assert np.array_equal(tgt > 0, is_mask)  # targets exactly at the masked positions
        for row, u in enumerate(b["user"]):
            if not (inp[row] > 0).any():
                assert not tgt[row].any()  # a padding row
                continue
            assert is_mask[row].any()  # at least one masked item per window
            window = np.where(is_mask[row], tgt[row], inp[row])
            seq = train.row(int(u))
            items = window[window > 0]
            # The window is a contiguous run of the learner's sequence, in order.
            starts = [
                s
                for s in range(len(seq) - len(items) + 1)
                if np.array_equal(seq[s : s + len(items)], items)
            ]
            assert starts
        masked += int(is_mask.sum())
        real += int((inp > 0).sum())
    assert 0.2 < masked / real < 0.5  # mask_prob 0.3, plus the at-least-one rule

    # Resuming the iterator continues with identical masks.
    it = iter(ds.to_iter_dataset())
    head = [next(it)["input"] for _ in range(3)]
    it2 = iter(ds.to_iter_dataset())
    it2.set_state(it.get_state())
    rest = [b["input"] for b in it2]
    assert all(np.array_equal(a, b["input"]) for a, b in zip(head + rest, batches, strict=True))


def test_mask_last_prob_masks_the_last_item_alone_in_that_share_of_windows():
    from rectk_plugins.tasks import MaskItems

    window = {
        "user": 1,
        "input": np.array([0, 0, 3, 4, 5, 6]),
        "target": np.array([0, 3, 4, 5, 6, 7]),
    }
    rng = np.random.default_rng(0)
    f = MaskItems(mask_prob=0.9, mask_id=VOCAB, mask_last_prob=0.3)
    outs = [f.random_map(window, rng) for _ in range(2000)]
    alone = [o for o in outs if (o["input"] == VOCAB).sum() == 1 and o["input"][-1] == VOCAB]
    # mask_prob 0.9 over five items masks the last alone about 1e-4 of the time
    assert 0.26 < len(alone) / len(outs) < 0.34
    for o in alone:
        assert o["input"].tolist() == [0, 3, 4, 5, 6, VOCAB]
        assert o["target"].tolist() == [0, 0, 0, 0, 0, 7]
    # off: one uniform draw per position and nothing else, so earlier runs keep their masks
    off = MaskItems(mask_prob=0.5, mask_id=VOCAB, mask_last_prob=0.0)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    items = np.array([0, 3, 4, 5, 6, 7])
    for _ in range(20):
        masked = (items > 0) & (b.random(6) < 0.5)
        masked[-1] |= not masked.any()
        want = np.where(masked, VOCAB, items).tolist()
        assert off.random_map(window, a)["input"].tolist() == want
    with pytest.raises(ValueError, match="mask_last_prob"):
        MaskedItem(mask_last_prob=1.5)


def test_model_reads_states_at_an_appended_mask():
    cfg = recipe_lib.from_dict(
        ModelConfig, {"dim": 8, "max_len": 5, "encoder": {"type": "bert4rec", "layers": 1}}
    )
    model = build_model(
        cfg,
        vocab_size=VOCAB,
        num_users=3,
        catalogue=None,
        rngs=nnx.Rngs(params=jax.random.key(0)),
        mask_token=True,
    )
    hist = jnp.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    table = model.item_table()
    assert table.shape == (VOCAB, 8)  # the MASK is an input only, never scored
    shifted = jnp.array([[0, 3, 4, 5, VOCAB], [2, 3, 4, 5, VOCAB]])
    want = model.encode(shifted, table)[:, -1]
    got = model.user_states(hist, table)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    assert bool(jnp.isfinite(got).all())
    plain = build_model(
        cfg, vocab_size=VOCAB, num_users=3, catalogue=None, rngs=nnx.Rngs(params=jax.random.key(0))
    )
    assert plain.mask_token is None


def test_next_item_refuses_a_bidirectional_encoder_unless_stride_is_one():
    for stride in (0, 2):
        r = recipe_lib.load(
            RECIPES / "quickstart.toml", ["model.encoder.type=bert4rec", f"train.stride={stride}"]
        )
        with pytest.raises(RectkError, match=r"train\.stride = 1"):
            r.config.task.run(r, progress=False)


def test_stride_one_windows_train_their_last_position_only():
    """What lets a bidirectional encoder train on next items: a window's target at position t
    is its input at t + 1, so only the last position's target is absent from the window."""
    train = _sequences()
    ds = train_dataset(train, max_len=6, batch_size=8, epochs=1, seed=0, stride=1)
    rows = 0
    for b in ds:
        inp, tgt = b["input"], b["target"]
        np.testing.assert_array_equal(tgt[:, :-1], 0)
        real = inp[:, -1] > 0
        assert (tgt[real, -1] > 0).all()
        rows += int(real.sum())
    assert rows == int(np.maximum(train.lengths - 1, 0).sum())


def test_bert4rec_fine_tunes_on_next_items_from_a_masked_item_run(masked_item_run, tmp_path):
    """Pre-train by masked items, then fine-tune on the next item read at the last history
    item (``next_item``, ``train.stride = 1``): the Cloze weights carry over, the MASK input
    embedding stays behind, and the fine-tuned run evaluates."""
    pre = masked_item_run.results
    assert np.isfinite(pre["test"]["model"]["ndcg@10"]) and pre["last_step"] == 6
    fine = recipe_lib.load(
        RECIPES / "quickstart.toml",
        [
            *TINY,
            "model.encoder.type=bert4rec",
            f"run_dir={tmp_path}",
            "name=fine",
            f"train.init_from={masked_item_run.path}",
            "train.stride=1",
            "train.steps=4",
        ],
    )
    summary = fine.config.task.run(fine, progress=False)
    assert np.isfinite(summary["test"]["model"]["ndcg@10"])
    report = json.loads((tmp_path / "fine" / "init_from.json").read_text())
    assert report["copied"] and not report["fresh"]
    assert report["unused"] == ["['mask_token'].value"]


def test_fine_tuning_windows_mask_the_last_item_of_every_prefix():
    """``stride = 1`` with ``mask_last_prob = 1``: one window per (prefix -> next item) target,
    the target's slot a MASK after its whole history: the task evaluated."""
    train = _sequences()
    max_len = 6
    ds = train_dataset(
        train,
        max_len=max_len,
        batch_size=8,
        epochs=1,
        seed=0,
        stride=1,
        transform=MaskedItem(mask_prob=0.3, mask_last_prob=1.0).train_transform(vocab_size=VOCAB),
    )
    seen = []
    for b in ds:
        for row, u in enumerate(b["user"]):
            inp, tgt = b["input"][row], b["target"][row]
            if not (inp > 0).any():
                continue  # a padding row
            assert inp[-1] == VOCAB and (inp[:-1] != VOCAB).all()
            assert (tgt[:-1] == 0).all() and tgt[-1] > 0
            seq = train.row(int(u))
            context = inp[:-1][inp[:-1] > 0]
            # the target's history (its last max_len - 1 items) sits before the MASK, in order
            end = next(
                e
                for e in range(1, len(seq))
                if seq[e] == tgt[-1] and np.array_equal(seq[max(0, e - max_len + 1) : e], context)
            )
            seen.append((int(u), end))
    want = int(np.maximum(train.lengths - 1, 0).sum())
    assert len(seen) == len(set(seen)) == want
