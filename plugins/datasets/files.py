"""Interaction files on disk: delimited text, RecBole atomic files, sequence files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rectk import registry
from rectk.contracts import DatasetPlugin
from rectk.data import readers
from rectk.data.types import Catalogue, Dataset, Interactions
from rectk.recipe import registered

_SHOWN = 5  # ids quoted in a note


def _catalogue(
    inter: Interactions,
    titles: dict[str, str],
    texts: dict[str, str],
    edges: np.ndarray,
    item_file: str | Path,
) -> tuple[Catalogue, tuple[str, ...]]:
    """The catalogue aligned with ``inter``'s items, and a note on items it lacks."""
    missing = [i for i in inter.item_ids if i not in titles]
    notes: tuple[str, ...] = ()
    if missing:
        more = ", ..." if len(missing) > _SHOWN else ""
        notes = (
            f"{item_file}: {len(missing)} item(s) of the interactions are not listed, so have "
            f"no title or description ({', '.join(map(repr, missing[:_SHOWN]))}{more})",
        )
    catalogue = Catalogue(
        item_ids=inter.item_ids,
        titles=tuple(titles.get(i, "") for i in inter.item_ids),
        descriptions=tuple(texts.get(i, "") for i in inter.item_ids),
        prerequisites=edges,
    )
    return catalogue, notes


@registered(registry.datasets, "csv")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DelimitedFile(DatasetPlugin):
    """A CSV/TSV file with a header naming its columns (``time``/``value`` may be ""), or a
    Parquet file with those columns (by its suffix, ``.parquet``; ``delimiter`` does not apply).

    ``catalogue``: optional CSV with a header (``item_id``, ``title``, ``description``
    columns); every catalogue item gets an id, including items nobody interacted with.
    ``prerequisites``: optional CSV without header, ``course,prerequisite`` per line; it needs
    ``catalogue``. ``group`` / ``topics``: catalogue columns holding each item's provider and
    its ``;``-separated topic labels, the side information rerankers read. Edges naming courses that are in neither file are skipped, with a note.
    """

    path: str
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    value: str = ""
    delimiter: str = ","
    catalogue: str = ""
    prerequisites: str = ""
    group: str = ""  # a catalogue column naming each item's provider (for rerankers)
    topics: str = ""  # a catalogue column of ';'-separated topic labels (for rerankers)

    def __post_init__(self):
        if self.prerequisites and not self.catalogue:
            raise ValueError(
                "data.prerequisites must come with data.catalogue: the edges name courses by "
                "the catalogue's item_id (set data.catalogue, or remove data.prerequisites)"
            )
        for key in ("group", "topics"):
            if getattr(self, key) and not self.catalogue:
                raise ValueError(
                    f"data.{key} must come with data.catalogue: it names a column of the "
                    f"catalogue file (set data.catalogue, or remove data.{key})"
                )

    def load(self) -> Dataset:
        ids: tuple[str, ...] | None = None
        titles: dict[str, str] = {}
        texts: dict[str, str] = {}
        notes: tuple[str, ...] = ()
        if self.catalogue:
            ids, titles, texts, notes = readers.read_catalogue(self.catalogue)
        inter = readers.read_delimited(
            self.path,
            user=self.user,
            item=self.item,
            time=self.time or None,
            value=self.value or None,
            delimiter=self.delimiter,
            item_vocab=ids,
        )
        catalogue = None
        if ids is not None:
            from .university.catalogue_io import read_prerequisites

            edges = np.zeros((0, 2), np.int32)
            if self.prerequisites:
                read = read_prerequisites(self.prerequisites, inter.item_ids)
                edges = read.pairs
                notes += read.notes(self.prerequisites, self.catalogue)
            catalogue, missing = _catalogue(inter, titles, texts, edges, self.catalogue)
            notes += missing
        attributes = None
        if self.group or self.topics:
            attributes = readers.read_item_attributes(
                self.catalogue,
                inter.item_ids,
                group=self.group,
                topics=self.topics,
            )
        return Dataset(
            name=Path(self.path).stem,
            interactions=inter,
            catalogue=catalogue,
            attributes=attributes,
            source=self.path,
            notes=notes,
        )

    def provides(self) -> frozenset[str]:
        have = {"prerequisites": self.prerequisites, "groups": self.group, "topics": self.topics}
        return frozenset(k for k, v in have.items() if v)


@registered(registry.datasets, "atomic")
@dataclasses.dataclass(frozen=True, kw_only=True)
class AtomicFile(DatasetPlugin):
    """A RecBole atomic ``.inter`` file; titles come from the ``.item`` file beside it, if any.

    ``min_rating``: keep interactions whose rating is at least this (0 = keep all).
    """

    path: str
    item_file: str = ""  # "" = the .item file beside ``path`` when present
    title_field: str = "movie_title"
    time: str = "timestamp"
    value: str = "rating"

    def load(self) -> Dataset:
        inter = readers.read_atomic(self.path, time=self.time or None, value=self.value or None)
        item_path = Path(self.item_file) if self.item_file else Path(self.path).with_suffix(".item")
        catalogue = None
        notes: tuple[str, ...] = ()
        if self.item_file or item_path.is_file():
            _, titles, texts = readers.read_item_titles(item_path, title=self.title_field)
            no_edges = np.zeros((0, 2), np.int32)
            catalogue, notes = _catalogue(inter, titles, texts, no_edges, item_path)
        return Dataset(
            name=Path(self.path).stem,
            interactions=inter,
            catalogue=catalogue,
            source=self.path,
            notes=notes,
        )


@registered(registry.datasets, "sequences")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceFile(DatasetPlugin):
    """One line per user, ``user item item ...`` in time order (S3Rec/ICLRec format)."""

    path: str

    def load(self) -> Dataset:
        inter = readers.read_sequences(self.path)
        return Dataset(name=Path(self.path).stem, interactions=inter, source=self.path)
