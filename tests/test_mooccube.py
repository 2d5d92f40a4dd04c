"""The MOOCCube enrolment data set: label-1 rows only, seeded random order per learner."""

import numpy as np
import pytest

from rectk import recipe as recipe_lib
from rectk.data.split import split
from rectk.errors import DataError
from rectk_plugins.datasets.mooccube import MOOCCube
from tests.conftest import RECIPES, shared


def _file(tmp_path, text):
    p = tmp_path / "ratings_final.txt"
    p.write_text(text)
    return str(p)


def test_keeps_enrolments_only_and_reports_bad_lines(tmp_path):
    rows = "".join(
        f"{u}\t{c}\t{lab}\n" for u in range(3) for c, lab in [(1, 1), (9, 0), (2, 1), (3, 1)]
    )
    inter = MOOCCube(path=_file(tmp_path, rows), order="file").load().interactions
    assert len(inter) == 9 and "9" not in inter.item_ids
    assert inter.time.tolist() == list(range(9))
    with pytest.raises(DataError, match=r"line 2: expected 'user<TAB>course<TAB>label'"):
        MOOCCube(path=_file(tmp_path, "0\t1\t1\n0\t2\n")).load()


def test_random_order_is_seeded_and_makes_leave_last_out_a_random_hold_out(tmp_path):
    rows = "".join(f"{u}\t{c}\t1\n" for u in range(40) for c in range(6))
    path = _file(tmp_path, rows)
    a = MOOCCube(path=path, seed=1).load().interactions
    assert np.array_equal(a.time, MOOCCube(path=path, seed=1).load().interactions.time)
    assert not np.array_equal(a.time, MOOCCube(path=path, seed=2).load().interactions.time)
    test_items = {a.item_ids[i - 1] for i in split(a, "leave_last_out").test.target}
    assert len(test_items) > 3  # file order would hold out course 5 for every learner


def test_mooccube_counts_and_recipe():
    path = shared("mooccube-enrolments", "ratings_final.txt")
    inter = MOOCCube(path=str(path)).load().interactions
    assert (inter.num_users, inter.num_items, len(inter)) == (7157, 215, 32086)
    cfg = recipe_lib.load(RECIPES / "mooccube_sasrec.toml").config
    assert type(cfg.data).plugin_name == "mooccube"
