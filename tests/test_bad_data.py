"""Bad data files get one clear answer (file, line, what was expected); duplicates never leak.

Each case writes a small bad file, calls the reader or data set plugin, and checks the message.
"""

from __future__ import annotations

import contextlib
import gzip
import io

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk import registry
from rectk.cli import main
from rectk.data import readers
from rectk.data.split import split
from rectk.data.types import Dataset, Interactions
from rectk.errors import DataError, RecipeError
from rectk_plugins.datasets.mooccube import MOOCCube
from rectk_plugins.datasets.university import read_course_catalogue, read_prerequisites
from tests.conftest import shared

HEAD = b"u,i,t,r\n"


def _csv(path):
    return readers.read_delimited(path, user="u", item="i", time="t", value="r")


def _catalogue(path):
    return readers.read_catalogue(path)


def _sequences(path):
    return readers.read_sequences(path)


def _mooccube(path):
    return MOOCCube(path=str(path)).load()


def _item_titles(path):
    return readers.read_item_titles(path)


def _courses(path):
    return read_course_catalogue(path)


def _edges(path):
    return read_prerequisites(path, ["c1", "c2"])


# (reader, file bytes, line in the message, words the message must hold)
CASES = {
    "nan-time": (_csv, HEAD + b"A,x,1,1\nA,y,nan,1\n", 3, "column 't' must be a finite number"),
    "inf-time": (_csv, HEAD + b"A,x,1,1\nA,y,inf,1\n", 3, "must be a finite number"),
    "empty-time": (_csv, HEAD + b"A,x,1,1\nA,y, ,1\n", 3, "column 't' is empty"),
    "missing-time": (_csv, HEAD + b"A,x,1,1\nA,y,,1\n", 3, "column 't' is empty"),
    "nan-rating": (_csv, HEAD + b"A,x,1,NaN\n", 2, "column 'r' must be a finite number"),
    "minus-inf-rating": (_csv, HEAD + b"A,x,1,-inf\n", 2, "column 'r' must be a finite"),
    "text-time": (_csv, HEAD + b"A,x,soon,1\n", 2, "column 't' must be a number"),
    "empty-user": (_csv, HEAD + b"A,x,1,1\n ,y,2,1\n", 3, "column 'u' is empty"),
    "latin-1-bytes": (_csv, HEAD + b"A,x,1,1\nA,caf\xe9,2,1\n", 3, "column 6: bytes"),
    "gzip-file": (_csv, gzip.compress(HEAD + b"A,x,1,1\n"), 1, "binary"),
    "nul-bytes": (_csv, HEAD + b"A,x\x00,1,1\n", 2, "NUL byte"),
    "field-over-limit": (
        _csv,
        HEAD + b'A,"x,1,1\n' + b"y" * 140_000 + b"\n",
        2,
        "longer than 131072 characters",
    ),
    "unclosed-quote": (_csv, HEAD + b'A,x,1,1\nB,"y,2,1\nC,z,3,1\n', 3, "never closed"),
    "bad-quote": (_csv, HEAD + b'A,"x"y,1,1\n', 2, "not valid CSV"),
    "missing-column": (_csv, b"\n\nu,i,time,r\nA,x,1,1\n", 3, "no column 't' for the time"),
    "repeated-column": (_csv, b"u,i,t,t,r\nA,x,1,1,1\n", 1, "column 't' appears twice"),
    "too-few-columns": (_csv, HEAD + b"A,x,1\n", 2, "expected at least 4 columns"),
    "short-of-header": (_csv, b"u,i,t,r,note\nA,x,1,1,a\nA,y,2,1\n", 3, "expected 5 columns"),
    "too-many-columns": (_csv, HEAD + b"A,x,1,1\nA,y,2,1,extra\n", 3, "expected 4 columns"),
    "sequence-bytes": (_sequences, b"1 a b\n2 c \xff\n", 2, "not valid UTF-8"),
    "sequence-binary": (_sequences, b"1 a b\n\x00\x01\x02\n", 2, "binary file"),
    "mooccube-bytes": (_mooccube, b"1\t2\t1\n1\t\xfe\t1\n", 2, "not valid UTF-8"),
    "item-file-bytes": (_item_titles, b"item_id\tmovie_title\n1\tCaf\xe9\n", 2, "not valid"),
    "item-file-empty": (_item_titles, b"", None, "the file is empty"),
    "item-file-repeat": (
        _item_titles,
        b"item_id\tmovie_title\n1\tA\n2\tB\n1\tC\n",
        4,
        "item '1' appears twice (first on line 2)",
    ),
    "catalogue-bytes": (_catalogue, b"item_id,title\nc1,\xc3\x28\n", 2, "not valid UTF-8"),
    "catalogue-no-title": (_catalogue, b"item_id,name\nc1,A\n", 1, "no column 'title'"),
    "catalogue-width": (_catalogue, b"item_id,title\nc1,A, B\n", 2, "expected 2 columns"),
    "catalogue-empty-id": (_catalogue, b"item_id,title\nc1,A\n,B\n", 3, "'item_id' is empty"),
    "catalogue-header-only": (_catalogue, b"item_id,title\n", None, "no items found"),
    "catalogue-repeat": (
        _catalogue,
        b"item_id,title\nc1,A\nc2,B\nc1,Other\n",
        4,
        "item 'c1' appears twice (first on line 2) with another title",
    ),
    "courses-over-limit": (_courses, b'c1,"A\n' + b"b" * 140_000 + b"\n", 1, "longer than"),
    "courses-binary": (_courses, b"c1,A\n\x89PNG\r\n\x1a\n", 2, "not valid UTF-8"),
    "edges-all-unknown": (_edges, b"x1,x2\nx3,c1\n", 1, "none of the 2 edge(s)"),
}


@pytest.mark.parametrize(("reader", "content", "line", "words"), CASES.values(), ids=CASES)
def test_bad_file_is_one_clear_data_error(tmp_path, reader, content, line, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        reader(path)
    msg = str(err.value)
    where = f"{path}, line {line}" if line else f"{path}:"
    assert msg.startswith(where), msg
    assert words in msg, msg
    assert "\n" not in msg


def test_byte_order_mark_and_blank_lines_are_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfu,i,t,r\r\n\r\nA,x,1,1\r\nA,y,2,1\r\n")
    inter = _csv(path)
    assert inter.user_ids == ("A",) and inter.item_ids == ("x", "y")
    cat = tmp_path / "cat.csv"
    cat.write_bytes(b'\xef\xbb\xbfitem_id,title\nc1,"Multi\nline, quoted"\n')
    assert _catalogue(cat)[1] == {"c1": "Multi\nline, quoted"}


def test_junyi_table_with_byte_order_mark_reads():
    path = shared("junyi-exercises", "junyi_Exercise_table.csv")
    ids, titles, _, notes = readers.read_catalogue(path, item="name", title="pretty_display_name")
    assert ids[0] == "parabola_intuition_1"  # not "\ufeffname" as the first header
    assert len(ids) == 835 and titles["circles_and_arcs"] == "圓與弧"
    # Two exercises are listed twice with the same text: kept once, and said so.
    assert notes == (f"{path}: dropped 2 repeated catalogue row(s) (lines 231, 635)",)


# ---- Duplicates ---------------------------------------------------------------------------


def _log_with_duplicates(tmp_path, users=30):
    """Each user takes items 0..5 at times 1..6; the last interaction is written twice, and
    user 0 also retakes item 2 at time 7 (a real repeat, kept)."""
    rows = ["user_id,item_id,timestamp"]
    for u in range(users):
        events = [(f"i{(u + k) % 12}", k + 1) for k in range(6)]
        rows += [f"u{u},{i},{t}" for i, t in [*events, events[-1]]]
    rows.append("u0,i2,7")
    path = tmp_path / "dups.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_exact_duplicates_are_dropped_reported_and_never_leak(tmp_path):
    users = 30
    path = _log_with_duplicates(tmp_path, users)
    ds = registry.datasets.get("csv")(path=str(path)).load()
    assert len(ds.interactions) == users * 6 + 1  # duplicates gone, the retake kept
    assert ds.notes == (
        f"{path}: dropped {users} exact duplicate interaction(s) (same user, item and time; "
        "the first of each kept)",
    )
    sp = split(ds.interactions, "leave_last_out")
    for ev in (sp.test, sp.valid):
        for n in range(len(ev)):
            if ds.interactions.user_ids[ev.user[n] - 1] == "u0":
                continue  # u0's target is the retake of an earlier item
            assert ev.target[n] not in ev.hist.items[ev.hist.ptr[n] : ev.hist.ptr[n + 1]]


def test_split_drops_exact_duplicates_of_a_log_built_by_hand():
    # Three users, items 1..4 at times 1..4, the last event repeated (same item and time).
    user = np.repeat(np.arange(1, 4), 5).astype(np.int32)
    item = np.tile([1, 2, 3, 4, 4], 3).astype(np.int32)
    time = np.tile([1.0, 2, 3, 4, 4], 3)
    log = Interactions(
        user=user,
        item=item,
        time=time,
        value=None,
        user_ids=("a", "b", "c"),
        item_ids=tuple("wxyz"),
    )
    sp = split(log, "leave_last_out")
    assert sp.test.target.tolist() == [4, 4, 4]
    assert sp.test.hist.items.tolist() == [1, 2, 3] * 3  # the target is not in its own history
    assert len(sp.history.items) == 12
    # A data set built from it drops them too, whatever plugin made it, and says so.
    ds = Dataset(name="hand", interactions=log)
    assert len(ds.interactions) == 12 and "dropped 3 exact duplicate" in ds.notes[0]


def test_repeated_mooccube_enrolment_is_dropped_with_a_note(tmp_path):
    path = tmp_path / "ratings_final.txt"
    path.write_text("1\t10\t1\n1\t11\t1\n1\t10\t1\n2\t10\t0\n")
    ds = MOOCCube(path=str(path)).load()
    assert len(ds.interactions) == 2 and "dropped 1 repeated enrolment" in ds.notes[0]


# ---- Catalogues and prerequisites ---------------------------------------------------------


def test_unknown_prerequisite_edges_and_uncatalogued_items_are_load_notes(tmp_path):
    inter = tmp_path / "i.csv"
    inter.write_text("user_id,item_id,timestamp\nA,c2,1\nA,c1,2\nA,c9,3\n")
    cat = tmp_path / "c.csv"
    cat.write_text("item_id,title\nc1,Intro\nc2,Advanced\nc3,New\n")
    pre = tmp_path / "p.csv"
    pre.write_text("c2,c1\nc3,ghost\n\nnowhere,c1\nc3,c2\nc3,c2\n")
    ds = registry.datasets.get("csv")(
        path=str(inter), catalogue=str(cat), prerequisites=str(pre)
    ).load()
    assert ds.catalogue is not None
    assert ds.catalogue.prerequisites.tolist() == [[2, 1], [3, 2]]
    assert ds.notes == (
        f"{pre}: skipped 2 edge(s) naming courses not in {cat} (line 2: 'ghost'; "
        "line 4: 'nowhere')",
        f"{pre}: dropped 1 repeated or self edge(s)",
        f"{cat}: 1 item(s) of the interactions are not listed, so have no title or "
        "description ('c9')",
    )


def test_prerequisites_without_a_catalogue_are_refused(tmp_path):
    data = tmp_path / "i.csv"
    data.write_text("user_id,item_id,timestamp\nA,c1,1\n")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[data]\ntype = "csv"\npath = "{data}"\nprerequisites = "p.csv"\n')
    with pytest.raises(RecipeError) as err:
        recipe_lib.load(recipe)
    msg = str(err.value)
    assert str(recipe.resolve()) in msg and "data.prerequisites" in msg
    assert "must come with data.catalogue" in msg


# ---- The command line ---------------------------------------------------------------------


def _cli(tmp_path, data_text: bytes, *extra: str) -> tuple[int, str, str]:
    data = tmp_path / "inter.csv"
    data.write_bytes(data_text)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[data]\ntype = "csv"\npath = "{data}"\n')
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", str(recipe), "--no-progress", "--set", f"run_dir={tmp_path}", *extra])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"user_id,item_id,timestamp\nA,x,1\nA,y,NaN\n", "line 3: column 'timestamp' must be"),
        (b"user_id,item_id,timestamp\nA,x,1\nA,\x80,2\n", "line 3, column 3: bytes"),
    ],
    ids=["nan-time", "not-utf8"],
)
def test_cli_answers_bad_data_in_one_line(tmp_path, text, words):
    code, _, err = _cli(tmp_path, text)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("rectk: error: ") and err.count("\n") == 1
    assert str(tmp_path / "inter.csv") in err and words in err, err


def test_load_summary_prints_the_duplicates_dropped(tmp_path):
    text = _log_with_duplicates(tmp_path, users=40).read_bytes()
    tiny = ["train.steps=2", "train.batch_size=16", "train.warmup_steps=1", "model.dim=8"]
    tiny += ["model.max_len=6", "model.encoder.layers=1", "eval.batch_size=64"]
    code, out, err = _cli(tmp_path, text, *[a for o in tiny for a in ("--set", o)])
    assert code == 0, err[-2000:]
    assert "note: " in out and "dropped 40 exact duplicate interaction(s)" in out
