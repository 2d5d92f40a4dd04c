"""Reading course catalogues and prerequisite edges (rectk_plugins.datasets.university)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rectk.errors import DataError
from rectk_plugins.datasets.university import read_course_catalogue, read_prerequisites, split_title

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "plugins" / "datasets" / "university" / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "university-courses"

NUM_COURSES = 654
NUM_EDGES = 861  # rows of cs_edges.csv; every one names two known courses


def _check_real_catalogue(folder: Path) -> None:
    cat = read_course_catalogue(folder / "cs_courses.csv", folder / "cs_edges.csv")
    assert len(cat.item_ids) == NUM_COURSES
    assert len(set(cat.item_ids)) == NUM_COURSES
    assert len(cat.titles) == len(cat.descriptions) == NUM_COURSES
    assert cat.item_ids[0] == "cmu_15-221"  # dense item 1 is the first row
    assert cat.titles[0] == "Technical Communication for Computer Scientists"
    assert cat.descriptions[0].startswith("The course is designed for sophomore")
    assert all(cat.titles) and all(cat.descriptions)
    assert all("  " not in t and "\xa0" not in t for t in cat.descriptions)
    # A title with a period inside a word stays whole.
    i = cat.item_ids.index("stanford_CS 92SI")
    assert cat.titles[i] == "Hap.py Coder: The Python Programming Language"
    # Cross-listed ids keep their comma.
    assert "princeton_COS  109,EGR  109" in cat.item_ids

    edges = read_prerequisites(folder / "cs_edges.csv", cat.item_ids)
    assert edges.unknown == 0 and edges.dropped == 0
    assert cat.prerequisites.shape == (NUM_EDGES, 2)
    assert cat.prerequisites.dtype == np.int32
    assert cat.prerequisites.min() >= 1 and cat.prerequisites.max() <= NUM_COURSES
    # First edge row: "msu_CSE 476,msu_CSE 335" (335 is a prerequisite of 476).
    course, prereq = cat.prerequisites[0]
    assert (cat.item_ids[course - 1], cat.item_ids[prereq - 1]) == ("msu_CSE 476", "msu_CSE 335")
    assert cat.text(1).startswith("Technical Communication for Computer Scientists. The course")


def test_bundled_catalogue_counts():
    _check_real_catalogue(BUNDLED)


def test_bundled_data_carries_licence():
    licence = (BUNDLED / "LICENSE.md").read_text()
    assert "CC BY-NC-SA 4.0" in licence
    assert "creativecommons.org/licenses/by-nc-sa/4.0" in licence
    assert "Liang" in licence and "suderoy/PREREQ-IAAI-19" in licence
    assert (BUNDLED / "README.md").exists()


def test_shared_catalogue_counts_and_bundled_copy_matches():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not present at {SHARED}; the bundled copy is tested instead")
    _check_real_catalogue(SHARED)
    for name in ("cs_courses.csv", "cs_edges.csv"):
        assert (SHARED / name).read_bytes() == (BUNDLED / name).read_bytes()


@pytest.mark.parametrize(
    ("text", "title", "description"),
    [
        ("Algorithms. Design and analysis.", "Algorithms", "Design and analysis."),
        ("Hap.py Coder: Python. Learn it.", "Hap.py Coder: Python", "Learn it."),
        ("Senior Thesis.", "Senior Thesis", ""),
        ("Senior Thesis", "Senior Thesis", ""),
        ("Security I. Principles.", "Security I", "Principles."),
        ("Logic vs. Proof. About logic.", "Logic vs. Proof", "About logic."),
        ("  Data\xa0Mining.   Finding   patterns. ", "Data Mining", "Finding patterns."),
        ("Follows 6.046. Then more.", "Follows 6.046", "Then more."),
        ("", "", ""),
    ],
)
def test_split_title(text, title, description):
    assert split_title(text) == (title, description)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_small_catalogue_with_unknown_and_repeated_edges(tmp_path, caplog):
    courses = _write(
        tmp_path,
        "c.csv",
        'u_101,"Intro. Basics, with a comma."\n'
        'u_201,"Next. Uses\nthe intro."\n'  # a quoted field over two lines
        "\n"
        "u_301,Last\n",
    )
    edges = _write(
        tmp_path,
        "e.csv",
        "u_201,u_101\nu_301,u_201\nu_301,nowhere_1\nghost_9,u_101\nu_201,u_101\nu_101,u_101\n",
    )
    with caplog.at_level(logging.WARNING, logger="rectk_plugins.datasets.university.catalogue_io"):
        cat = read_course_catalogue(courses, edges)
    assert cat.item_ids == ("u_101", "u_201", "u_301")
    assert cat.titles == ("Intro", "Next", "Last")
    assert cat.descriptions == ("Basics, with a comma.", "Uses the intro.", "")
    assert cat.prerequisites.tolist() == [[2, 1], [3, 2]]
    assert "skipped 2 edge(s)" in caplog.text
    report = read_prerequisites(edges, cat.item_ids)
    assert (report.unknown, report.dropped) == (2, 2)
    # Without an edges file there are no prerequisites.
    assert read_course_catalogue(courses).prerequisites.shape == (0, 2)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('u_1,"A. a."\nu_2,B. b.,extra\n', 2, "expected two fields"),
        ('u_1,"A. a."\n"u_2\n"\n', 2, "expected two fields"),
        ('u_1,"A. a."\n\n,"B. b."\n', 3, "empty course id"),
        ('u_1,"A. a."\nu_x,"B.\nb."\n\nu_1,"again"\n', 5, "repeats the one on line 1"),
    ],
)
def test_malformed_course_rows_name_file_and_line(tmp_path, text, line, expected):
    path = _write(tmp_path, "courses.csv", text)
    with pytest.raises(DataError, match=expected) as err:
        read_course_catalogue(path)
    assert f"{path}, line {line}:" in str(err.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [("u_1,u_2\nu_1\n", 2), ("u_1,u_2\n\nu_1,u_2,u_3\n", 3), ("u_2, \n", 1)],
)
def test_malformed_edge_rows_name_file_and_line(tmp_path, text, line):
    courses = _write(tmp_path, "c.csv", "u_1,A. a.\nu_2,B. b.\nu_3,C. c.\n")
    edges = _write(tmp_path, "e.csv", text)
    with pytest.raises(
        DataError, match="expected two non-empty fields 'course,prerequisite'"
    ) as err:
        read_course_catalogue(courses, edges)
    assert f"{edges}, line {line}:" in str(err.value)


def test_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="cannot read the courses file"):
        read_course_catalogue(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="no courses found"):
        read_course_catalogue(_write(tmp_path, "empty.csv", "\n\n"))
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b'u_1,"Caf\xe9. Text."\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_course_catalogue(bad)
    courses = _write(tmp_path, "c.csv", "u_1,A. a.\n")
    with pytest.raises(DataError, match="cannot read the prerequisite edges file"):
        read_course_catalogue(courses, tmp_path / "no_edges.csv")
