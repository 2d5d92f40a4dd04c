"""The synthetic catalogue: seeded, power-law popularity, a next item that can be learned."""

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk_plugins.datasets.synthetic import Synthetic, generate
from tests.conftest import RECIPES

SMALL: dict = dict(num_items=2000, num_learners=4000, mean_length=10.0, zipf_exponent=1.0)


def test_same_seed_same_log_other_seed_other_log():
    a = Synthetic(**SMALL, seed=3).load().interactions
    b = Synthetic(**SMALL, seed=3).load().interactions
    c = Synthetic(**SMALL, seed=4).load().interactions
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.num_items == 2000 and a.num_users == 4000
    assert len(a) / a.num_users == pytest.approx(10.0, rel=0.05)
    assert a.item.min() >= 1 and a.item.max() <= 2000 and a.user.min() == 1


def test_popularity_follows_a_power_law():
    """log(count) against log(rank) is a line over the top 1000 items, its slope near
    -zipf_exponent (the successors' walk steepens it a little)."""
    for exponent in (0.8, 1.2):
        _, item, _ = generate(
            num_items=5000,
            num_learners=20000,
            mean_length=10,
            zipf_exponent=exponent,
            branching=4,
            follow=0.7,
            seed=0,
        )
        log_count = np.log(np.sort(np.bincount(item))[::-1][:1000])
        log_rank = np.log(np.arange(1, 1001))
        slope = np.polyfit(log_rank, log_count, 1)[0]
        assert slope == pytest.approx(-exponent, abs=0.3), exponent
        assert np.corrcoef(log_rank, log_count)[0, 1] ** 2 > 0.95, exponent


def test_transitions_predict_the_next_item_better_than_popularity():
    """Hit rate at 10 of each learner's last item: counts of (previous -> next) in the other
    items beat popularity (the structure a sequence model learns)."""
    user, item, _ = generate(**SMALL, branching=4, follow=0.7, seed=0)
    last = np.r_[user[1:] != user[:-1], True]
    prev_last = np.flatnonzero(last) - 1
    train = ~last
    pairs = train[:-1] & train[1:] & (user[:-1] == user[1:])
    v = int(SMALL["num_items"]) + 1
    trans = np.zeros((v, v), np.int32)
    np.add.at(trans, (item[:-1][pairs], item[1:][pairs]), 1)
    popularity = np.bincount(item[train], minlength=v).astype(np.float64)
    target = item[last]
    top_pop = np.argsort(-popularity)[:10]
    hit_pop = np.isin(target, top_pop).mean()
    scores = trans[item[prev_last]] + 1e-3 * popularity[None, :]
    top_trans = np.argsort(-scores, axis=1)[:, :10]
    hit_trans = (top_trans == target[:, None]).any(axis=1).mean()
    assert hit_trans > hit_pop + 0.15, (hit_trans, hit_pop)


def test_a_recipe_picks_it_and_rejects_bad_fields():
    cfg = recipe_lib.load(
        RECIPES / "quickstart.toml", ["data.type=synthetic", "data.num_items=100"]
    ).config
    assert cfg.data.load().interactions.num_items == 100
    with pytest.raises(ValueError, match="mean_length"):
        Synthetic(mean_length=1.0)
