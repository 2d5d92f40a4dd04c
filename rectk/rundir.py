"""A run directory: the resolved recipe and its hash, the data version, the vocabulary and
histories needed to recommend without the original data, checkpoints, metrics, results.

In a multi-host run only process 0 writes these files (``write=False`` elsewhere); every
process writes its part of the checkpoints, through Orbax."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rectk.data.split import Sequences
from rectk.data.types import Catalogue, Dataset
from rectk.errors import RectkError
from rectk.recipe import Recipe

if TYPE_CHECKING:
    from rectk.config import RunConfig

# Distributions whose versions ``run.json`` records (key: distribution name).
_VERSIONS = {
    "rectk": "rectk",
    "jax": "jax",
    "jaxlib": "jaxlib",
    "flax": "flax",
    "optax": "optax",
    "orbax": "orbax-checkpoint",
    "grain": "grain",
}


def versions() -> dict[str, str]:
    """Installed versions of rectk and the libraries a run's numbers depend on."""
    out = {}
    for key, dist in _VERSIONS.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def record(self) -> dict:
        f = self.path / "run.json"
        if not f.is_file():
            raise RectkError(f"{self.path} is not a rectk run directory (no run.json)")
        return json.loads(f.read_text())

    @classmethod
    def of(cls, config: RunConfig) -> RunDir:
        """The run directory a run configuration names: ``run_dir/name``."""
        return cls(Path(config.run_dir) / config.name)

    def start(self, recipe: Recipe, data: Dataset, *, write: bool = True) -> None:
        """Writes the recipe, its hash, the data version and the library versions; refuses a
        different recipe or changed data. ``write=False`` (processes other than 0) checks
        only."""
        import jax
        import tomli_w

        fingerprint = data.interactions.fingerprint()
        record_file = self.path / "run.json"
        if record_file.is_file():
            old = json.loads(record_file.read_text())
            if old["recipe_hash"] != recipe.hash:
                raise RectkError(
                    f"{self.path} holds a run of a different recipe (hash {old['recipe_hash']}, "
                    f"this one {recipe.hash}); pick another name with --set name=..., or delete it"
                )
            if old["data_fingerprint"] != fingerprint:
                raise RectkError(
                    f"{self.path}: the data changed since this run started (version "
                    f"{old['data_fingerprint']}, now {fingerprint}); start a new run"
                )
            return
        if not write:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / "recipe.toml", tomli_w.dumps(recipe.resolved))
        record = {
            "recipe_hash": recipe.hash,
            "recipe_file": str(Path(recipe.path).resolve()),
            "data": data.name,
            "data_source": data.source,
            "data_fingerprint": fingerprint,
            "users": data.interactions.num_users,
            "items": data.interactions.num_items,
            "interactions": len(data.interactions),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **versions(),
            "devices": [str(d) for d in jax.devices()],
            "python": platform.python_version(),
        }
        _atomic_write(record_file, json.dumps(record, indent=2))
        self._save_vocab(data)

    def _save_vocab(self, data: Dataset) -> None:
        inter, cat = data.interactions, data.catalogue
        vocab = {
            "item_ids": list(inter.item_ids),
            "user_ids": list(inter.user_ids),
            "titles": list(cat.titles) if cat else None,
            "descriptions": list(cat.descriptions) if cat else None,
            "prerequisites": cat.prerequisites.tolist() if cat else None,
        }
        _atomic_write(self.path / "vocab.json", json.dumps(vocab))

    def save_history(self, history: Sequences) -> None:
        tmp = self.path / "history.tmp.npz"
        np.savez(tmp, ptr=history.ptr, items=history.items)
        os.replace(tmp, self.path / "history.npz")

    def load_vocab(self) -> tuple[dict, Catalogue | None]:
        vocab = json.loads((self.path / "vocab.json").read_text())
        cat = None
        if vocab["titles"] is not None:
            cat = Catalogue(
                item_ids=tuple(vocab["item_ids"]),
                titles=tuple(vocab["titles"]),
                descriptions=tuple(vocab["descriptions"]),
                prerequisites=np.asarray(vocab["prerequisites"], np.int32).reshape(-1, 2),
            )
        return vocab, cat

    def load_history(self) -> Sequences:
        with np.load(self.path / "history.npz") as z:
            return Sequences(ptr=z["ptr"], items=z["items"])

    def write_json(self, name: str, obj) -> None:
        _atomic_write(self.path / name, json.dumps(obj, indent=2))

    def read_json(self, name: str):
        f = self.path / name
        if not f.is_file():
            raise RectkError(f"{f} not found: has this run finished training?")
        return json.loads(f.read_text())
