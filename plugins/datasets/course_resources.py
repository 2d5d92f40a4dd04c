"""LectureBank resources for the bundled courses: the work behind ``rectk resources``.

The resource index embeds every LectureBank title with the frozen pretrained text tower once,
then keeps it in the user's cache folder (``$XDG_CACHE_HOME/rectk``, else ``~/.cache/rectk``),
keyed by the titles and the model folder. A course's query is its title and description from
the bundled catalogue; several courses (a learner's history) give the mean of their
embeddings.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from pathlib import Path

from rectk.data.types import Catalogue
from rectk.errors import RectkError
from rectk.resources import Embed, ResourceIndex

from .lecturebank import LectureBank, read_lecturebank

__all__ = ["bundled_catalogue", "course_texts", "lecturebank_index", "recommend_resources"]


def bundled_catalogue() -> Catalogue:
    """The bundled university course catalogue (titles, descriptions, prerequisites)."""
    from .university import read_course_catalogue

    folder = importlib.resources.files("rectk_plugins.datasets.university").joinpath("data")
    with (
        importlib.resources.as_file(folder.joinpath("cs_courses.csv")) as courses,
        importlib.resources.as_file(folder.joinpath("cs_edges.csv")) as edges,
    ):
        return read_course_catalogue(courses, edges)


def course_texts(catalogue: Catalogue, course_ids: Sequence[str]) -> list[str]:
    """The title and description of each course id.

    Raises:
      RectkError: an id is not in the catalogue (the message lists a few that are).
    """
    row = {c: i + 1 for i, c in enumerate(catalogue.item_ids)}
    unknown = [c for c in course_ids if c not in row]
    if unknown:
        raise RectkError(
            f"unknown course id(s) {', '.join(unknown)}: not in the bundled catalogue "
            f"(e.g. {', '.join(catalogue.item_ids[:3])})"
        )
    return [catalogue.text(row[c]) for c in course_ids]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rectk"


def lecturebank_index(lb: LectureBank, embed: Embed, *, model_key: str) -> ResourceIndex:
    """The resource index of ``lb``'s titles under ``embed``, from the cache when it is there."""
    h = hashlib.sha256(model_key.encode())
    h.update("\x1f".join(lb.titles).encode())
    return ResourceIndex.cached(
        _cache_dir() / f"lecturebank-{h.hexdigest()[:16]}.npz", lb.resource_ids, lb.titles, embed
    )


def recommend_resources(
    folder: str | Path,
    *,
    courses: Sequence[str] = (),
    topic: str = "",
    text: str = "",
    k: int = 10,
    model_dir: str | Path | None = None,
) -> list[dict]:
    """LectureBank resources for bundled courses (one, or a history), a topic or a text.

    Exactly one of ``courses``, ``topic`` and ``text`` is given. Each resource comes as
    ``{"id", "title", "score", "topic", "url"}``.
    """
    from rectk_plugins.text import default_model_dir
    from rectk_plugins.text.embedder import text_embedder

    if sum(map(bool, (courses, topic, text))) != 1:
        raise RectkError("give exactly one of a course list, a topic or a text")
    if k < 1:
        raise RectkError(f"k must be at least 1, got {k}")
    lb = read_lecturebank(folder)
    if courses:
        texts = course_texts(bundled_catalogue(), courses)
    elif topic:  # a taxonomy topic's name gets its parent's for context, as in evaluation
        named = {n.lower(): t for t, n in enumerate(lb.topic_names)}
        t = named.get(topic.strip().lower())
        texts = [lb.topic_text(t) if t is not None else topic]
    else:
        texts = [text]
    model = Path(model_dir) if model_dir else default_model_dir()
    embed = text_embedder(model)
    index = lecturebank_index(lb, embed, model_key=str(model.resolve()))
    recs = index.for_history(embed, texts, k=k)
    row = {r: i for i, r in enumerate(lb.resource_ids)}
    for r in recs:
        t = int(lb.topic_r[row[r["id"]]])
        r["topic"] = lb.topic_names[t] if t >= 0 else ""
        r["url"] = lb.urls[row[r["id"]]]
    return recs
