"""Readers for interaction files: delimited text with named columns, RecBole atomic files,
and one-line-per-user sequence files. Every error names the file and line."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from rectk.data.types import Interactions
from rectk.errors import DataError


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a DataError saying which file is missing and why it is needed."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what} not found: {p.resolve()} (check the path in the recipe)")
    return p


def remap(raw: Sequence[str], vocab: Sequence[str] | None = None) -> tuple[np.ndarray, tuple]:
    """Dense 1-based indices for raw ids (0 is padding), in order of first appearance.

    With ``vocab``, the dense order is the vocabulary's, extended by ids it lacks.

    >>> remap(["b", "a", "b"])[0].tolist()
    [1, 2, 1]
    """
    index: dict[str, int] = {}
    for r in vocab or ():
        index.setdefault(r, len(index) + 1)
    out = np.empty(len(raw), np.int32)
    for n, r in enumerate(raw):
        i = index.get(r)
        if i is None:
            i = index[r] = len(index) + 1
        out[n] = i
    return out, tuple(index)


def build_interactions(
    users: Sequence[str],
    items: Sequence[str],
    times: Iterable[float] | None,
    values: Iterable[float] | None,
    *,
    source: str,
    item_vocab: Sequence[str] | None = None,
) -> Interactions:
    """Interactions from raw columns (ids remapped, padding 0 reserved)."""
    if len(users) == 0:
        raise DataError(f"{source}: no interactions found (the data set is empty)")
    user, user_ids = remap(users)
    item, item_ids = remap(items, item_vocab)
    time = (
        np.arange(len(users), dtype=np.float64)
        if times is None
        else np.asarray(list(times), np.float64)
    )
    value = None if values is None else np.asarray(list(values), np.float32)
    return Interactions(
        user=user, item=item, time=time, value=value, user_ids=user_ids, item_ids=item_ids
    )


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}: column {column!r} must be a number, got {text!r}"
        ) from None


def read_delimited(
    path: str | Path,
    *,
    user: str,
    item: str,
    time: str | None = None,
    value: str | None = None,
    delimiter: str = ",",
    item_vocab: Sequence[str] | None = None,
) -> Interactions:
    """A CSV/TSV file whose header names the columns.

    Column names may carry a RecBole type suffix (``user_id:token``); it is ignored.
    """
    p = check_file(path, "interaction file")
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{p}: the file is empty (expected a header line naming columns)")
        names = [h.split(":")[0].strip() for h in header]
        wanted = {"user": user, "item": item, "time": time, "value": value}
        cols: dict[str, int] = {}
        for role, name in wanted.items():
            if name is None:
                continue
            if name not in names:
                raise DataError(
                    f"{p}, line 1: no column {name!r} for the {role} (columns: {', '.join(names)})"
                )
            cols[role] = names.index(name)
        width = max(cols.values()) + 1
        us: list[str] = []
        its: list[str] = []
        ts: list[float] = []
        vs: list[float] = []
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < width:
                raise DataError(
                    f"{p}, line {line}: expected at least {width} columns "
                    f"({', '.join(names)}), found {len(row)}: {delimiter.join(row)!r}"
                )
            us.append(row[cols["user"]].strip())
            its.append(row[cols["item"]].strip())
            if "time" in cols:
                ts.append(_number(row[cols["time"]], p, line, time or ""))
            if "value" in cols:
                vs.append(_number(row[cols["value"]], p, line, value or ""))
    return build_interactions(
        us,
        its,
        ts if time else None,
        vs if value else None,
        source=str(p),
        item_vocab=item_vocab,
    )


def read_atomic(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time: str | None = "timestamp",
    value: str | None = "rating",
    item_vocab: Sequence[str] | None = None,
) -> Interactions:
    """A RecBole atomic ``.inter`` file (tab separated, ``name:type`` header)."""
    return read_delimited(
        path, user=user, item=item, time=time, value=value, delimiter="\t", item_vocab=item_vocab
    )


def read_sequences(path: str | Path, *, item_vocab: Sequence[str] | None = None) -> Interactions:
    """One line per user: ``user item item ...`` in time order (time = position)."""
    p = check_file(path, "sequence file")
    us: list[str] = []
    its: list[str] = []
    with p.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(
                    f"{p}, line {line_no}: expected 'user item [item ...]', "
                    f"found only {line.strip()!r}"
                )
            us.extend([parts[0]] * (len(parts) - 1))
            its.extend(parts[1:])
    return build_interactions(us, its, None, None, source=str(p), item_vocab=item_vocab)


def read_item_titles(
    path: str | Path, *, item: str = "item_id", title: str = "movie_title", delimiter: str = "\t"
) -> tuple[tuple[str, ...], dict[str, str], dict[str, str]]:
    """Item ids, titles and the remaining text fields joined, from a RecBole ``.item`` file."""
    p = check_file(path, "item file")
    ids: list[str] = []
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    with p.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0].strip() for h in next(reader, [])]
        if item not in header or title not in header:
            raise DataError(f"{p}, line 1: expected columns {item!r} and {title!r}, found {header}")
        ii, ti = header.index(item), header.index(title)
        for row in reader:
            if not row:
                continue
            if len(row) < len(header):
                raise DataError(
                    f"{p}, line {reader.line_num}: expected {len(header)} columns, found {len(row)}"
                )
            rid = row[ii].strip()
            ids.append(rid)
            titles[rid] = row[ti].strip()
            texts[rid] = "; ".join(
                f"{h}: {v.strip()}"
                for j, (h, v) in enumerate(zip(header, row, strict=False))
                if j not in (ii, ti)
            )
    return tuple(ids), titles, texts


def read_catalogue(
    path: str | Path,
    *,
    item: str = "item_id",
    title: str = "title",
    description: str = "description",
    delimiter: str = ",",
) -> tuple[tuple[str, ...], dict[str, str], dict[str, str]]:
    """A catalogue file with a header: item id, title and (optional column) description."""
    p = check_file(path, "catalogue file")
    ids: list[str] = []
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.split(":")[0].strip() for h in next(reader, [])]
        for col in (item, title):
            if col not in header:
                raise DataError(f"{p}, line 1: no column {col!r} (columns: {', '.join(header)})")
        ii, ti = header.index(item), header.index(title)
        di = header.index(description) if description in header else None
        width = max(ii, ti, di or 0) + 1
        for row in reader:
            if not row:
                continue
            if len(row) < width:
                raise DataError(
                    f"{p}, line {reader.line_num}: expected at least {width} columns, found {len(row)}"
                )
            rid = row[ii].strip()
            if rid in titles:
                raise DataError(f"{p}, line {reader.line_num}: item {rid!r} appears twice")
            ids.append(rid)
            titles[rid] = row[ti].strip()
            texts[rid] = row[di].strip() if di is not None else ""
    return tuple(ids), titles, texts
