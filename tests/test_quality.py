"""Real data: SASRec must beat popularity on ml-100k by a wide margin (held-out test split)."""

import pytest

from rectk import recipe as recipe_lib
from rectk.train import train_and_evaluate
from tests.conftest import RECIPES, shared

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("full_optimisations")]


def test_sasrec_beats_popularity_on_ml100k(tmp_path):
    shared("ml-100k", "ml-100k.inter")
    r = recipe_lib.load(
        RECIPES / "ml100k_sasrec.toml",
        [
            f"run_dir={tmp_path}",
            "train.epochs=20",
            "train.lr=3e-3",
            "train.patience=0",
            "eval.baselines=['popularity']",
            "data.path=" + str(shared("ml-100k", "ml-100k.inter")),
        ],
    )
    summary = train_and_evaluate(r, progress=False, echo=lambda *_: None)
    model, pop = summary["test"]["model"], summary["test"]["popularity"]
    assert summary["test_targets"] == 943
    assert model["ndcg@10"] > 1.8 * pop["ndcg@10"], (model, pop)
    assert model["recall@10"] > 1.5 * pop["recall@10"], (model, pop)
