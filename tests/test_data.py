import numpy as np
import pytest

from rectk.data import readers
from rectk.data.pipeline import left_pad, train_dataset, training_windows
from rectk.data.split import Sequences, split
from rectk.errors import DataError
from tests.conftest import shared


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_reader_and_remap(tmp_path):
    p = write(tmp_path, "i.csv", "u,i,t,r\nA,x,3,1\nB,y,1,2\nA,y,2,5\n")
    inter = readers.read_delimited(p, user="u", item="i", time="t", value="r")
    assert inter.user_ids == ("A", "B") and inter.item_ids == ("x", "y")
    assert inter.user.tolist() == [1, 2, 1] and inter.item.tolist() == [1, 2, 2]
    assert inter.time.tolist() == [3, 1, 2] and inter.value.tolist() == [1, 2, 5]
    assert inter.vocab_size == 3


def test_row_with_too_few_columns_names_file_and_line(tmp_path):
    p = write(tmp_path, "i.csv", "u,i,t\nA,x,3\nB,y\n")
    with pytest.raises(DataError, match=r"i\.csv, line 3: expected at least 3 columns"):
        readers.read_delimited(p, user="u", item="i", time="t")


def test_non_numeric_time_names_line(tmp_path):
    p = write(tmp_path, "i.tsv", "u\ti\tt\nA\tx\tyesterday\n")
    with pytest.raises(DataError, match=r"line 2: column 't' must be a number"):
        readers.read_delimited(p, user="u", item="i", time="t", delimiter="\t")


def test_missing_column_and_missing_file_and_empty(tmp_path):
    with pytest.raises(DataError, match="no column 'user'"):
        readers.read_delimited(write(tmp_path, "a.csv", "u,i\n"), user="user", item="i")
    with pytest.raises(DataError, match="interaction file not found"):
        readers.read_delimited(tmp_path / "none.csv", user="u", item="i")
    with pytest.raises(DataError, match="empty"):
        readers.read_delimited(write(tmp_path, "b.csv", "u,i\n"), user="u", item="i")
    with pytest.raises(DataError, match="the file is empty"):
        readers.read_delimited(write(tmp_path, "c.csv", ""), user="u", item="i")


def test_sequence_reader(tmp_path):
    p = write(tmp_path, "s.txt", "1 10 11 12\n2 11 13\n")
    inter = readers.read_sequences(p)
    assert inter.num_users == 2 and inter.num_items == 4 and len(inter) == 5
    with pytest.raises(DataError, match=r"s2\.txt, line 2: expected 'user item"):
        readers.read_sequences(write(tmp_path, "s2.txt", "1 10\n2\n"))


def test_ml100k_atomic_counts():
    inter = readers.read_atomic(shared("ml-100k", "ml-100k.inter"))
    assert (inter.num_users, inter.num_items, len(inter)) == (943, 1682, 100000)


def test_beauty_sequence_counts():
    inter = readers.read_sequences(shared("amazon-beauty", "Beauty.txt"))
    assert (inter.num_users, inter.num_items, len(inter)) == (22363, 12101, 198502)


def test_ml100k_item_titles():
    ids, titles, texts = readers.read_item_titles(shared("ml-100k", "ml-100k.item"))
    assert len(ids) == 1682 and titles["1"] == "Toy Story"
    assert "Animation" in texts["1"]


def _toy():
    users = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    items = ["1", "2", "3", "4", "5", "2", "3", "9", "7", "8"]
    times = [5, 1, 2, 3, 4, 1, 2, 3, 1, 2]  # a's first row is its latest
    return readers.build_interactions(users, items, times, None, source="toy")


def test_leave_last_out_split():
    inter = _toy()
    sp = split(inter, "leave_last_out")
    raw = lambda idx: [inter.item_ids[i - 1] for i in idx]  # noqa: E731
    a, b, c = 1, 2, 3
    assert raw(sp.train.row(a)) == ["2", "3", "4"]
    assert raw(sp.train.row(b)) == ["2"]
    assert raw(sp.train.row(c)) == ["7", "8"]  # fewer than 3: only trains
    assert sp.test.user.tolist() == [a, b] and raw(sp.test.target) == ["1", "9"]
    assert sp.valid.user.tolist() == [a, b] and raw(sp.valid.target) == ["5", "3"]
    assert raw(sp.test.hist.row(0)) == ["2", "3", "4", "5"]
    assert raw(sp.valid.hist.row(1)) == ["2"]
    assert raw(sp.history.row(a)) == ["2", "3", "4", "5", "1"]


def test_temporal_split_uses_time_cutoffs():
    inter = _toy()
    sp = split(inter, "temporal", valid_fraction=0.2, test_fraction=0.2)
    t_valid, t_test = np.quantile(inter.time, 0.6), np.quantile(inter.time, 0.8)
    train_items = sp.train.items
    assert len(train_items) == int((inter.time < t_valid).sum())
    assert len(sp.test) > 0 and len(sp.valid) > 0
    del t_test


def test_empty_split_is_a_clear_error():
    inter = readers.build_interactions(["a", "b"], ["1", "2"], [1, 2], None, source="toy")
    with pytest.raises(DataError, match="left no test examples"):
        split(inter, "leave_last_out")


def test_windows_cover_every_target_once():
    inter = _toy()
    sp = split(inter, "leave_last_out")
    for max_len in (1, 2, 3, 50):
        ds = train_dataset(sp.train, max_len=max_len, batch_size=4, epochs=1, seed=0)
        targets = []
        for batch in ds:
            for inp, tgt in zip(batch["input"], batch["target"], strict=False):
                for x, y in zip(inp, tgt, strict=False):
                    if y:
                        targets.append(y)
                        assert x > 0  # every target has its preceding item as input
        expected = sum(max(len(sp.train.row(u)) - 1, 0) for u in range(1, inter.num_users + 1))
        assert len(targets) == expected
        assert len(training_windows(sp.train, max_len)) >= 1


@pytest.mark.parametrize("max_len,stride", [(3, 1), (3, 2), (4, 4), (5, 2), (50, 7)])
def test_strided_windows_train_every_target_once_with_longer_context(max_len, stride):
    lengths = [0, 12, 3, 1, 7]  # user 0 is padding; items are unique, so an item is a position
    seqs = Sequences(np.cumsum([0, *lengths]), np.arange(1, sum(lengths) + 1, dtype=np.int32))
    trained = []
    ds = train_dataset(seqs, max_len=max_len, batch_size=4, epochs=1, seed=0, stride=stride)
    for batch in ds:
        for u, inp, tgt in zip(batch["user"], batch["input"], batch["target"], strict=True):
            assert np.all(tgt[: max_len - stride] == 0)  # context positions carry no target
            seq = seqs.row(u).tolist()
            for slot in np.flatnonzero(tgt):
                pos = seq.index(tgt[slot])
                context = [int(x) for x in inp[: slot + 1] if x]
                assert context == seq[pos - len(context) : pos]
                assert len(context) >= min(pos, max_len - stride + 1)
                trained.append(int(tgt[slot]))
    expected = [x for u in range(len(lengths)) for x in seqs.row(u)[1:].tolist()]
    assert sorted(trained) == expected  # every target exactly once


def test_stride_must_fit_the_window():
    seqs = Sequences(np.array([0, 0, 5]), np.arange(1, 6, dtype=np.int32))
    with pytest.raises(ValueError, match="stride must lie in"):
        training_windows(seqs, 3, stride=4)


def test_left_pad():
    assert left_pad(np.array([1, 2, 3]), 2).tolist() == [2, 3]
    assert left_pad(np.array([], np.int32), 3).tolist() == [0, 0, 0]


def test_pipeline_is_seeded_and_resumable():
    inter = _toy()
    sp = split(inter, "leave_last_out")
    ds = train_dataset(sp.train, max_len=2, batch_size=2, epochs=3, seed=7)
    first = [b["target"].tolist() for b in ds]
    again = [
        b["target"].tolist()
        for b in train_dataset(sp.train, max_len=2, batch_size=2, epochs=3, seed=7)
    ]
    assert first == again
    it = iter(ds.to_iter_dataset())
    head = [next(it)["target"].tolist() for _ in range(2)]
    state = it.get_state()
    it2 = iter(ds.to_iter_dataset())
    it2.set_state(state)
    assert head + [b["target"].tolist() for b in it2] == first


def _skewed_sequences(users=300, seed=0):
    """Histories of geometric lengths (mostly short, a few long), unique items per position."""
    lengths = np.random.default_rng(seed).geometric(0.15, size=users) + 1
    lengths = np.concatenate([[0], lengths])
    return Sequences(np.cumsum([0, *lengths]), np.arange(1, lengths.sum() + 1, dtype=np.int32))


def _window_contents(batches):
    """The (user, inputs, targets) of every real window, padding dropped, as a multiset."""
    out = []
    for b in batches:
        for u, inp, tgt in zip(b["user"], b["input"], b["target"], strict=True):
            if tgt.any():
                out.append((int(u), tuple(inp[inp > 0].tolist()), tuple(tgt[tgt > 0].tolist())))
    return sorted(out)


@pytest.mark.parametrize("stride", [0, 1])
def test_length_grouped_batches_hold_the_same_windows_cut_to_their_longest(stride):
    seqs, max_len, bs = _skewed_sequences(), 20, 8
    kw = dict(max_len=max_len, batch_size=bs, epochs=2, seed=3, stride=stride)
    plain = list(train_dataset(seqs, **kw))
    grouped = list(train_dataset(seqs, **kw, group_by_length=True))
    assert len(grouped) == len(plain)  # the same steps per epoch
    n = len(plain) // 2
    for epoch in (slice(None, n), slice(n, None)):  # each epoch: every window exactly once
        assert _window_contents(grouped[epoch]) == _window_contents(plain[epoch])
    widths = []
    for b in grouped:
        width = b["input"].shape[1]
        longest = int((b["input"] > 0).sum(axis=1).max())
        # the smallest power of two from 8 up that holds the longest window, at most max_len
        assert width == min(max_len, max(8, 1 << (longest - 1).bit_length()))
        assert b["target"].shape == b["input"].shape and b["user"].shape == (bs,)
        widths.append(width)
    assert np.mean(widths) < 0.7 * max_len  # grouping made most batches narrower
    # Each batch's loss_scale is its targets over the epoch's mean per batch: multiplying a
    # batch's mean loss by it weighs every target alike, as uniform batches do.
    targets = np.array([(b["target"] > 0).sum() for b in grouped[:n]])
    scale = np.array([b["loss_scale"][0] for b in grouped[:n]])
    assert all((b["loss_scale"] == b["loss_scale"][0]).all() for b in grouped)
    np.testing.assert_allclose(scale, targets / targets.mean(), rtol=1e-5)
    if stride == 0:  # whole windows: the batches differ, and are reweighed
        assert scale.min() < 0.8 < 1.2 < scale.max()
    else:  # one target per window: all alike, but the epoch's short last batch
        assert np.sum(np.abs(scale - 1) > 1e-2) <= 1
    assert [b["input"].tolist() for b in grouped[:n]] != [b["input"].tolist() for b in grouped[n:]]


def test_length_grouped_batches_split_across_processes_and_resume():
    from rectk_plugins.tasks import MaskItems

    seqs = _skewed_sequences()
    kw = dict(max_len=20, batch_size=8, epochs=2, seed=5, group_by_length=True)
    kw["transform"] = MaskItems(mask_prob=0.5, mask_id=10_000)
    whole = list(train_dataset(seqs, **kw))
    parts = [list(train_dataset(seqs, **kw, process_index=p, process_count=2)) for p in (0, 1)]
    for b, p0, p1 in zip(whole, *parts, strict=True):
        for k in b:  # the processes' shares, side by side, are the global batch
            np.testing.assert_array_equal(np.concatenate([p0[k], p1[k]]), b[k])
    it = iter(train_dataset(seqs, **kw).to_iter_dataset())
    head = [next(it) for _ in range(len(whole) // 2 + 3)]  # into the second epoch
    state = it.get_state()
    it2 = iter(train_dataset(seqs, **kw).to_iter_dataset())
    it2.set_state(state)
    for a, b in zip([*head, *it2], whole, strict=True):
        np.testing.assert_array_equal(a["input"], b["input"])
        np.testing.assert_array_equal(a["target"], b["target"])


def test_csv_dataset_with_catalogue_and_prerequisites(tmp_path):
    from rectk import registry

    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp\nA,c2,1\nA,c1,2\n")
    cat = write(
        tmp_path,
        "c.csv",
        'item_id,title,description\nc1,Intro,"Basics, gently"\nc2,Advanced,Hard\nc3,New,Never taken\n',
    )
    pre = write(tmp_path, "p.csv", "c2,c1\nc3,c2\n")
    ds = registry.datasets.get("csv")(
        path=str(inter), catalogue=str(cat), prerequisites=str(pre)
    ).load()
    assert ds.interactions.item_ids == ("c1", "c2", "c3")  # catalogue order; c3 has no interactions
    assert ds.interactions.item.tolist() == [2, 1]
    assert ds.catalogue.titles == ("Intro", "Advanced", "New")
    assert ds.catalogue.descriptions[0] == "Basics, gently"
    assert ds.catalogue.prerequisites.tolist() == [[2, 1], [3, 2]]
    with pytest.raises(DataError, match=r"c2\.csv, line 3: item 'c1' appears twice"):
        readers.read_catalogue(write(tmp_path, "c2.csv", "item_id,title\nc1,A\nc1,B\n"))


def test_cold_item_split_holds_items_out_entirely():
    from rectk_plugins.datasets.university import load_university_courses

    inter = load_university_courses(num_learners=300).interactions
    sp = split(inter, "leave_last_out", cold_items=0.2, seed=3)
    cold = set(sp.cold_items.tolist())
    assert len(cold) == round(0.2 * len(np.unique(inter.item)))
    for items in (
        sp.train.items,
        sp.valid.target,
        sp.test.target,
        sp.valid.hist.items,
        sp.test.hist.items,
    ):
        assert not cold & set(items.tolist())
    assert sp.cold is not None and len(sp.cold) > 0
    assert set(sp.cold.target.tolist()) <= cold
    assert not cold & set(sp.cold.hist.items.tolist())
    assert len(set(sp.cold.user.tolist())) == len(sp.cold)  # one target per learner
    again = split(inter, "leave_last_out", cold_items=0.2, seed=3)
    assert again.cold_items.tolist() == sp.cold_items.tolist()
    assert (
        split(inter, "leave_last_out", cold_items=0.2, seed=4).cold_items.tolist()
        != sp.cold_items.tolist()
    )
