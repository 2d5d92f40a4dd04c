"""Tasks: what a recipe trains and evaluates (``rectk.contracts.TaskPlugin``).

A task may shape the training batches and the model's input, and refuse configurations it
cannot train (each optional; the protocol's defaults do nothing):

- ``train_transform(*, vocab_size) -> grain.transforms.RandomMap | None``: a seeded per-window
  map applied to every training window ``{"user", "input", "target"}`` before batching.
- ``mask_token: bool`` (class attribute): the model learns a MASK input embedding at id
  ``vocab_size`` and reads a learner's state at a MASK appended after the history.
- ``check(config)``: raises ``RecipeError`` for a run configuration the task cannot train.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import grain
import numpy as np

from rectk import registry
from rectk.contracts import TaskPlugin
from rectk.errors import RecipeError
from rectk.recipe import plugin_name, registered


@registered(registry.tasks, "next_item")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NextItem(TaskPlugin):
    """Next-item (next-course) recommendation from a learner's history: train on every
    (prefix -> next item) target, evaluate by full ranking on held-out last items.

    A bidirectional encoder (``bert4rec``) trains here only with ``train.stride = 1``: one
    window per prefix, whose last position alone carries a target, and that target is not in
    the window. Every other position's target is the next input, which bidirectional attention
    would show it. The learner's state is then read at the last history item, not at a MASK
    appended after it: a way to fine-tune a masked-item pre-trained BERT4Rec
    (``train.init_from``) on the next item (``recipes/beauty_bert4rec_finetune_last.toml``).
    """

    def check(self, config: Any) -> None:
        """Refuses a bidirectional encoder unless ``train.stride = 1``."""
        encoder = config.model.encoder
        if encoder.traits.bidirectional and config.train.stride != 1:
            raise RecipeError(
                f"encoder {type(encoder).plugin_name!r} is bidirectional: next-item training "
                f"with train.stride = {config.train.stride} would let positions see their "
                "own targets. Set train.stride = 1 (one window per prefix, trained at its last "
                'position only), or train it with masked items: [task] type = "masked_item"'
            )


@registered(registry.tasks, "distill")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Distill(TaskPlugin):
    """Next-item recommendation distilled from a finished next-item run (``teacher``, its
    directory; relative paths from the current directory): the student (this recipe's model)
    learns, at every target position, ``alpha`` x the true next item's cross-entropy plus
    ``1 - alpha`` x ``temperature**2`` x the KL divergence from the teacher's full-catalogue
    distribution softened by ``temperature`` (Hinton et al. 2015). The teacher runs, frozen,
    on the student's windows inside each train step; it must have been trained on the same
    items. Evaluation and recommendation are next-item's. docs/distillation.md.
    """

    teacher: str = ""
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"task.alpha must lie in [0, 1], got {self.alpha!r}")
        if not self.temperature > 0.0:
            raise ValueError(f"task.temperature must be > 0, got {self.temperature!r}")

    def check(self, config: Any) -> None:
        """Refuses a teacher that is not a finished next-item run, a student encoder that
        sees its targets, and a loss other than ``softmax_ce`` (the true item's term)."""
        from rectk.distill import check_teacher

        NextItem().check(config)
        if plugin_name(config.loss) != "softmax_ce":
            raise RecipeError(
                f"loss.type = {plugin_name(config.loss)!r}: the distill task scores the "
                'true next item by the full softmax; set [loss] type = "softmax_ce"'
            )
        check_teacher(self.teacher)

    def run(self, recipe: Any, *, progress: bool = True) -> dict[str, Any]:
        self.check(recipe.config)
        from rectk.distill import distill_step_factory
        from rectk.train import train_and_evaluate

        factory = distill_step_factory(
            teacher=self.teacher, alpha=self.alpha, temperature=self.temperature
        )
        return train_and_evaluate(recipe, progress=progress, step_factory=factory)


class MaskItems(grain.transforms.RandomMap):
    """Cloze masking of one training window (BERT4Rec, Sun et al. 2019).

    The window's items (``input`` shifted by one, plus the last ``target``) each become
    ``mask_id`` with probability ``mask_prob`` (at least one per window: the last item when the
    draw masks none); ``target`` holds the original item at masked positions and 0 elsewhere.
    With probability ``mask_last_prob`` a window instead has its last item masked alone: the
    paper's extra samples that train exactly the task evaluated (next item, whole history seen).

    >>> w = {"user": 1, "input": np.array([0, 3, 4]), "target": np.array([3, 4, 5])}
    >>> out = MaskItems(mask_prob=0.0, mask_id=9).random_map(w, np.random.default_rng(0))
    >>> out["input"].tolist(), out["target"].tolist()
    ([3, 4, 9], [0, 0, 5])
    """

    def __init__(self, *, mask_prob: float, mask_id: int, mask_last_prob: float = 0.0):
        self.mask_prob, self.mask_id = mask_prob, mask_id
        self.mask_last_prob = mask_last_prob

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        items_l = np.concatenate([element["input"][1:], element["target"][-1:]])
        real_l = items_l > 0
        # (no draw at all when the option is off, so such runs keep their masks)
        if self.mask_last_prob > 0.0 and rng.random() < self.mask_last_prob:
            masked_l = np.zeros_like(real_l)
        else:
            masked_l = real_l & (rng.random(items_l.shape) < self.mask_prob)
        if not masked_l.any() and real_l.any():
            masked_l[-1] = True  # the most recent item (windows are left-padded)
        return {
            "user": element["user"],
            "input": np.where(masked_l, self.mask_id, items_l).astype(np.int32),
            "target": np.where(masked_l, items_l, 0).astype(np.int32),
        }


@registered(registry.tasks, "masked_item")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskedItem(TaskPlugin):
    """Next-item recommendation trained by masked-item prediction (BERT4Rec's Cloze task).

    Each training window of the learner's last ``model.max_len`` items has a ``mask_prob``
    share of its items replaced by a MASK token; the loss predicts the items at masked
    positions only. Evaluation and recommendation append a MASK after the history (dropping
    the oldest item of a full window) and rank items at it. Use it with a bidirectional
    encoder (``bert4rec``); the paper uses ``mask_prob`` 0.2 for MovieLens and 0.6 for Beauty.

    ``mask_last_prob``: the share of training windows that mask their last item alone instead
    (the paper's Sec. 3.6 adds such samples "like fine-tuning" for next-item recommendation);
    0 trains the Cloze task only. Pre-train, then fine-tune: a second run with
    ``mask_last_prob = 1``, ``train.stride = 1`` (a window per prefix) and ``train.init_from``
    naming the pre-training run trains exactly the task evaluated.
    """

    mask_prob: float = 0.2
    mask_last_prob: float = 0.0
    mask_token: ClassVar[bool] = True

    def __post_init__(self):
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError("task.mask_prob must lie in (0, 1]")
        if not 0.0 <= self.mask_last_prob <= 1.0:
            raise ValueError("task.mask_last_prob must lie in [0, 1]")

    def train_transform(self, *, vocab_size: int) -> MaskItems:
        return MaskItems(
            mask_prob=self.mask_prob, mask_id=vocab_size, mask_last_prob=self.mask_last_prob
        )


@registered(registry.tasks, "knowledge_tracing")
@dataclasses.dataclass(frozen=True, kw_only=True)
class KnowledgeTracing(TaskPlugin):
    """Knowledge tracing under pyKT's protocol: predict whether each answer is right from the
    learner's answers before it (``model.tracer``; the data set must provide answers: ``pykt``
    or ``dkvmn``). Train on every cross-validation fold but ``valid_fold``, validate on it,
    test on the test learners; answers are cut into chunks of ``maxlen`` (a last chunk shorter
    than ``min_len`` dropped) and every answer but a chunk's first is predicted. Metrics:
    ``auc``, ``accuracy`` and ``ece`` (expected calibration error); ``window_test`` adds pyKT's
    window view on the test learners (``window_auc``, ...). ``model.max_len``,
    ``[loss]`` and ``[eval]``'s ranking keys do not apply (``eval.batch_size`` does).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"answers"})
    default_monitor: ClassVar[str] = "auc"
    recommends: ClassVar[bool] = False
    valid_fold: int = 0
    maxlen: int = 200  # pyKT's sequence length
    min_len: int = 3  # pyKT's shortest chunk
    window_test: bool = True

    def __post_init__(self):
        if self.maxlen < 2:
            raise ValueError(f"maxlen must be at least 2, got {self.maxlen!r}")
        if not 1 <= self.min_len <= self.maxlen:
            raise ValueError(f"min_len must lie in [1, maxlen], got {self.min_len!r}")

    def validation_metrics(self, config: Any) -> tuple[str, ...]:
        return ("auc", "accuracy")

    def check(self, config: Any) -> None:
        """Refuses reranker chains and warm starts (ranking features, not knowledge tracing)."""
        if config.rerank.chains:
            raise RecipeError(
                "rerank.chains: reranker chains rerank item lists; the knowledge_tracing task "
                "predicts answers. Remove [rerank.chains] from this recipe"
            )
        if config.train.init_from:
            raise RecipeError(
                "train.init_from: warm starts are not supported by the knowledge_tracing task"
            )

    def run(self, recipe: Any, *, progress: bool = True) -> dict[str, Any]:
        self.check(recipe.config)
        from rectk.kt.train import train_and_evaluate

        return train_and_evaluate(recipe, progress=progress)
