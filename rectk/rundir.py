"""A run directory: the resolved recipe and its hash, the data version, the vocabulary and
histories needed to recommend without the original data, checkpoints, metrics, results.

In a multi-host run only process 0 writes these files (``write=False`` elsewhere); every
process writes its part of the checkpoints, through Orbax.

A training holds the directory's lock (``train.lock``: owner pid, host and start time) from
start to end, so a second training of the same run is refused; reading (evaluate, recommend)
takes no lock. A damaged file is one ``RectkError`` naming it and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import os
import platform
import socket
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def atomic_write(path: Path, data: str | bytes) -> None:
    """Writes ``path`` whole or not at all: a temporary file beside it, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)


LOCK = "train.lock"

# What to do about a damaged file of a run directory, by file name.
_REWRITE = (
    "run the same training command again, which writes it anew (a finished run is only "
    "evaluated again), or delete the run directory"
)
_REMEDY = {
    "run.json": "this run's record is lost: delete the run directory and train again",
    "results.json": _REWRITE,
    "vocab.json": _REWRITE,
    "history.npz": _REWRITE,
    "items.npz": _REWRITE,
}
_VOCAB_KEYS = ("item_ids", "user_ids", "titles", "descriptions", "prerequisites")


def damaged(path: Path, why: str) -> RectkError:
    """The one message a damaged file of a run directory gets: the file, why, what to do."""
    remedy = _REMEDY.get(path.name, "delete the run directory and train again")
    return RectkError(f"{path} is damaged ({why}): {remedy}")


def _read_json(path: Path, keys: tuple[str, ...] = ()) -> Any:
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise damaged(path, f"truncated or not JSON: {err}") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise damaged(path, f"no {', '.join(missing)}")
    return obj


# Errors of writing that the user must fix (not rectk), and how.
_UNWRITABLE = {
    errno.EACCES: "check its permissions, or write elsewhere (--set run_dir=PATH)",
    errno.EPERM: "check its permissions, or write elsewhere (--set run_dir=PATH)",
    errno.EROFS: "the file system is read-only: write elsewhere (--set run_dir=PATH)",
    errno.ENOSPC: "the disk is full: free space (the run resumes from its last checkpoint), "
    "or write elsewhere (--set run_dir=PATH)",
    errno.EDQUOT: "the disk quota is used up: free space (the run resumes from its last "
    "checkpoint), or write elsewhere (--set run_dir=PATH)",
}


def unwritable(path: Path | str, code: int) -> RectkError | None:
    """The message for a run directory's file that cannot be written (error number ``code``:
    permissions, a read-only or full disk), or None for other errors."""
    if code not in _UNWRITABLE:
        return None
    return RectkError(f"cannot write {path}: {os.strerror(code)}; {_UNWRITABLE[code]}")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def finished(self) -> bool:
        """Whether training ran to its end (it writes ``results.json`` last)."""
        return (self.path / "results.json").is_file()

    def record(self) -> dict:
        f = self.path / "run.json"
        if not f.is_file():
            raise RectkError(f"{self.path} is not a rectk run directory (no run.json)")
        return _read_json(f, ("recipe_hash", "data_fingerprint"))

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
            old = self.record()
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
            if write and not self._vocab_readable():  # the same data: written anew
                self._save_vocab(data)
                print(f"rectk: note: {self.path / 'vocab.json'} written anew", file=sys.stderr)
            return
        if not write:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "recipe.toml", tomli_w.dumps(recipe.resolved))
        record = {
            "recipe_hash": recipe.hash,
            "recipe_file": str(Path(recipe.path).resolve()),
            "data": data.name,
            "data_source": data.source,
            "data_fingerprint": fingerprint,
            "users": data.interactions.num_users,
            "items": data.interactions.num_items,
            "interactions": len(data.interactions),
            "data_notes": list(data.notes),  # what loading dropped or changed
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **versions(),
            "devices": [str(d) for d in jax.devices()],
            "python": platform.python_version(),
        }
        atomic_write(record_file, json.dumps(record, indent=2))
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
        atomic_write(self.path / "vocab.json", json.dumps(vocab))

    def _vocab_readable(self) -> bool:
        try:
            self.load_vocab()
        except RectkError:
            return False
        return True

    def save_history(self, history: Sequences) -> None:
        tmp = self.path / "history.tmp.npz"
        np.savez(tmp, ptr=history.ptr, items=history.items)
        os.replace(tmp, self.path / "history.npz")

    def load_vocab(self) -> tuple[dict, Catalogue | None]:
        f = self.path / "vocab.json"
        if not f.is_file():
            raise damaged(f, "missing")
        vocab = _read_json(f, _VOCAB_KEYS)
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
        f = self.path / "history.npz"
        if not f.is_file():
            raise damaged(f, "missing")
        try:
            with np.load(f) as z:
                return Sequences(ptr=z["ptr"], items=z["items"])
        except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as err:
            raise damaged(f, f"not a complete NumPy archive: {err}") from None

    def write_json(self, name: str, obj) -> None:
        atomic_write(self.path / name, json.dumps(obj, indent=2))

    def read_json(self, name: str):
        f = self.path / name
        if not f.is_file():
            raise RectkError(f"{f} not found: has this run finished training?")
        return _read_json(f)

    def check_metrics(self) -> None:
        """Drops a partial last line of ``metrics.jsonl`` (a run killed while writing it), with
        a note; a damaged line before the last is an error naming the file and the line."""
        f = self.path / "metrics.jsonl"
        if not f.is_file():
            return
        lines = f.read_text(errors="replace").splitlines()
        bad = [i for i, ln in enumerate(lines) if ln and not _is_record(ln)]
        if not bad:
            return
        if bad != [len(lines) - 1]:
            raise RectkError(
                f"{f} is damaged at line {bad[0] + 1} ({lines[bad[0]][:80]!r}): delete that line "
                f"(the metrics of one step are lost), or delete the run directory"
            )
        atomic_write(f, "".join(ln + "\n" for ln in lines[:-1]))
        print(
            f"rectk: note: dropped the partial last line of {f} ({lines[-1][:60]!r}...; a run was "
            f"stopped while writing it): the steps after the checkpoint are logged again",
            file=sys.stderr,
        )

    # ---- The lock a training holds --------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, enabled: bool = True) -> Iterator[None]:
        """Holds ``train.lock`` while the body runs; refuses (``RectkError``) when another
        training holds it, and takes over a stale one (its process no longer runs on this
        host) with a note. Released on every way out, exceptions and Ctrl-C included; a run
        directory this call created is removed again if it is left empty."""
        if not enabled:
            yield
            return
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK
        mine = _take(path)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if path.read_text() == mine:
                    path.unlink()
            for folder in created:  # the deepest first
                try:
                    folder.rmdir()
                except OSError:
                    break

    def lock_owner(self) -> dict | None:
        """The training that holds this directory's lock (pid, host, started), or None."""
        owner, _ = _read_lock(self.path / LOCK)
        return owner if owner is not None and _alive(owner) else None

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turns an ``OSError`` of writing in this run directory (permissions, a read-only or
        full disk) into one ``RectkError`` naming the path."""
        try:
            yield
        except OSError as err:
            where = Path(err.filename) if err.filename else self.path
            inside = where.absolute().is_relative_to(self.path.absolute())
            message = unwritable(where, err.errno) if inside and err.errno else None
            if message is None:
                raise
            raise message from None


def _is_record(line: str) -> bool:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("step"), int)


def _take(path: Path) -> str:
    """Creates the lock file ``path`` (``O_EXCL``: one process wins), taking over a stale one;
    returns what it wrote (its release checks the file still holds that)."""
    mine = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "time": time.time(),
        }
    )
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            fd = None
        if fd is not None:
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            return mine
        owner, raw = _read_lock(path)
        if raw is None:  # released meanwhile
            continue
        if owner is not None and _alive(owner):
            here = owner.get("host") == socket.gethostname()
            raise RectkError(
                f"{path} is held by another training of this run (pid {owner.get('pid')} on "
                f"host {owner.get('host')}, since {owner.get('started')}"
                + ("" if here else "; from here rectk cannot tell whether it still runs")
                + "): two trainings in one run directory would interleave metrics.jsonl and "
                "delete each other's checkpoints. Wait for it to end or stop it, or train "
                f"under another name (--set name=...); if it no longer runs, delete {path}"
            )
        _take_over(path, raw, owner)
    raise RectkError(f"{path}: could not take the lock (other trainings keep taking it)")


def _read_lock(path: Path) -> tuple[dict | None, str | None]:
    """The lock's owner and its raw text; (None, None) when there is no lock, (None, text)
    when it cannot be read (after waiting briefly for a writer between create and write)."""
    raw = None
    for _ in range(10):
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return None, None
        try:
            owner = json.loads(raw)
        except json.JSONDecodeError:
            time.sleep(0.05)
            continue
        if isinstance(owner, dict):
            return owner, raw
        break
    return None, raw


def _take_over(path: Path, raw: str, owner: dict | None) -> None:
    """Removes the stale lock ``path`` (text ``raw``) unless another training replaced it
    meanwhile: renamed aside first, which one process only can do."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.read_text() != raw:  # another training's fresh lock: give it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
        aside.unlink()
        return
    aside.unlink()
    who = (
        f"pid {owner.get('pid')} on host {owner.get('host')}, since {owner.get('started')}"
        if owner is not None
        else "its content unreadable"
    )
    print(
        f"rectk: note: {path} was left by a training that no longer runs ({who}); taken over",
        file=sys.stderr,
    )


def _alive(owner: dict) -> bool:
    """Whether the training that wrote a lock may still run: on another host rectk cannot
    tell (so yes); on this one, its process exists, is no zombie, and started before the lock
    was written (else its pid was reused)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    stat = _process(pid)
    if stat is None:
        return True
    state, started = stat
    written = owner.get("time")
    reused = isinstance(written, int | float) and started > written + 2.0
    return state != "Z" and not reused


def _process(pid: int) -> tuple[str, float] | None:
    """A process's state letter and start time (seconds since the epoch) from ``/proc``, or
    None where there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(ln.split()[1])
            for ln in Path("/proc/stat").read_text().splitlines()
            if ln.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
