"""The bad-input corpus: broken recipes and command lines, each answered by the ``rectk`` command
with a non-zero status and one paragraph naming the file, key or line at fault, never a Python
traceback, and before anything is trained or written.

Each case of ``CASES`` runs ``rectk.cli.main`` in this process (a fresh process costs seconds of
JAX import); the few properties that need a process of their own (the module search path) start
one. Count the corpus with ``pytest --collect-only -q tests/test_bad_inputs.py | grep -c corpus``
or ``python -c "from tests.test_bad_inputs import CASES; print(len(CASES))"``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rectk import registry
from rectk.cli import main
from tests.conftest import RECIPES

QUICKSTART = RECIPES / "quickstart.toml"
DIR = object()  # a file entry that is a folder


@dataclasses.dataclass(frozen=True)
class Case:
    """``argv`` of ``rectk`` ({T}: the case's folder, {Q}: recipes/quickstart.toml), the files
    written into {T} first, and a fragment the error must hold."""

    id: str
    argv: tuple[str, ...]
    expect: str
    files: tuple[tuple[str, object], ...] = ()


def _train(*sets: str, recipe: str = "{Q}", files=(), expect: str = "", id: str = "") -> Case:
    argv = ("train", recipe, *(a for s in sets for a in ("--set", s)))
    return Case(id, argv, expect, tuple(files))


def _recipe(body: str | bytes, expect: str, id: str, extra=()) -> Case:
    """A recipe file r.toml in {T} (on top of quickstart when the body is text)."""
    if isinstance(body, str):
        body = f'base = "{QUICKSTART}"\n' + body
    return _train(recipe="{T}/r.toml", files=(("r.toml", body), *extra), expect=expect, id=id)


def _set(override: str, expect: str, id: str | None = None) -> Case:
    return _train(override, expect=expect, id=id or override)


RUN_JSON = ("run/run.json", json.dumps({"recipe_hash": "0", "data_fingerprint": "0"}))
VOCAB = (
    "run/vocab.json",
    json.dumps(
        {
            "item_ids": ["c1", "c2"],
            "user_ids": ["u1"],
            "titles": None,
            "descriptions": None,
            "prerequisites": None,
        }
    ),
)
RESULTS = {
    "best_step": 1,
    "valid": {"ndcg@10": 0.1},
    "test": {"model": {"ndcg@10": 0.1}},
    "test_targets": 1,
}

CASES: list[Case] = [
    # ---- The recipe file itself -----------------------------------------------------------------
    _recipe(b"[train\n", "r.toml: not valid TOML", "toml-unclosed-table"),
    _recipe(b"[train]\nsteps = \n", "(at line 2, column 9)", "toml-missing-value"),
    _recipe(b"a = 1\na = 2\n", "r.toml: not valid TOML", "toml-duplicate-key"),
    _recipe(b'name = "ok"\nname2 = "caf\xe9"\n', "r.toml, line 2: not UTF-8 text", "not-utf8"),
    _recipe(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "r.toml: a binary file", "binary-file"),
    _recipe("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply", "toml-deep-nesting"),
    _train(recipe="{T}/missing.toml", expect="recipe file not found: ", id="missing-recipe"),
    _train(recipe="{T}/d.toml", files=(("d.toml", DIR),), expect="d.toml: is a folder", id="dir"),
    _recipe(b'base = "nope.toml"\n', "recipe file not found:", "base-missing"),
    _recipe(b'base = "r.toml"\n', "recipe bases form a cycle", "base-cycle"),
    _recipe(b"base = 3\n", "r.toml: key 'base' must be a path string", "base-not-a-string"),
    _recipe(
        b'base = "rectk:nope"\n', "key 'base': no shipped recipe 'rectk:nope'", "base-unshipped"
    ),
    _recipe("x = 1\n", "key 'x': unknown key", "unknown-top-level-key"),
    _recipe(
        "[train]\nsteps_ = 3\n",
        "r.toml: key 'train.steps_': unknown key; did you mean 'steps'",
        "unknown-key",
    ),
    _recipe(
        "[model.encoder]\nheadz = 2\n",
        "key 'model.encoder.headz': unknown key",
        "unknown-plugin-key",
    ),
    _recipe("[eval]\nks = 5\n", "r.toml: key 'eval.ks': expected a list", "wrong-type-list"),
    _recipe('[train]\nsteps = "ten"\n', "key 'train.steps': expected an integer", "wrong-type-int"),
    _set("eval.mask_seen=1", "key 'eval.mask_seen': expected true or false"),
    _set("train.lr={a=1}", "key 'train.lr': expected a number"),
    _set("eval=3", "--set: key 'eval': expected a table"),
    _set("model.encoder=3", "key 'model.encoder': expected a table with a 'type' key"),
    _set("model.encoder.type=3", "key 'model.encoder.type': expected the name of a encoder"),
    _set("train.dtype=float16", "key 'train.dtype': expected 'float32' or 'bfloat16'"),
    _train("train.steps", expect="--set 'train.steps': expected KEY=VALUE", id="set-no-value"),
    _train("a..b=1", expect="malformed key", id="set-malformed-key"),
    # ---- Every numeric key out of range -------------------------------------------------------
    *(
        _set(o, f"--set: key '{o.split('=')[0]}': must be")
        for o in (
            "train.lr=0",
            "train.steps=-5",
            "train.log_every=0",
            "train.warmup_steps=-1",
            "train.eval_every=-1",
            "train.checkpoint_every=-1",
            "train.patience=-1",
            "train.weight_decay=-1.0",
            "train.clip_norm=-1.0",
            "train.keep_checkpoints=0",
            "train.accumulate=0",
            "train.batch_size=0",
            "train.stride=-1",
            "eval.batch_size=0",
            "eval.item_chunk=0",
            "eval.ks=[0]",
            "recommend.k=0",
            "recommend.show_users=-1",
            "split.valid_fraction=1.0",
            "split.test_fraction=-0.1",
            "split.cold_items=1.0",
            "mesh.data=0",
            "mesh.model=0",
            "model.dim=0",
            "model.max_len=0",
            "model.max_len=1000000",
            "model.encoder.heads=0",
            "model.encoder.layers=0",
            "model.encoder.dropout=1.0",
            "model.encoder.attn_dropout=-0.1",
            "model.encoder.inner=-1",
            "model.encoder.layer_norm_eps=0.0",
            "train.monitor=foo@10",
            "train.monitor=ndcg@7",
        )
    ),
    _train(
        "train.epochs=0", "train.steps=0", expect="set train.epochs or train.steps", id="no-steps"
    ),
    _train(
        "split.valid_fraction=0.5",
        "split.test_fraction=0.5",
        expect="must be below 1",
        id="split-sum",
    ),
    _set("train.stride=51", "key 'train.stride': must be at most model.max_len = 20, got 51"),
    _train(
        "model.encoder={type='gru4rec', layers=0}",
        expect="key 'model.encoder.layers': must be at least 1",
        id="gru4rec.layers=0",
    ),
    _train(
        "model.encoder={type='gru4rec', hidden=-1}",
        expect="key 'model.encoder.hidden': must be >= 0",
        id="gru4rec.hidden=-1",
    ),
    _train(
        "model.encoder={type='caser', window=0}",
        expect="key 'model.encoder.window': must be at least 1",
        id="caser.window=0",
    ),
    _train(
        "model.encoder={type='caser', dropout=1.5}",
        expect="key 'model.encoder.dropout': must be in [0, 1)",
        id="caser.dropout=1.5",
    ),
    # refused when the encoder is built (after the data is read, before anything is written)
    _set("model.encoder.heads=3", "model.encoder.heads = 3 must divide model.dim = 64"),
    # ---- Unknown plugin and metric names, in every table ----------------------------------------
    _set("eval.metrics=['ndcgg']", "key 'eval.metrics[0]': unknown metric 'ndcgg'"),
    _set("eval.baselines=['pop']", "key 'eval.baselines[0]': unknown baseline 'pop'"),
    _set("model.encoder.type=sasrek", "key 'model.encoder.type': unknown encoder 'sasrek'"),
    _set("model.item_tower.type=nope", "key 'model.item_tower.type': unknown item tower"),
    _set("model.head.type=nope", "key 'model.head.type': unknown head 'nope'"),
    _set("loss.type=nope", "key 'loss.type': unknown loss 'nope'"),
    _set("data.type=nope", "key 'data.type': unknown dataset 'nope'"),
    _set("task.type=nope", "key 'task.type': unknown task 'nope'"),
    _set("rerank.chains.x=[{type='nope'}]", "key 'rerank.chains.x[0].type': unknown reranker"),
    _set("rerank.metrics=['nope']", "key 'rerank.metrics[0]': unknown list metric 'nope'"),
    _recipe(
        '[loss]\ntype = "sofmax_ce"\n',
        "r.toml: key 'loss.type': unknown loss",
        "unknown-loss-in-file",
    ),
    # ---- Run names that would leave run_dir ----------------------------------------------------
    *(
        _set(f"name={n!r}", "key 'name': must be a non-empty relative name")
        for n in ("/abs", "..", "", "a/../../b")
    ),
    # ---- The plugins list -----------------------------------------------------------------------
    _set("plugins=['rectk_no_such_module_q']", "could not import 'rectk_no_such_module_q'"),
    _recipe(
        'plugins = ["./missing.py"]\n',
        "r.toml: key 'plugins': could not import './missing.py'",
        "plugin-file-missing",
    ),
    _recipe(
        'plugins = ["./boom.py"]\n',
        "RuntimeError: boom",
        "plugin-file-fails",
        (("boom.py", "raise RuntimeError('boom')\n"),),
    ),
    _set("plugins=[1]", "key 'plugins[0]': expected a string"),
    _set("plugins='x'", "key 'plugins': expected a list"),
    # ---- evaluate and recommend -----------------------------------------------------------------
    Case(
        "evaluate-missing-run",
        ("evaluate", "--run", "{T}/nope"),
        "nope is not a rectk run directory",
    ),
    Case(
        "recommend-missing-run",
        ("recommend", "--run", "{T}/nope", "--user", "u1"),
        "not a rectk run directory",
    ),
    Case(
        "evaluate-not-finished",
        ("evaluate", "--run", "{T}/run"),
        "results.json not found",
        (RUN_JSON,),
    ),
    Case(
        "evaluate-damaged-json",
        ("evaluate", "--run", "{T}/run"),
        "results.json",
        (RUN_JSON, ("run/results.json", '{"best_step": ')),
    ),
    Case(
        "evaluate-damaged-run-json",
        ("evaluate", "--run", "{T}/run"),
        "run.json",
        (("run/run.json", "not json"),),
    ),
    Case(
        "evaluate-not-utf8",
        ("evaluate", "--run", "{T}/run"),
        "results.json",
        (RUN_JSON, ("run/results.json", b'{"a": "\xff"}')),
    ),
    Case(
        "recommend-k-0",
        ("recommend", "--run", "{T}/run", "--user", "u1", "--k", "0"),
        "--k must be at least 1, got 0",
        (RUN_JSON, VOCAB),
    ),
    Case(
        "recommend-unknown-user",
        ("recommend", "--run", "{T}/run", "--user", "nobody"),
        "unknown learner 'nobody'",
        (RUN_JSON, VOCAB),
    ),
    Case(
        "recommend-unknown-item",
        ("recommend", "--run", "{T}/run", "--history", "c1,zz"),
        "--history: unknown item id(s) zz",
        (RUN_JSON, VOCAB),
    ),
    Case(
        "recommend-no-vocab",
        ("recommend", "--run", "{T}/run", "--user", "u1"),
        "vocab.json",
        (RUN_JSON,),
    ),
    Case(
        "recommend-vocab-is-folder",
        ("recommend", "--run", "{T}/run", "--user", "u1"),
        "vocab.json",
        (RUN_JSON, ("run/vocab.json", DIR)),
    ),
    Case(
        "recommend-no-checkpoint",
        ("recommend", "--run", "{T}/run", "--user", "u1"),
        "has no checkpoint yet",
        (RUN_JSON, VOCAB, ("run/recipe.toml", f'base = "{QUICKSTART}"\n')),
    ),
    # argparse's own errors: usage and one line
    Case(
        "recommend-k-not-int",
        ("recommend", "--run", "x", "--user", "u", "--k", "ten"),
        "invalid int value: 'ten'",
    ),
    Case(
        "recommend-no-who",
        ("recommend", "--run", "x"),
        "one of the arguments --user --history --users is required",
    ),
]


@pytest.fixture(autouse=True)
def _forget_failed_plugins():
    """Plugins that fail to import here are not left listed in other tests' messages."""
    failed, loaded = dict(registry._FAILED), set(registry._LOADED)
    yield
    registry._FAILED.clear()
    registry._FAILED.update(failed)
    registry._LOADED.clear()
    registry._LOADED.update(loaded)


def _write_files(case: Case, folder: Path) -> None:
    for name, content in case.files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))


def run_case(case: Case, folder: Path, capsys) -> tuple[int, str, str]:
    """Runs one case's command line in this process: its status, stdout and stderr."""
    _write_files(case, folder)
    argv = [a.replace("{T}", str(folder)).replace("{Q}", str(QUICKSTART)) for a in case.argv]
    if argv[0] == "train":
        argv += ["--set", f"run_dir={folder / 'runs'}"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_unique_ids() -> list[str]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    return ids


@pytest.mark.parametrize("case", CASES, ids=[f"corpus-{i}" for i in _check_unique_ids()])
def test_bad_input(case: Case, tmp_path, capsys):
    code, out, err = run_case(case, tmp_path, capsys)
    assert code == 2, out + err
    assert "Traceback" not in out + err, err
    assert case.expect in err, err
    if err.startswith("rectk: error: "):  # else argparse's usage line and its error
        assert err.count("\n") == 1, err  # one paragraph
    if case.argv[0] == "train":  # refused before anything is trained or written
        assert not (tmp_path / "runs").exists()


def test_the_corpus_is_large():
    assert len(CASES) >= 40


# ---- The command's safety net -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "expect"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/r/x.json"),
            "/r/x.json: Permission denied; check the permissions",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/r/ckpt"),
            "/r/ckpt: Read-only file system; the file system is read-only",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/r/ckpt"),
            "/r/ckpt: No space left on device; the disk is full",
        ),
        (OSError(errno.EIO, "Input/output error"), "a file: Input/output error"),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "a file in the run directory x is not UTF-8 text (invalid start byte at byte 0)",
        ),
        (
            json.JSONDecodeError("Expecting value", "{", 1),
            "a JSON file in the run directory x is damaged (Expecting value, line 1 column 2)",
        ),
    ],
    ids=["permission", "read-only", "no-space", "no-filename", "not-utf8", "damaged-json"],
)
def test_os_errors_are_one_paragraph(monkeypatch, capsys, err, expect):
    from rectk import cli

    def fail(args):
        raise err

    monkeypatch.setattr(cli, "_cmd_evaluate", fail)
    assert cli.main(["evaluate", "--run", "x"]) == 2
    text = capsys.readouterr().err
    assert text.startswith(f"rectk: error: {expect}") and text.count("\n") == 1, text


def test_a_bug_keeps_its_traceback_and_ctrl_c_is_one_line(monkeypatch, capsys):
    from rectk import cli

    def bug(args):
        raise ZeroDivisionError("a bug")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_evaluate", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["evaluate", "--run", "x"])
    monkeypatch.setattr(cli, "_cmd_evaluate", interrupted)
    assert cli.main(["evaluate", "--run", "x"]) == 130
    assert capsys.readouterr().err.count("\n") == 1


# ---- Trust: what is imported, and from where ----------------------------------------------------

MARKER = "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('imported')\n"


def test_evaluate_imports_nothing_from_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "marker.py").write_text(MARKER)
    (run / "run.json").write_text(RUN_JSON[1])
    (run / "results.json").write_text(json.dumps(RESULTS))
    (run / "recipe.toml").write_text(f'plugins = ["{tmp_path / "marker.py"}"]\n')
    assert main(["evaluate", "--run", str(run)]) == 0
    assert "ndcg@10" in capsys.readouterr().out
    assert not (tmp_path / "marker.ran").exists()


def test_the_command_drops_the_implicit_current_folder(monkeypatch, tmp_path):
    from rectk import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), "/explicit", str(tmp_path)])
    cli._drop_implicit_cwd()
    assert sys.path == ["/explicit", str(tmp_path)]  # an entry set by hand (PYTHONPATH) stays
    monkeypatch.setattr(sys, "path", ["", "/explicit"])
    cli._drop_implicit_cwd()
    assert sys.path == ["/explicit"]


def _rectk_here(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m rectk.cli ARGS`` started in ``folder``, which Python puts on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(
        [sys.executable, "-m", "rectk.cli", *args],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=300,
    )


def test_a_module_in_the_current_folder_is_not_imported(tmp_path):
    (tmp_path / "evil.py").write_text(MARKER)
    (tmp_path / "r.toml").write_text(f'base = "{QUICKSTART}"\nplugins = ["evil"]\n')
    proc = _rectk_here(tmp_path, "train", "r.toml", "--set", f"run_dir={tmp_path / 'runs'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "key 'plugins': could not import 'evil': ModuleNotFoundError" in proc.stderr
    assert 'plugins = ["./evil.py"]' in proc.stderr  # how to name it explicitly
    assert not (tmp_path / "evil.ran").exists()


def test_nothing_is_imported_before_the_recipe_is_checked(tmp_path):
    """A recipe with a structural error imports neither its plugins nor installed ones."""
    (tmp_path / "marker.py").write_text(MARKER)
    (tmp_path / "r.toml").write_text('plugins = ["./marker.py"]\n[train]\nstepz = 1\n')
    probe = (
        "import sys\nfrom rectk.cli import main\ncode = main(['train', 'r.toml'])\n"
        "print(code, sorted(m for m in sys.modules if m.startswith('rectk_plugins')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr
    assert "key 'train.stepz': unknown key" in proc.stderr
    assert not (tmp_path / "marker.ran").exists()


def test_an_attention_window_beyond_memory_is_refused_when_built():
    from flax import nnx

    from rectk.contracts import BuildContext
    from rectk.errors import RecipeError
    from rectk.recipe import from_dict

    cfg = from_dict(registry.encoders.get("sasrec"), {"heads": 64})
    ctx = BuildContext(
        dim=64, max_len=100_000, vocab_size=8, num_users=2, catalogue=None, rngs=nnx.Rngs(0)
    )
    with pytest.raises(
        RecipeError, match=r"model.max_len = 100000 cannot fit: .* must be in \[1, \d+\] here"
    ):
        nnx.eval_shape(lambda: cfg.build(ctx))
