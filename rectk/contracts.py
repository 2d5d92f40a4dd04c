"""The plugin contracts: one ``typing.Protocol`` per kind of plugin, and one build context.

A plugin is a frozen, keyword-only config dataclass (its fields are the recipe keys of its
table) that subclasses its kind's protocol, as Optax's transformations are instances of
``GradientTransformation``. Subclassing brings the defaults of the optional parts; what a
plugin can do beyond the contract is *declared* (class attributes such as
``EncoderPlugin.traits``, or a second declared type such as ``FreezesParams``), never
discovered by probing. Each registry checks a plugin against its kind's protocol when it registers (see
``rectk.registry.Registry``), so a plugin that breaks its contract fails at import, with one
message naming it and what is missing, not deep inside a jitted trace.

Shape names follow the glossary in ``docs/architecture.md``: B batch, L history length,
D embedding size, V item vocabulary (row 0 is padding), N flattened rows, C candidates.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

if TYPE_CHECKING:
    import grain
    import jax
    import numpy as np
    from flax import nnx

    from rectk.data.types import Catalogue, Dataset

__all__ = [
    "ALWAYS_PROVIDED",
    "RERANK_NEEDS",
    "BaselinePlugin",
    "BuildContext",
    "DatasetPlugin",
    "EncoderModule",
    "EncoderPlugin",
    "EncoderTraits",
    "FinalLists",
    "FreezesParams",
    "HeadModule",
    "HeadPlugin",
    "ItemTowerModule",
    "ItemTowerPlugin",
    "KTBuildContext",
    "KTModule",
    "KnowledgeTracerPlugin",
    "ListMetric",
    "LossPlugin",
    "Metric",
    "PathScorer",
    "Plan",
    "PlanRequest",
    "PlannerPlugin",
    "RerankContext",
    "RerankerPlugin",
    "TaskPlugin",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What every model part's ``build(ctx)`` receives (one object for every kind).

    Attributes:
      dim: embedding / hidden size D (``model.dim``).
      max_len: history window L (``model.max_len``).
      vocab_size: V, the item vocabulary with the padding id 0 (items are ``1..V-1``).
      num_users: user vocabulary with the padding id 0.
      catalogue: item texts and attributes, or None where the data set has none.
      rngs: the parameter-initialisation streams.
    """

    dim: int
    max_len: int
    vocab_size: int
    num_users: int
    catalogue: Catalogue | None
    rngs: nnx.Rngs


# ---------------------------------------------------------------------------------------------
# Model parts: item tower, encoder, head. Each plugin builds an ``nnx.Module``.
# ---------------------------------------------------------------------------------------------


class ItemTowerModule(Protocol):
    """``tower() -> table_vd``: one row per item id, row 0 the padding item."""

    def __call__(self) -> jax.Array: ...


class ItemTowerPlugin(Protocol):
    """An item tower's config: ``build(ctx) -> ItemTowerModule``."""

    @abc.abstractmethod
    def build(self, ctx: BuildContext) -> ItemTowerModule: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderTraits:
    """What an encoder declares about itself (``EncoderPlugin.traits``).

    Attributes:
      variable_length: its states at real positions are unchanged on a window left-trimmed of
        padding; evaluation then feeds each batch a window only as wide as its longest
        history, and ``train.group_by_length`` may train on such windows.
      library_dots: forward-only steps compile with XLA:CPU's library (YNNPACK) fusions, the
        default; an encoder that runs slower with them says False (``rectk.compiler``).
      bidirectional: a position attends to later positions, so next-item training must not
        show it its own target (``task.next_item`` then requires ``train.stride = 1``).
    """

    variable_length: bool = False
    library_dots: bool = True
    bidirectional: bool = False


class EncoderModule(Protocol):
    """``encoder(emb_bld, mask_bl, *, users_b, rngs, last_only) -> hidden_bld``.

    Causal wherever training uses every position. ``rngs`` is a dropout stream in training and
    None in evaluation. ``last_only=True`` asks for the last position only, ``[B, 1, D]``
    (an encoder without a cheaper path returns ``hidden_bld[:, -1:]``).
    """

    def __call__(
        self,
        emb_bld: jax.Array,
        mask_bl: jax.Array,
        *,
        users_b: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
        last_only: bool = False,
    ) -> jax.Array: ...


class EncoderPlugin(Protocol):
    """A sequence encoder's config: ``build(ctx) -> EncoderModule`` and its ``traits``."""

    traits: ClassVar[EncoderTraits] = EncoderTraits()

    @abc.abstractmethod
    def build(self, ctx: BuildContext) -> EncoderModule: ...


class HeadModule(Protocol):
    """``head(user_nd, items_vd) -> scores_nv`` on any item subset (table, chunk, negatives)."""

    def __call__(self, user_nd: jax.Array, items_vd: jax.Array) -> jax.Array: ...


class HeadPlugin(Protocol):
    """A scoring head's config: ``build(ctx) -> HeadModule``."""

    @abc.abstractmethod
    def build(self, ctx: BuildContext) -> HeadModule: ...


class FreezesParams(abc.ABC):
    """A sub-module that keeps some of its parameters out of the optimiser (a declared
    capability: subclass it beside ``nnx.Module``). ``frozen(path, variable)``: whether the
    parameter at ``path`` (relative to this module) stays fixed, e.g. a LoRA-tuned text
    encoder's base weights. ``rectk.model.trainable_filter`` asks every sub-module that is an
    instance of it.

    An abstract base class rather than a ``Protocol``: capabilities are declared, not probed,
    and ``nnx.Module``'s metaclass derives from ``abc.ABCMeta``, so a module can subclass this
    (it could not also subclass a ``Protocol``).
    """

    @abc.abstractmethod
    def frozen(self, path: tuple[Any, ...], variable: nnx.Variable[Any]) -> bool: ...


# ---------------------------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------------------------


class LossPlugin(Protocol):
    """``loss(*, head, user_nd, table_vd, target_n, weight_n, key) -> scalar``.

    The weighted mean loss over rows with weight > 0 (padding rows contribute nothing);
    ``key`` draws sampled negatives. ``prepare(item_counts=)`` is called once before training
    with the training count of every item id and returns the loss to train with (default:
    the loss itself; a popularity sampler keeps the counts).
    """

    @abc.abstractmethod
    def __call__(
        self,
        *,
        head: Any,
        user_nd: jax.Array,
        table_vd: jax.Array,
        target_n: jax.Array,
        weight_n: jax.Array,
        key: jax.Array,
    ) -> jax.Array: ...

    def prepare(self, *, item_counts: np.ndarray) -> LossPlugin:
        del item_counts
        return self


# ---------------------------------------------------------------------------------------------
# Data sets, metrics, baselines, tasks.
# ---------------------------------------------------------------------------------------------


class DatasetPlugin(Protocol):
    """A data set's config: ``load() -> Dataset`` (interactions and, optionally, a catalogue).

    ``provides()`` declares the item side information its catalogue carries, from
    ``{"groups", "topics", "prerequisites"}`` (item embeddings and popularity come from the
    model and the training split, for every data set), and ``"answers"`` where ``load()``
    attaches learners' graded answers (``Dataset.answers``, what knowledge tracing trains on);
    a recipe whose rerankers or task need more is refused at load, before anything is read.
    """

    @abc.abstractmethod
    def load(self) -> Dataset: ...

    def provides(self) -> frozenset[str]:
        """The side information (keys of ``RERANK_NEEDS``) ``load()``'s catalogue carries."""
        return frozenset()


class Metric(Protocol):
    """``metric(ranks, k) -> per-target values``, from 0-based target ranks (a function)."""

    def __call__(self, ranks: np.ndarray, k: int) -> np.ndarray: ...


class BaselinePlugin(Protocol):
    """A non-neural scorer: one fixed score per item id, ``[V]`` (row 0 is never ranked)."""

    @abc.abstractmethod
    def item_scores(self, *, train_items: np.ndarray, vocab_size: int, seed: int) -> np.ndarray: ...


class TaskPlugin(Protocol):
    """What a recipe trains and evaluates.

    Attributes:
      mask_token: the model learns a MASK input embedding at id ``vocab_size`` and reads a
        learner's state at a MASK appended after the history (masked-item training).
      needs: what the data set must provide (``DatasetPlugin.provides()``), checked when the
        recipe loads.
      default_monitor: the validation metric ``train.monitor = ""`` watches.
      recommends: a finished run recommends items (``rectk recommend``, ``rectk run``'s
        examples).
    """

    mask_token: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset()
    default_monitor: ClassVar[str] = "ndcg@10"
    recommends: ClassVar[bool] = True

    def train_transform(self, *, vocab_size: int) -> grain.transforms.RandomMap | None:
        """A seeded per-window map applied to every training window before batching."""
        del vocab_size
        return None

    def check(self, config: Any) -> None:
        """Refuses a run configuration this task cannot train (raise ``RecipeError``)."""
        del config

    def validation_metrics(self, config: Any) -> tuple[str, ...]:
        """The names ``train.monitor`` may take: what validation reports (by default every
        ``eval.metrics`` at every ``eval.ks``, as ``"ndcg@10"``)."""
        return tuple(f"{m}@{k}" for m in config.eval.metrics for k in config.eval.ks)

    def run(self, recipe: Any, *, progress: bool = True) -> dict[str, Any]:
        """Trains, evaluates and writes the run directory; returns the run's summary."""
        self.check(recipe.config)  # refuse before anything is loaded or trained
        from rectk.train import train_and_evaluate

        return train_and_evaluate(recipe, progress=progress)


# ---------------------------------------------------------------------------------------------
# Knowledge tracing: a learner's answers -> the probability of answering the next one right.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class KTBuildContext:
    """What a knowledge tracer's ``build(ctx)`` receives.

    Attributes:
      dim: embedding / hidden size D.
      num_questions: question vocabulary with the padding id 0 (where a data set has no
        question ids, the questions are its concepts).
      num_concepts: concept vocabulary with the padding id 0.
      max_len: the longest answer sequence L a batch holds.
      rngs: the parameter-initialisation streams.
      has_questions: whether the data set names questions apart from their concepts (False:
        each question is its concept, as on ASSIST2015 and the DKVMN files).
    """

    dim: int
    num_questions: int
    num_concepts: int
    max_len: int
    rngs: nnx.Rngs
    has_questions: bool = False


class KTModule(Protocol):
    """``tracer(question_bl, concept_bl, response_bl, mask_bl, *, rngs) -> logit_bl``: the
    logit of answering question ``t`` right given the answers before ``t`` only (never
    response ``t`` or anything after it). ``response_bl`` is 0/1; ``mask_bl`` marks real
    answers (padding is on the right); ``rngs`` is a dropout stream in training, None in
    evaluation."""

    def __call__(
        self,
        question_bl: jax.Array,
        concept_bl: jax.Array,
        response_bl: jax.Array,
        mask_bl: jax.Array,
        *,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array: ...


class KnowledgeTracerPlugin(Protocol):
    """A knowledge-tracing model's config: ``build(ctx) -> KTModule``."""

    @abc.abstractmethod
    def build(self, ctx: KTBuildContext) -> KTModule: ...


# ---------------------------------------------------------------------------------------------
# Rerankers: candidate lists -> final lists.
# ---------------------------------------------------------------------------------------------

# What a reranker may read from its context beyond the histories: ``needs`` name -> the field.
RERANK_NEEDS: dict[str, str] = {
    "embeddings": "item_emb_vd",
    "groups": "item_group_v",
    "topics": "item_topics_vt",
    "popularity": "item_pop_v",
    "prerequisites": "prereq_vp",
    "success": "success_bv",
}


class RerankContext(NamedTuple):
    """What a reranker knows beyond the candidates: the learners' histories and the item side
    information, indexed by item id (row 0 is the padding item). A pytree (a ``NamedTuple``,
    as Optax's states are), so it passes through ``jax.jit``; a field a data set lacks is None.

    Attributes:
      history_bh: each learner's history item ids ``[B, H]``, 0 = padding.
      item_emb_vd: item vectors ``[V, D]`` (the model's item table).
      item_group_v: provider / group id per item ``[V]`` int32, in ``[0, V)``; 0 = unknown.
      item_topics_vt: topic distribution per item ``[V, T]`` float32 (rows sum to 1; row 0 is
        zeros).
      item_pop_v: training interaction count per item ``[V]`` float32.
      prereq_vp: prerequisite item ids per item ``[V, P]`` int32, 0 = none.
      success_bv: per learner, the predicted probability of answering each item (exercise)
        right next ``[B, V]`` float32, from a knowledge-tracing model (``rectk.kt``); NaN where
        unknown. Per learner, unlike the item fields, so chains split it with the histories.
    """

    history_bh: jax.Array
    item_emb_vd: jax.Array | None = None
    item_group_v: jax.Array | None = None
    item_topics_vt: jax.Array | None = None
    item_pop_v: jax.Array | None = None
    prereq_vp: jax.Array | None = None
    success_bv: jax.Array | None = None


class RerankerPlugin(Protocol):
    """A reranker's config, called as ``reranker(ids_bc, scores_bc, ctx, *, k) -> (ids_bk,
    scores_bk)``: the selected candidate ids ``[B, k]`` in their new order and their scores
    ``[B, k]`` (the model's scores of those items, or -inf for a slot filled by an invalid
    candidate). Pure and jit-able with ``k`` static; ``k > C`` is a ``ValueError``.

    A candidate with id 0 or score -inf is invalid: it is never selected before a valid one.
    Rerankers compose left to right (``rectk.rerank.chain``): every stage but the
    last is called with ``k = C`` and keeps every candidate in its new order.

    Attributes:
      needs: the context fields (keys of ``RERANK_NEEDS``) that every configuration reads.
      across_learners: True where its choice for one learner depends on the other learners of
        the batch (amortised exposure); False promises that rows are independent.
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    across_learners: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(
        self, ids_bc: jax.Array, scores_bc: jax.Array, ctx: RerankContext, *, k: int
    ) -> tuple[jax.Array, jax.Array]: ...

    def requires(self) -> frozenset[str]:
        """The context fields this configuration reads (default: ``needs``); a reranker whose
        field picks a source (``similarity = "topics"``) adds it here. A recipe naming a
        reranker whose ``requires()`` the data set cannot provide is refused at load."""
        return self.needs

    def with_group_names(self, names: tuple[str, ...]) -> RerankerPlugin:
        """This configuration with provider-group *names* resolved to the context's group ids
        (``names[g - 1]`` is group ``g``); raises ``ValueError`` naming an unknown one. The
        default, for rerankers that name no group, returns ``self``."""
        del names
        return self


# Item side information every data set has: the model's vectors and training popularity.
ALWAYS_PROVIDED: frozenset[str] = frozenset({"embeddings", "popularity"})


class FinalLists(NamedTuple):
    """The final recommendation lists of N learners and what list metrics read (NumPy).

    Attributes:
      ids_nk: each learner's final list ``[N, K]``, best first; 0 = an empty slot.
      target_n: the held-out item of each learner ``[N]``.
      history_nh: each learner's history ``[N, H]``, 0 = padding.
      num_items: the catalogue's size (ids 1..num_items).
      item_emb_vd, item_group_v, item_topics_vt, item_pop_v, prereq_vp: the item side
        information, as in ``RerankContext`` (None where the data set lacks it).
    """

    ids_nk: np.ndarray
    target_n: np.ndarray
    history_nh: np.ndarray
    num_items: int
    item_emb_vd: np.ndarray | None = None
    item_group_v: np.ndarray | None = None
    item_topics_vt: np.ndarray | None = None
    item_pop_v: np.ndarray | None = None
    prereq_vp: np.ndarray | None = None


class ListMetric(Protocol):
    """``metric(lists, k) -> value``: one number over the first ``k`` places of a set of
    final lists (beyond-accuracy metrics: coverage, diversity, fairness, ...), or None where
    ``lists`` lacks the side information it reads (a function)."""

    def __call__(self, lists: FinalLists, k: int) -> float | None: ...


# ---------------------------------------------------------------------------------------------
# Planners: a learner's history and goal courses -> an ordered learning path.
# ---------------------------------------------------------------------------------------------


class PathScorer(Protocol):
    """``scorer(history_bh) -> scores_bv``: the next-course scores of each history ``[B, H]``
    (item ids, left-padded with 0, most recent last), ``[B, V]`` float32, higher is likelier
    (a trained model's scores, or a fallback prior where a graph has no model)."""

    def __call__(self, history_bh: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """One planning problem, item ids dense (``1..V-1``; 0 is padding), NumPy.

    Attributes:
      prereq_vp: int32 ``[V, P]`` prerequisite ids of each item (0 = none): an item may be
        taken once all of its prerequisites are taken.
      history: int ``[H]`` the items already taken, oldest first.
      goal: int ``[G]`` the goal items.
      required: int ``[R]`` the prerequisite closure of the goal not yet taken (the goal
        included), in one valid order (``rectk.plan.closure``): every valid path to the goal
        holds each of them.
      max_len: the longest path allowed (``len(required) <= max_len``, checked before).
      scorer: the next-course scores of histories (``PathScorer``).
      popularity_v: float32 ``[V]`` how often each item was taken in training (a prior).
      seed: seeds a planner's random choices.
    """

    prereq_vp: np.ndarray
    history: np.ndarray
    goal: np.ndarray
    required: np.ndarray
    max_len: int
    scorer: PathScorer
    popularity_v: np.ndarray
    seed: int = 0


class Plan(NamedTuple):
    """A planner's answer.

    Attributes:
      path: int ``[N]`` item ids in the order to take them.
      objective: the planner's own score of the path (the beam planner: the model's summed
        log-probability of each step); NaN where it has none.
      exact: True where the path provably maximises ``objective`` over every valid path
        (nothing was pruned); False for heuristics.
    """

    path: np.ndarray
    objective: float = float("nan")
    exact: bool = False


class PlannerPlugin(Protocol):
    """A planner's config: ``plan(request) -> Plan``.

    The path must be prerequisite-valid (each item's prerequisites are in the history or
    earlier in the path), hold every goal item, repeat no item, hold no history item and be
    at most ``request.max_len`` long; the same request gives the same path (randomness comes
    from ``request.seed``). ``rectk.testing.check_planner`` checks this on random graphs.
    """

    @abc.abstractmethod
    def plan(self, request: PlanRequest) -> Plan: ...
