"""Faults of a run directory: a second training of one run, a loss that diverges, a run not
finished, damaged files and checkpoints, a checkpoint of another recipe, a directory that
cannot be written. Each is one message naming the file and what to do, or a note and a run
that goes on exactly as an uninterrupted one."""

import contextlib
import errno
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rectk import recipe as recipe_lib
from rectk.checkpoint import Checkpoints
from rectk.cli import main
from rectk.errors import RectkError
from rectk.predict import load_run
from rectk.rundir import LOCK, RunDir
from rectk.train import train_and_evaluate
from tests.conftest import RECIPES, TINY, set_args

# A run of its own (resumed in place: the run directory is part of the recipe and its hash):
# checkpoints every 3 steps, so steps 9 and 12 are kept, the best beside them.
OWN = [*TINY, "train.checkpoint_every=3", "train.log_every=1"]


def cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def quiet(*_args, **_kwargs) -> None:
    pass


def write_lock(run: Path, *, pid: int, at: float | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lock = run / LOCK
    at = time.time() if at is None else at
    owner = {"pid": pid, "host": socket.gethostname(), "started": "then", "time": at}
    lock.write_text(json.dumps(owner))
    return lock


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def largest_file(folder: Path) -> Path:
    return max((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)


@pytest.fixture
def copy(tiny_run, tmp_path) -> Path:
    """A copy of the session's finished tiny run, to damage."""
    path = tmp_path / "copy"
    shutil.copytree(tiny_run.path, path)
    return path


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A finished run of ``OWN`` and a pristine copy of its directory."""
    root = tmp_path_factory.mktemp("own")
    recipe = recipe_lib.load(RECIPES / "quickstart.toml", [*OWN, f"run_dir={root / 'runs'}"])
    results = train_and_evaluate(recipe, progress=False, echo=quiet)
    path = RunDir.of(recipe.config).path
    shutil.copytree(path, root / "pristine")
    return recipe, path, root / "pristine", results


@pytest.fixture
def own(own_run):
    """The own run's directory, as it was when it finished."""
    recipe, path, pristine, results = own_run
    shutil.rmtree(path)
    shutil.copytree(pristine, path)
    return recipe, path, pristine, results


# ---- Two trainings of one run ------------------------------------------------------------


def test_a_second_training_of_a_run_is_refused_while_the_first_holds_its_lock(tmp_path):
    overrides = [*TINY, f"run_dir={tmp_path}"]
    recipe = recipe_lib.load(RECIPES / "quickstart.toml", overrides)
    rd = RunDir.of(recipe.config)
    with rd.lock():  # a training in this process
        assert rd.lock_owner()["pid"] == os.getpid()
        with pytest.raises(RectkError, match=f"held by another training .*pid {os.getpid()} "):
            train_and_evaluate(recipe, progress=False, echo=quiet)
    assert not (rd.path / LOCK).exists() and rd.lock_owner() is None

    lock = write_lock(rd.path, pid=os.getppid())  # a live process of this host
    code, _, err = cli(["train", str(RECIPES / "quickstart.toml"), *set_args(overrides)])
    assert code == 2
    assert f"{lock} is held by another training of this run (pid {os.getppid()} on host " in err
    assert socket.gethostname() in err and f"delete {lock}" in err and "Traceback" not in err
    assert json.loads(lock.read_text())["pid"] == os.getppid()  # left to its owner
    assert sorted(p.name for p in rd.path.iterdir()) == [LOCK]  # and nothing written


def test_a_stale_lock_is_taken_over_and_every_way_out_releases_the_lock(tmp_path, capsys):
    rd = RunDir(tmp_path / "run")
    lock = rd.path / LOCK
    for pid, at in [(dead_pid(), None), (os.getpid(), 0.0)]:  # gone; or its pid since reused
        write_lock(rd.path, pid=pid, at=at)
        assert rd.lock_owner() is None
        with rd.lock():
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert "was left by a training that no longer runs" in capsys.readouterr().err
        assert not lock.exists()
    for stop in (KeyboardInterrupt, ValueError):
        with pytest.raises(stop), rd.lock():
            raise stop
        assert not lock.exists()
    with rd.lock(enabled=False):  # processes other than 0 of a multi-host run
        assert not lock.exists()
    fresh = RunDir(tmp_path / "new" / "run")
    with pytest.raises(ValueError), fresh.lock():
        raise ValueError
    assert not (tmp_path / "new").exists()  # a refused run leaves nothing


# ---- A loss that diverges -----------------------------------------------------------------


def test_a_diverging_loss_stops_the_run_naming_its_step_and_keeping_the_last_checkpoint(
    tmp_path,
):
    """At lr 10 without clipping the loss goes from about 6.5 to over a thousand at step 2."""
    overrides = [
        *TINY,
        f"run_dir={tmp_path}",
        "train.lr=10.0",
        "train.clip_norm=0.0",
        "train.schedule=constant",
        "train.warmup_steps=0",
        "train.checkpoint_every=1",
        "train.log_every=1",
    ]
    code, _, err = cli(["train", str(RECIPES / "quickstart.toml"), *set_args(overrides)])
    assert code == 2, err[-2000:]
    assert (
        "the training loss diverged" in err and "at step 2, more than train.divergence = 10" in err
    )
    assert "The last good checkpoint (step 1) is kept" in err and "Traceback" not in err
    run = tmp_path / "quickstart"
    ckpt = Checkpoints(run / "checkpoints", keep=2)
    assert ckpt.all_steps() == [1]
    ckpt.close()
    assert not (run / LOCK).exists()

    with pytest.raises(
        RectkError, match=r"key 'train.divergence': must be 0 \(off\) or above 1, got 0.5"
    ):
        recipe_lib.load(RECIPES / "quickstart.toml", ["train.divergence=0.5"])


# ---- A run not finished -------------------------------------------------------------------


def test_recommend_on_an_unfinished_run_notes_the_step_it_serves(tiny_run, copy):
    assert load_run(copy).notice is None
    (copy / "results.json").unlink()  # as during training
    user = load_run(copy).vocab["user_ids"][0]
    code, out, err = cli(["recommend", "--run", str(copy), "--user", user, "--k", "3"])
    assert code == 0 and len(out.splitlines()) == 3
    best = tiny_run.results["best_step"]
    assert f"training has not finished: serving step {best} (the best validation so far)" in err


# ---- Damaged files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,command,remedy",
    [
        ("results.json", "evaluate", "run the same training command again"),
        ("run.json", "evaluate", "delete the run directory and train again"),
        ("vocab.json", "recommend", "run the same training command again"),
        ("history.npz", "recommend", "run the same training command again"),
    ],
)
def test_a_truncated_file_of_a_run_is_one_message_naming_it(copy, name, command, remedy):
    user = json.loads((copy / "vocab.json").read_text())["user_ids"][0]
    truncate(copy / name)
    args = ["--run", str(copy)] + (["--user", user] if command == "recommend" else [])
    code, _, err = cli([command, *args])
    assert code == 2
    assert err.startswith(f"rectk: error: {copy / name} is damaged (") and remedy in err
    assert len(err.strip().splitlines()) == 1


# ---- Damaged checkpoints and checkpoints of another recipe --------------------------------


@pytest.mark.parametrize("found_by", ["file sizes", "a failed restore"])
def test_a_truncated_latest_checkpoint_gives_way_to_the_newest_intact_one(own, capfd, found_by):
    """The resumed run (with a stale lock, a partial last line of metrics.jsonl, and an
    override that leaves the recipe hash as it is) ends exactly as the uninterrupted one."""
    recipe, run, pristine, results = own
    latest = run / "checkpoints" / "12"
    if found_by == "a failed restore":
        (latest / "rectk_files.json").unlink()  # as a checkpoint of an older rectk
    truncate(largest_file(latest / "state"))
    (run / "results.json").unlink()
    metrics = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(metrics[: -(len(metrics.splitlines()[-1]) // 2 + 1)])
    write_lock(run, pid=dead_pid())
    same = recipe_lib.load(
        RECIPES / "quickstart.toml", [*OWN, f"run_dir={run.parent}", "train.divergence=10.0"]
    )
    assert same.hash == recipe.hash
    said: list[str] = []
    resumed = train_and_evaluate(same, progress=False, echo=said.append)
    err = capfd.readouterr().err
    assert f"rectk: note: damaged checkpoint ({latest}: " in err
    assert f"moved to {run / 'checkpoints.damaged' / '12'}" in err
    assert "resuming from the checkpoint at step 9" in said
    assert "dropped the partial last line" in err and "no longer runs" in err
    assert (run / "checkpoints.damaged" / "12" / "state").is_dir()
    assert (run / "metrics.jsonl").read_text() == (pristine / "metrics.jsonl").read_text()
    for key in ("best_step", "last_step", "stopped", "valid", "test"):
        assert resumed[key] == results[key], key
    assert not (run / LOCK).exists()


def test_load_run_serves_the_newest_intact_checkpoint_when_the_best_is_damaged(copy, capfd):
    best = load_run(copy).step
    other = next(s for s in (6, 12) if s != best)
    truncate(largest_file(copy / "checkpoints" / str(best) / "state"))
    with RunDir(copy).lock():  # a training of the run: its checkpoints stay where they are
        assert load_run(copy).step == other
        assert "left in place (its run is training)" in capfd.readouterr().err
    assert (copy / "checkpoints" / str(best)).is_dir()
    loaded = load_run(copy)
    assert loaded.step == other and loaded.best_step == best
    assert loaded.notice == (
        f"serving step {other}: the checkpoint of the best validation step ({best}) is damaged"
    )
    assert (copy / "checkpoints.damaged" / str(best)).is_dir()
    assert not (copy / "checkpoints" / str(best)).exists()


def test_a_checkpoint_of_another_recipe_is_refused(own, tiny_run):
    recipe, run, _, _ = own
    shutil.copytree(tiny_run.path / "checkpoints" / "12", run / "checkpoints" / "15")
    other = RunDir(tiny_run.path).record()["recipe_hash"]
    message = f"checkpoints/15 is a checkpoint of another recipe \\(hash {other}; this run's"
    with pytest.raises(RectkError, match=message):
        train_and_evaluate(recipe, progress=False, echo=quiet)
    with pytest.raises(RectkError, match=message):
        load_run(run)
    assert not (run / LOCK).exists()


# ---- A run directory that cannot be written -----------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_run_directory_that_cannot_be_written_is_one_message(tmp_path, monkeypatch, code):
    import rectk.rundir

    def savez(file, **_arrays):
        raise OSError(code, os.strerror(code), str(file))

    monkeypatch.setattr(rectk.rundir.np, "savez", savez)
    recipe = recipe_lib.load(RECIPES / "quickstart.toml", [*TINY, f"run_dir={tmp_path}"])
    with pytest.raises(RectkError, match=f"cannot write .*history.tmp.npz: {os.strerror(code)};"):
        train_and_evaluate(recipe, progress=False, echo=quiet)
    assert not (tmp_path / "quickstart" / LOCK).exists()


def test_a_checkpoint_save_on_a_full_disk_is_one_message(tmp_path, monkeypatch):
    """Orbax reports a full disk as TensorStore's ValueError with the OS error code inside."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    def save(*_args, **_kwargs):
        raise ValueError(
            'RESOURCE_EXHAUSTED: Error writing "w/0": Failed to write 189678 bytes to file 7: '
            "No space left on device [os_error_code='28']"
        )

    ckpt = Checkpoints(tmp_path, keep=2)
    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(RectkError, match=f"cannot write {tmp_path / '1'}: No space left on"):
        ckpt.save(1, {"w": jnp.ones(3)}, {"step": 1})
    ckpt.close()
