"""The run schema: every recipe key, its type and default.

The defaults live here only. ``recipes/base.toml`` lists the same keys and values, with
comments, and the default columns of ``docs/recipes.md`` show them; ``tests/test_schema.py``
checks both against :func:`defaults`.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any, Literal

from rectk import registry
from rectk.recipe import plugin, plugin_chains, plugin_name, plugin_names

_frozen = dataclasses.dataclass(frozen=True, kw_only=True)
MAX_LEN = 100_000  # the longest model.max_len a recipe may ask for


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    """Raises the one message a value out of its range gets: the key, the range, the value."""
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


@_frozen
class SplitConfig:
    """How interactions become train / valid / test.

    ``leave_last_out``: per learner in time order, the last item is test, the second last valid
    (learners with fewer than 3 interactions only train). ``temporal``: global time cut-offs at
    the ``valid_fraction``/``test_fraction`` quantiles; each interaction after a cut-off is a
    target, its history everything the learner did before it.
    """

    type: Literal["leave_last_out", "temporal"] = "leave_last_out"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    cold_items: float = 0.0  # share of items held out entirely (new-item evaluation)
    seed: int = 0  # chooses the held-out items

    def __post_init__(self):
        for key in ("valid_fraction", "test_fraction", "cold_items"):
            value = getattr(self, key)
            _require(0.0 <= value < 1.0, f"split.{key}", "in [0, 1)", value)
        total = self.valid_fraction + self.test_fraction
        _require(total < 1.0, "split.valid_fraction + split.test_fraction", "below 1", total)


@_frozen
class ModelConfig:
    dim: int = 64
    max_len: int = 50
    item_tower: Any = plugin(registry.item_towers, "id")
    encoder: Any = plugin(registry.encoders, "sasrec")
    head: Any = plugin(registry.heads, "dot")
    # the knowledge-tracing model ([task] type = "knowledge_tracing"; other tasks ignore it)
    tracer: Any = plugin(registry.knowledge_tracers, "dkt")
    # a learned score offset per item, added to the head's score (BERT4Rec's output bias)
    item_bias: bool = False

    def __post_init__(self):
        _require(self.dim >= 1, "model.dim", "at least 1", self.dim)
        # Beyond MAX_LEN, one window's position table and attention no longer fit anywhere
        # (attention encoders also check their scores' memory when built).
        _require(1 <= self.max_len <= MAX_LEN, "model.max_len", f"in [1, {MAX_LEN}]", self.max_len)


@_frozen
class TrainConfig:
    batch_size: int = 256
    stride: int = 0  # targets trained per window (the rest is context); 0 = model.max_len
    # batches of windows of one width, cut to it: less padding computed (short histories)
    group_by_length: bool = False
    epochs: int = 20
    steps: int = 0  # > 0 overrides epochs
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    clip_norm: float = 1.0  # 0 = off
    eval_every: int = 0  # steps between validations; 0 = once per epoch
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at each validation
    keep_checkpoints: int = 2
    patience: int = 5  # validations without improvement before stopping; 0 = never stop
    # a validation improves on the best only by more than this (pyKT: 0.001)
    min_delta: float = 0.0
    monitor: str = ""  # the validation metric early stopping watches; "" = the task's default
    log_every: int = 50
    dtype: Literal["float32", "bfloat16"] = "float32"
    accumulate: int = 1  # micro-batches per optimiser update (optax.MultiSteps)
    # a finished run (a name under run_dir, or a path) whose best weights start this run
    init_from: str = ""
    # stop when a step's loss exceeds this multiple of the first step's loss; 0 = off
    divergence: float = 10.0
    # item vectors a step computes: "batch" = only the batch's and its sampled negatives'
    # (rectk.sparse_items), "all" = the whole table, "auto" = "batch" for a fine-tuned text
    # tower trained with a sampled softmax
    encode_items: Literal["auto", "all", "batch"] = "auto"

    def __post_init__(self):
        if self.accumulate < 1:
            raise ValueError("train.accumulate must be at least 1")
        if self.batch_size <= 0:
            raise ValueError("train.batch_size must be positive")
        if self.stride < 0:
            raise ValueError("train.stride must be >= 0 (0 = model.max_len)")
        if self.epochs <= 0 and self.steps <= 0:
            raise ValueError("set train.epochs or train.steps to a positive number")
        _require(self.lr > 0.0, "train.lr", "positive", self.lr)
        for key in (
            "epochs",
            "steps",
            "warmup_steps",
            "eval_every",
            "checkpoint_every",
            "patience",
        ):
            _require(getattr(self, key) >= 0, f"train.{key}", ">= 0", getattr(self, key))
        for key in ("weight_decay", "clip_norm", "min_delta"):
            _require(getattr(self, key) >= 0.0, f"train.{key}", ">= 0", getattr(self, key))
        _require(self.log_every >= 1, "train.log_every", "at least 1", self.log_every)
        _require(
            self.divergence == 0.0 or self.divergence > 1.0,
            "train.divergence",
            "0 (off) or above 1",
            self.divergence,
        )
        _require(
            self.keep_checkpoints >= 1,
            "train.keep_checkpoints",
            "at least 1",
            self.keep_checkpoints,
        )


@_frozen
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20)
    metrics: tuple[str, ...] = plugin_names(registry.metrics, ("recall", "ndcg", "mrr"))
    batch_size: int = 256
    item_chunk: int = 8192
    mask_seen: bool = True
    baselines: tuple[str, ...] = plugin_names(registry.baselines, ("popularity",))

    def __post_init__(self):
        _require(bool(self.ks) and min(self.ks) >= 1, "eval.ks", "a list of k >= 1", self.ks)
        _require(self.batch_size >= 1, "eval.batch_size", "at least 1", self.batch_size)
        _require(self.item_chunk >= 1, "eval.item_chunk", "at least 1", self.item_chunk)


@_frozen
class RecommendConfig:
    k: int = 10
    show_users: int = 3  # learners whose top-k ``rectk run`` prints

    def __post_init__(self):
        _require(self.k >= 1, "recommend.k", "at least 1", self.k)
        _require(self.show_users >= 0, "recommend.show_users", ">= 0", self.show_users)


@_frozen
class RerankConfig:
    """Reranker chains: the model's top ``candidates`` per learner (seen items excluded)
    become final lists of ``k`` through each chain (``[[rerank.chains.NAME]]`` tables, applied
    in order). Training ends by evaluating the model's own top-``k`` and every chain on the
    test split, accuracy and beyond-accuracy metrics side by side (``rectk evaluate``).
    """

    candidates: int = 100  # C: candidates retrieved per learner for the chains
    k: int = 10  # K: the length of the evaluated final lists
    chains: dict[str, tuple[Any, ...]] = plugin_chains(registry.rerankers)
    use: str = ""  # the chain `rectk recommend` applies; "" = the model's own ranking
    # learners reranked together: a chain that looks across learners (exposure) amortises
    # over this many
    batch_size: int = 256
    metrics: tuple[str, ...] = plugin_names(
        registry.list_metrics,
        (
            "coverage",
            "gini",
            "ild",
            "ild_topics",
            "novelty",
            "long_tail",
            "miscalibration",
            "exposure_disparity",
            "prerequisite_violations",
        ),
    )

    def __post_init__(self):
        _require(self.candidates >= 1, "rerank.candidates", "at least 1", self.candidates)
        _require(
            1 <= self.k <= self.candidates,
            "rerank.k",
            f"in 1..rerank.candidates = {self.candidates} (K <= C)",
            self.k,
        )
        _require(self.batch_size >= 1, "rerank.batch_size", "at least 1", self.batch_size)
        known = ", ".join(repr(n) for n in self.chains) or "none declared"
        _require(
            not self.use or self.use in self.chains,
            "rerank.use",
            f'"" or the name of a chain in rerank.chains ({known})',
            self.use,
        )


@_frozen
class MeshConfig:
    """Device mesh: ``data`` x ``model`` (``-1`` = all remaining devices).

    ``rules`` map logical axis names used inside modules to mesh axes ("" = replicated).
    On CPU there is one XLA device, using every core, unless ``rectk --cpu-devices N`` (or
    ``XLA_FLAGS``) splits it.
    """

    data: int = -1
    model: int = 1
    rules: tuple[tuple[str, str], ...] = (
        ("batch", "data"),
        ("vocab", ""),
        ("embed", ""),
        ("heads", ""),
        ("mlp", ""),
        ("length", ""),
    )

    def __post_init__(self):
        _require(self.data == -1 or self.data >= 1, "mesh.data", "-1 or at least 1", self.data)
        _require(self.model >= 1, "mesh.model", "at least 1", self.model)


@_frozen
class RunConfig:
    name: str = "run"
    task: Any = plugin(registry.tasks, "next_item")
    seed: int = 0
    run_dir: str = "runs"
    plugins: tuple[str, ...] = ()
    data: Any = plugin(registry.datasets, "university_courses")
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: Any = plugin(registry.losses, "softmax_ce")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    recommend: RecommendConfig = dataclasses.field(default_factory=RecommendConfig)
    rerank: RerankConfig = dataclasses.field(default_factory=RerankConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)

    def __post_init__(self):
        # The run directory is run_dir / name: a name must not lead out of run_dir.
        parts = PurePosixPath(self.name.replace("\\", "/")).parts
        _require(
            bool(self.name.strip()) and not self.name.startswith(("/", "\\")) and ".." not in parts,
            "name",
            "a non-empty relative name without '..' (the run's folder under run_dir)",
            self.name,
        )
        self._check_rerankers()
        monitored = self.task.validation_metrics(self)
        _require(
            self.monitor in monitored,
            "train.monitor",
            f"a validation metric of task {plugin_name(self.task)!r}, one of "
            f"{', '.join(monitored)}",
            self.train.monitor,
        )
        self._check_task_data()
        _require(
            self.train.stride <= self.model.max_len,
            "train.stride",
            f"at most model.max_len = {self.model.max_len}",
            self.train.stride,
        )

    @property
    def monitor(self) -> str:
        """The validation metric early stopping watches: ``train.monitor``, or where that is
        "" the task's default (``ndcg@10`` for ranking, ``auc`` for knowledge tracing)."""
        return self.train.monitor or self.task.default_monitor

    def _check_task_data(self) -> None:
        """The data set provides what the task trains on (``TaskPlugin.needs``)."""
        missing = self.task.needs - self.data.provides()
        if missing:
            raise ValueError(
                f"task {plugin_name(self.task)!r} needs a data set with "
                f"{', '.join(sorted(missing))}, which data set {plugin_name(self.data)!r} does "
                "not provide (docs/plugins.md lists what each data set provides)"
            )

    def _check_rerankers(self) -> None:
        """Every chain's side information is there (the data set provides it), and a chain
        applied by ``rectk recommend`` has the candidates for ``recommend.k``."""
        from rectk.contracts import ALWAYS_PROVIDED

        provides = ALWAYS_PROVIDED | self.data.provides()
        for chain, stages in self.rerank.chains.items():
            for i, stage in enumerate(stages):
                missing = stage.requires() - provides
                if missing:
                    raise ValueError(
                        f"rerank.chains.{chain}[{i}] the {plugin_name(stage)} reranker needs item "
                        f"{', '.join(sorted(missing))}, which data set "
                        f"{plugin_name(self.data)!r} does not provide (it provides: "
                        f"{', '.join(sorted(provides))})"
                    )
        if self.rerank.use:
            _require(
                self.recommend.k <= self.rerank.candidates,
                "recommend.k",
                f"at most rerank.candidates = {self.rerank.candidates} when rerank.use "
                "names a chain",
                self.recommend.k,
            )


def defaults() -> dict[str, Any]:
    """Every recipe key with its default, as plain TOML data (the resolved empty recipe).

    Plugin tables carry their ``type`` and the default plugin's fields. Loading plugins
    happens on the way, since plugin defaults come from the registries.

    >>> defaults()["train"]["lr"], defaults()["model"]["encoder"]["type"]
    (0.001, 'sasrec')
    """
    from rectk.recipe import from_dict, to_dict

    return to_dict(from_dict(RunConfig, {}, where="rectk.config.defaults"))


def defaults_toml() -> str:
    """:func:`defaults` as TOML text: what ``recipes/base.toml`` holds, without its comments."""
    import tomli_w

    return tomli_w.dumps(defaults())
