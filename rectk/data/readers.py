"""Readers for interaction files: delimited text with named columns (or Parquet files with
them), RecBole atomic files, and one-line-per-user sequence files. Every error names the file
and line (a Parquet file's row).

Files are UTF-8 text (a leading byte-order mark is accepted). Bytes that are not UTF-8, a NUL
byte (a binary file), broken quoting, a row of the wrong width, an empty id and a time or value
that is missing, not a number or not finite are refused with the file, line and column.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from rectk.data.types import Interactions, ItemAttributes
from rectk.errors import DataError


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a DataError saying which file is missing and why it is needed."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what} not found: {p.resolve()} (check the path in the recipe)")
    return p


def _column(raw: bytes, offset: int) -> int:
    """1-based character column of byte ``offset`` in the line ``raw``."""
    return len(raw[:offset].decode("utf-8", "replace")) + 1


def text_lines(path: Path, what: str) -> Iterator[str]:
    """The lines of a UTF-8 text file, line ends kept; a leading byte-order mark is dropped.

    Raises:
      DataError: the file cannot be opened, or a line holds a NUL byte (a binary file) or bytes
        that are not UTF-8; the message names the file, line and column.
    """
    try:
        handle = path.open("rb")
    except OSError as err:
        raise DataError(f"cannot read the {what} {path}: {err.strerror or err}") from err
    with handle:
        for n, raw in enumerate(handle, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            nul = raw.find(b"\0")
            if nul >= 0:
                raise DataError(
                    f"{path}, line {n}, column {_column(raw, nul)}: a NUL byte, so this looks "
                    f"like a binary file (compressed, a spreadsheet?); expected the {what} as "
                    "UTF-8 text"
                )
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}, line {n}, column {_column(raw, err.start)}: bytes "
                    f"{raw[err.start : err.end + 2]!r} are not valid UTF-8 text; save the "
                    f"{what} as UTF-8 (a binary or compressed file cannot be read)"
                ) from None


def _csv_problem(err: csv.Error) -> str:
    text = str(err)
    if "field larger than field limit" in text:
        return (
            f'a field is longer than {csv.field_size_limit()} characters; usually a quote (") '
            "that is never closed makes the rest of the file one field: close it, or write a "
            'quote inside quoted text as two ("")'
        )
    if "unexpected end of data" in text:
        return (
            'the file ends inside a quoted field that starts here: a quote (") is never closed; '
            'close it, or write a quote inside quoted text as two ("")'
        )
    return f'not valid CSV ({text}); write a quote inside quoted text as two ("")'


def csv_rows(
    path: Path, what: str, *, delimiter: str = ",", quoted: bool = True
) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` for every non-blank record of a delimited UTF-8 file.

    ``line`` is the 1-based line (as an editor counts) where the record starts; a quoted field
    may span lines (``quoted=False``: quotes are plain text). Every problem is a DataError
    naming the file and line.
    """
    lines = text_lines(path, what)
    reader = (
        csv.reader(lines, delimiter=delimiter, strict=True)
        if quoted
        else csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    )
    line = 1  # first physical line of the next record
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                yield line, fields
            line = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}, line {line}: {_csv_problem(err)}") from None


def _header(
    path: Path, rows: Iterator[tuple[int, list[str]]], wanted: dict[str, str]
) -> tuple[int, list[str], dict[str, int]]:
    """The header's line, its column names (RecBole ``:type`` suffixes dropped) and the index
    of each wanted column (role -> name)."""
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the file is empty (expected a header line naming columns)")
    line, header = first
    names = [h.split(":")[0].strip() for h in header]
    cols: dict[str, int] = {}
    for role, name in wanted.items():
        if name not in names:
            raise DataError(
                f"{path}, line {line}: no column {name!r} for the {role} "
                f"(columns: {', '.join(names)}); name the right column in the recipe"
            )
        if names.count(name) > 1:
            raise DataError(f"{path}, line {line}: column {name!r} appears twice in the header")
        cols[role] = names.index(name)
    return line, names, cols


def _row_width(path: Path, line: int, row: list[str], names: list[str], need: int) -> None:
    """A DataError unless ``row`` has one field per header column."""
    if len(row) < need:
        raise DataError(
            f"{path}, line {line}: expected at least {need} columns "
            f"({', '.join(names)}), found {len(row)}: {row!r}"
        )
    if len(row) != len(names):
        raise DataError(
            f"{path}, line {line}: expected {len(names)} columns as the header names "
            f"({', '.join(names)}), found {len(row)}: {row!r}; quote a field that holds the "
            "delimiter"
        )


def _id(text: str, path: Path, line: int, column: str) -> str:
    rid = text.strip()
    if not rid:
        raise DataError(f"{path}, line {line}: column {column!r} is empty; expected an id")
    return rid


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
    if not np.isfinite(time).all():
        raise DataError(
            f"{source}: interaction {int(np.flatnonzero(~np.isfinite(time))[0]) + 1} has a "
            "time that is not a finite number"
        )
    value = None if values is None else np.asarray(list(values), np.float32)
    return Interactions(
        user=user, item=item, time=time, value=value, user_ids=user_ids, item_ids=item_ids
    )


def _number(text: str, path: Path, line: int, column: str) -> float:
    if not text.strip():
        raise DataError(
            f"{path}, line {line}: column {column!r} is empty; expected a number "
            "(fill it in or remove the row)"
        )
    try:
        x = float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}: column {column!r} must be a number, got {text!r}"
        ) from None
    if not math.isfinite(x):
        raise DataError(
            f"{path}, line {line}: column {column!r} must be a finite number, got {text!r} "
            "(fix or remove the row)"
        )
    return x


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
    """A CSV/TSV file whose header names the columns, or a Parquet file (``.parquet``: see
    ``read_parquet``; ``delimiter`` does not apply).

    Column names may carry a RecBole type suffix (``user_id:token``); it is ignored. Every row
    has one field per header column; ids are non-empty; time and value are finite numbers.
    Without a time column, file order is the time.
    """
    if Path(path).suffix.lower() == PARQUET:
        return read_parquet(
            path, user=user, item=item, time=time, value=value, item_vocab=item_vocab
        )
    p = check_file(path, "interaction file")
    rows = csv_rows(p, "interaction file", delimiter=delimiter)
    wanted = {"user": user, "item": item, "time": time, "value": value}
    _, names, cols = _header(p, rows, {r: n for r, n in wanted.items() if n is not None})
    need = max(cols.values()) + 1
    us: list[str] = []
    its: list[str] = []
    ts: list[float] = []
    vs: list[float] = []
    for line, row in rows:
        _row_width(p, line, row, names, need)
        us.append(_id(row[cols["user"]], p, line, user))
        its.append(_id(row[cols["item"]], p, line, item))
        if time is not None:
            ts.append(_number(row[cols["time"]], p, line, time))
        if value is not None:
            vs.append(_number(row[cols["value"]], p, line, value))
    return build_interactions(
        us,
        its,
        ts if time else None,
        vs if value else None,
        source=str(p),
        item_vocab=item_vocab,
    )


PARQUET = ".parquet"  # the suffix that makes ``read_delimited`` read a Parquet file


def read_parquet(
    path: str | Path,
    *,
    user: str,
    item: str,
    time: str | None = None,
    value: str | None = None,
    item_vocab: Sequence[str] | None = None,
) -> Interactions:
    """A Parquet file, with ``read_delimited``'s columns and checks.

    Ids are text or integers (read as their text); time and value are numbers, a time may be a
    timestamp (read as seconds since 1970). A missing column names the file and the columns it
    has; a null or empty id, or a missing or non-finite number, names the row (counted from 1,
    as lines below a header are). Without a time column, row order is the time.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = check_file(path, "interaction file")
    wanted = {
        role: name
        for role, name in {"user": user, "item": item, "time": time, "value": value}.items()
        if name is not None
    }
    try:
        handle = pq.ParquetFile(p)
        names = handle.schema_arrow.names
        for role, name in wanted.items():
            if name not in names:
                raise DataError(
                    f"{p}: no column {name!r} for the {role} (columns: {', '.join(names)}); "
                    "name the right column in the recipe"
                )
        table = handle.read(columns=list(dict.fromkeys(wanted.values())))
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            f"{p}: not a readable Parquet file ({err}); write it with pandas' to_parquet or "
            "pyarrow, or give a CSV file"
        ) from None
    return build_interactions(
        _parquet_ids(table.column(user), p, user),
        _parquet_ids(table.column(item), p, item),
        None if time is None else _parquet_numbers(table.column(time), p, time),
        None if value is None else _parquet_numbers(table.column(value), p, value),
        source=str(p),
        item_vocab=item_vocab,
    )


def _first(mask) -> int:
    """The row (from 1) of the first true value of a boolean Arrow array."""
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py()) + 1


def _parquet_ids(col, path: Path, name: str) -> list[str]:
    """A Parquet column of ids as text; null or empty ids are a DataError naming the row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    ):
        raise DataError(
            f"{path}: column {name!r} holds {kind} values; expected ids as text or integers"
        )
    if col.null_count:
        raise DataError(
            f"{path}, row {_first(pc.is_null(col))}: column {name!r} is null; expected an id"
        )
    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():
        raise DataError(f"{path}, row {_first(empty)}: column {name!r} is empty; expected an id")
    return text.to_pylist()


def _parquet_numbers(col, path: Path, name: str) -> np.ndarray:
    """A Parquet column of numbers (a timestamp: seconds) as float64; a null or a non-finite
    number is a DataError naming the row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise DataError(
            f"{path}, row {_first(pc.is_null(col))}: column {name!r} is empty; expected a "
            "number (fill it in or remove the row)"
        )
    if pa.types.is_timestamp(col.type):
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[col.type.unit]
        return pc.cast(col, pa.int64()).to_numpy().astype(np.float64) / per_second
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"{path}: column {name!r} holds {col.type} values; expected numbers")
    x = col.to_numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise DataError(
            f"{path}, row {bad[0] + 1}: column {name!r} must be a finite number, got "
            f"{float(x[bad[0]])!r} (fix or remove the row)"
        )
    return x


def read_ids(path: str | Path, what: str, *, column: str = "user_id") -> list[str]:
    """Ids from a file: one a line, or a CSV (or Parquet) file with a ``column`` column.

    A first line that names ``column`` among comma-separated fields makes the file a CSV;
    otherwise each non-blank line, stripped, is one id (commas included). Every problem is a
    DataError naming the file and line.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "u.txt"
    >>> _ = f.write_text("learner_0001\\n\\n learner_0002\\n")
    >>> read_ids(f, "learner file")
    ['learner_0001', 'learner_0002']
    """
    p = check_file(path, what)
    if p.suffix.lower() == PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(p)
            if column not in handle.schema_arrow.names:
                raise DataError(
                    f"{p}: no column {column!r} (columns: {', '.join(handle.schema_arrow.names)})"
                )
            col = handle.read(columns=[column]).column(column)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{p}: not a readable Parquet file ({err})") from None
        return _parquet_ids(col, p, column)
    lines = [(n, line.strip()) for n, line in enumerate(text_lines(p, what), 1) if line.strip()]
    if not lines:
        raise DataError(f"{p}: the file is empty (expected one id a line)")
    if column not in [f.strip() for f in lines[0][1].split(",")]:
        return [line for _, line in lines]
    rows = csv_rows(p, what)
    _, names, cols = _header(p, rows, {"id": column})
    ids = []
    for line, row in rows:
        _row_width(p, line, row, names, cols["id"] + 1)
        ids.append(_id(row[cols["id"]], p, line, column))
    if not ids:
        raise DataError(f"{p}: no ids below the header")
    return ids


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
    for line_no, line in enumerate(text_lines(p, "sequence file"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(
                f"{p}, line {line_no}: expected 'user item [item ...]', found only {line.strip()!r}"
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
    first_line: dict[str, int] = {}
    rows = csv_rows(p, "item file", delimiter=delimiter, quoted=False)
    _, header, cols = _header(p, rows, {"item id": item, "title": title})
    ii, ti = cols["item id"], cols["title"]
    for line, row in rows:
        _row_width(p, line, row, header, max(ii, ti) + 1)
        rid = _id(row[ii], p, line, item)
        if rid in first_line:
            raise DataError(
                f"{p}, line {line}: item {rid!r} appears twice (first on line "
                f"{first_line[rid]}); list each item once"
            )
        first_line[rid] = line
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
) -> tuple[tuple[str, ...], dict[str, str], dict[str, str], tuple[str, ...]]:
    """A catalogue file with a header: item id, title and (optional column) description.

    Every row has one field per header column and a non-empty id. An item listed again with
    the same title and description is kept once (the returned notes say how many repeats were
    dropped); listed again with other text, it is refused.

    Returns:
      ``(ids, titles, texts, notes)``: ids in file order, title and description per id, and
      what reading skipped (one line each).
    """
    p = check_file(path, "catalogue file")
    ids: list[str] = []
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    repeats: list[int] = []
    rows = csv_rows(p, "catalogue file", delimiter=delimiter)
    _, header, cols = _header(p, rows, {"item id": item, "title": title})
    ii, ti = cols["item id"], cols["title"]
    di = header.index(description) if description in header else None
    for line, row in rows:
        _row_width(p, line, row, header, max(ii, ti, di or 0) + 1)
        rid = _id(row[ii], p, line, item)
        text = row[di].strip() if di is not None else ""
        if rid in first_line:
            if (titles[rid], texts[rid]) != (row[ti].strip(), text):
                raise DataError(
                    f"{p}, line {line}: item {rid!r} appears twice (first on line "
                    f"{first_line[rid]}) with another title or description; list each item once"
                )
            repeats.append(line)
            continue
        first_line[rid] = line
        ids.append(rid)
        titles[rid] = row[ti].strip()
        texts[rid] = text
    if not ids:
        raise DataError(f"{p}: no items found below the header; expected one item a row")
    notes: tuple[str, ...] = ()
    if repeats:
        lines = ", ".join(map(str, repeats[:5])) + (", ..." if len(repeats) > 5 else "")
        notes = (f"{p}: dropped {len(repeats)} repeated catalogue row(s) (lines {lines})",)
    return tuple(ids), titles, texts, notes


def read_item_attributes(
    path: str | Path,
    item_ids: Sequence[str],
    *,
    item: str = "item_id",
    group: str = "",
    topics: str = "",
    delimiter: str = ",",
) -> ItemAttributes:
    """Providers and topics of ``item_ids`` from columns of a catalogue file: ``group`` names
    each item's provider; ``topics`` lists its topic labels separated by ``;`` (its topic
    distribution is uniform over them). Items the file lacks, or with an empty cell, get no
    provider (``""``) and no topics (zeros).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "c.csv"
    >>> _ = f.write_text("item_id,school,tags\\na,mit,ml;math\\nb,cmu,ml\\n")
    >>> a = read_item_attributes(f, ["a", "b", "c"], group="school", topics="tags")
    >>> a.groups, a.topics.tolist()
    (('mit', 'cmu', ''), [[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]])
    """
    p = check_file(path, "catalogue file")
    rows = csv_rows(p, "catalogue file", delimiter=delimiter)
    wanted = {
        "item id": item,
        **({"group": group} if group else {}),
        **({"topics": topics} if topics else {}),
    }
    _, header, cols = _header(p, rows, wanted)
    index = {rid: i for i, rid in enumerate(item_ids)}
    groups = [""] * len(item_ids)
    labels: list[list[str]] = [[] for _ in item_ids]
    for line, row in rows:
        _row_width(p, line, row, header, max(cols.values()) + 1)
        i = index.get(row[cols["item id"]].strip())
        if i is None:
            continue
        if group:
            groups[i] = row[cols["group"]].strip()
        if topics:
            labels[i] = [t.strip() for t in row[cols["topics"]].split(";") if t.strip()]
    topic_vt = None
    if topics:
        vocab = {t: j for j, t in enumerate(dict.fromkeys(t for ts in labels for t in ts))}
        if not vocab:
            raise DataError(f"{p}: column {topics!r} names no topic for any item")
        topic_vt = np.zeros((len(item_ids), len(vocab)), np.float32)
        for i, ts in enumerate(labels):
            for t in ts:
                topic_vt[i, vocab[t]] += 1.0 / len(ts)
    if group and not any(groups):
        raise DataError(f"{p}: column {group!r} names no provider for any item")
    return ItemAttributes(groups=tuple(groups) if group else (), topics=topic_vt)
