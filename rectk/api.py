"""rectk from Python: train from a recipe (a file, a dict or a ``Recipe``) on a data frame of
interactions, open a finished run, and get many learners' recommendations as a data frame.

>>> from rectk import api
>>> run = api.train("recipes/quickstart.toml", overrides={"train.epochs": 2})  # doctest: +SKIP
>>> table = run.recommend(["learner_0001", "learner_0002"], k=3)  # doctest: +SKIP
>>> list(table.columns)  # doctest: +SKIP
['learner', 'rank', 'item', 'title', 'score']

A data frame given as ``data`` is written into the run directory as ``data.parquet`` and read
by the ``csv`` data set plugin, so the run records its version as it does for any file and
stays reproducible from its directory.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rectk import recipe as recipe_lib
from rectk.errors import DataError, RectkError
from rectk.predict import Loaded, load_run, recommend_many, table
from rectk.rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd

DATA_FILE = "data.parquet"  # a data frame's copy in the run directory
_PENDING = "<data frame>"  # the data path until the run directory is known
COLUMNS = ("learner", "rank", "item", "title", "score")  # ``Run.recommend``'s table


class Run:
    """A run directory: its results, and its model's recommendations (loaded on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        RunDir(self.path).record()  # not a run directory: a RectkError now

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @functools.cached_property
    def loaded(self) -> Loaded:
        """The run's model at its best validation step (``rectk.predict.load_run``)."""
        return load_run(self.path)

    @property
    def results(self) -> dict:
        """``results.json``: validation and test metrics, best step, timings."""
        rd = RunDir(self.path)
        if not rd.finished:
            raise RectkError(f"{self.path} has not finished training (no results.json yet)")
        return rd.read_json("results.json")

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """The test metrics: ``{scorer: {metric: value}}`` (the model, baselines, chains)."""
        res = self.results
        return {**res["test"], **res.get("rerank", {})}

    def evaluate(self) -> pd.DataFrame:
        """The test metrics as a table, one row per scorer (as ``rectk evaluate`` prints)."""
        import pandas as pd

        return pd.DataFrame.from_dict(self.metrics, orient="index")

    def recommend(
        self,
        users: Sequence[str] | None = None,
        *,
        histories: Sequence[Sequence[str]] | None = None,
        k: int = 10,
        chain: str | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Top-``k`` unseen items for many learners, as columns ``learner, rank, item, title,
        score`` (rank from 1; a list a chain leaves short has fewer rows).

        ``users``: learner ids of the run's data (a single id may be a string); ``histories``:
        lists of item ids of new learners, whose ``learner`` is their position; neither: every
        learner of the run. ``chain``: a reranker chain of the recipe (None: its
        ``rerank.use``; "none": the model's ranking). See ``rectk.predict.recommend_many``.
        """
        import pandas as pd

        if isinstance(users, str):
            users = [users]
        ids, scores = recommend_many(
            self.loaded,
            users=users,
            histories=histories,
            k=k,
            chain=chain,
            batch_size=batch_size,
            progress=progress,
        )
        if histories is not None:
            learners: Sequence[Any] = range(len(histories))
        else:
            learners = users if users is not None else self.loaded.vocab["user_ids"]
        return pd.DataFrame(table(self.loaded, list(learners), ids, scores), columns=COLUMNS)


TABLE_SUFFIXES = (".parquet", ".csv")  # what ``write_table`` writes, by the file's suffix


def check_table_path(path: str | Path) -> Path:
    """``path`` as a Path, or a ``RectkError`` unless it ends in ``.parquet`` or ``.csv``."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise RectkError(
            f"{path}: name a .parquet or .csv file (the suffix picks the format), got "
            f"{path.suffix or 'no suffix'}"
        )
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Writes ``frame`` as Parquet or CSV (by the suffix), whole or not at all: a temporary
    file beside it, then a rename."""
    from rectk.rundir import atomic_write

    path = check_table_path(path)
    if path.suffix.lower() == ".parquet":
        atomic_write(path, frame.to_parquet(index=False))
    else:
        atomic_write(path, frame.to_csv(index=False))
    return path


def open_run(path: str | Path) -> Run:
    """The run in directory ``path`` (trained, or still training: its best step so far)."""
    return Run(path)


def train(
    recipe: str | Path | Mapping[str, Any] | recipe_lib.Recipe,
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    data: pd.DataFrame | str | Path | None = None,
    run_dir: str | Path | None = None,
    progress: bool = False,
) -> Run:
    """Trains a recipe (resuming its run if it exists) and returns the run.

    Args:
      recipe: a recipe file, a dict of the same keys as a TOML recipe (``base`` included: a
        path relative to the current folder, or ``rectk:NAME``), or a loaded ``Recipe``.
      overrides: dotted keys and their values, ``{"train.epochs": 2}``, applied as ``--set``
        is (or ``["train.epochs=2"]``, parsed as ``--set`` parses them).
      data: interactions, a data frame or a CSV or Parquet file, with columns ``user_id``,
        ``item_id`` and optionally ``timestamp`` (or the names the recipe's ``csv`` data table
        gives); they replace the recipe's data set. A data frame is saved in the run
        directory as ``data.parquet``.
      run_dir: the folder that holds runs (the recipe's ``run_dir``; the run is
        ``run_dir/name``).
      progress: show a progress bar.

    Raises:
      RectkError: the recipe, the overrides or the data are at fault (one message naming the
        key, column or row).
    """
    layers, src, where = _layers(recipe)
    if data is not None:
        layers = recipe_lib._merge(
            layers, {"data": _data_table(layers, data)}, src, "train(data=...)", ""
        )
    for keys, value in _overrides(overrides):
        layers = recipe_lib._apply_override(layers, keys, value, src)
    if run_dir is not None:
        layers = recipe_lib._apply_override(layers, ["run_dir"], str(run_dir), src)
    built = _validate(layers, src, where)
    if data is not None and not isinstance(data, str | Path):
        path = (RunDir.of(built.config).path / DATA_FILE).resolve()
        layers = recipe_lib._apply_override(layers, ["data", "path"], str(path), src)
        built = _validate(layers, src, where)
        frame = _interactions_frame(data, layers["data"])
        _save_frame(frame, path)
    built.config.task.run(built, progress=progress)
    return Run(RunDir.of(built.config).path)


def _layers(recipe: Any) -> tuple[dict, dict, str]:
    """A recipe's merged layers, the source of each key, and where it came from."""
    src: dict[str, str] = {}
    if isinstance(recipe, recipe_lib.Recipe):
        return dict(recipe.resolved), src, recipe.path
    if isinstance(recipe, Mapping):
        where = "<dict>"
        data = dict(recipe)
        base = data.pop(recipe_lib.BASE_KEY, None)
        merged: dict = {}
        if base is not None:
            if not isinstance(base, str):
                raise RectkError(f"{where}: key 'base' must be a path string, got {base!r}")
            first = recipe_lib._base_path(Path.cwd() / where, base)
            merged = recipe_lib._load_layers(first, src)
        return recipe_lib._merge(merged, data, src, where, ""), src, where
    path = Path(recipe)
    return recipe_lib._load_layers(path, src), src, str(path)


def _overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[tuple[list, Any]]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        out = []
        for key, value in overrides.items():
            keys, _ = recipe_lib.parse_override(f"{key}=0")  # the key's checks
            out.append((keys, value))
        return out
    if isinstance(overrides, str):
        overrides = [overrides]
    return [recipe_lib.parse_override(text) for text in overrides]


def _validate(layers: dict, src: dict, where: str) -> recipe_lib.Recipe:
    """``recipe.load``'s validation of merged layers."""
    return recipe_lib.build(layers, src, where)


def _data_table(layers: dict, data: Any) -> dict[str, Any]:
    """The ``csv`` data table that reads ``data``: the recipe's own with another ``path`` if
    its data set is a ``csv`` one (column names, catalogue), else one reading ``user_id``,
    ``item_id``, ``timestamp`` (a data frame without the time column: row order is the
    time)."""
    old = layers.get("data")
    old = old if isinstance(old, dict) else {}
    table = {k: v for k, v in old.items() if k != "path"} if old.get("type") == "csv" else {}
    table = {"type": "csv", "user": "user_id", "item": "item_id", "time": "timestamp", **table}
    if isinstance(data, str | Path):
        return {**table, "path": str(Path(data).expanduser().resolve())}
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise RectkError(
            f"data must be a pandas DataFrame or a file path, got {type(data).__name__}"
        )
    if table["time"] and table["time"] not in data.columns:
        table["time"] = ""
    if table.get("value") and table["value"] not in data.columns:
        table["value"] = ""
    return {**table, "path": _PENDING}


def _interactions_frame(frame: pd.DataFrame, table: dict) -> pd.DataFrame:
    """The columns of ``frame`` the data table reads, checked to be there."""
    named = {role: table[role] for role in ("user", "item", "time", "value") if table.get(role)}
    for role, name in named.items():
        if name not in frame.columns:
            raise DataError(
                f"data: no column {name!r} for the {role} (columns: "
                f"{', '.join(map(str, frame.columns))}); name the right column in data.{role}"
            )
    return frame[list(named.values())].reset_index(drop=True)


def _save_frame(frame: pd.DataFrame, path: Path) -> None:
    """Writes ``frame`` to ``path`` atomically; a run directory already holding other
    interactions there is refused (its run would not be reproducible)."""
    import pandas as pd

    from rectk.rundir import atomic_write

    if path.is_file():
        if pd.read_parquet(path).equals(frame):
            return
        raise RectkError(
            f"{path} holds other interactions than the data frame given: this run was trained "
            "on them; name another run (overrides={'name': ...}) or delete it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, frame.to_parquet(index=False))
