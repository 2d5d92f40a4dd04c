"""rectk from Python: train on a pandas data frame, then recommend for many learners at once.

Offline, on the learners bundled with rectk (about a minute on 2 CPU cores); from the
repository root:

    python docs/examples/python_api.py [--run-dir runs] [--epochs 2]

docs/python-api.md explains each call.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from rectk import api, registry


def bundled(num_learners: int, folder: Path) -> tuple[pd.DataFrame, Path]:
    """The bundled course catalogue's simulated learners as a data frame (one row per course
    taken: ``user_id``, ``item_id``, ``timestamp``; any data frame of these columns will do),
    and the catalogue's titles as a CSV file (``item_id``, ``title``) in ``folder``."""
    data = registry.datasets.get("university_courses")(num_learners=num_learners).load()
    inter, cat = data.interactions, data.catalogue
    frame = pd.DataFrame(
        {
            "user_id": np.asarray(inter.user_ids, object)[inter.user - 1],
            "item_id": np.asarray(inter.item_ids, object)[inter.item - 1],
            "timestamp": inter.time,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    titles = folder / "course_titles.csv"
    pd.DataFrame({"item_id": cat.item_ids, "title": cat.titles}).to_csv(titles, index=False)
    return frame, titles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default="runs", help="the folder for the run (default runs)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--learners", type=int, default=1000, help="learners (default 1000)")
    args = p.parse_args()

    frame, titles = bundled(args.learners, Path(args.run_dir))
    print(f"{len(frame)} interactions of {frame.user_id.nunique()} learners")

    # Train the quickstart recipe (a dict of TOML keys; a file path or a Recipe works too) on
    # the data frame, which is saved in the run directory as data.parquet. The data table is
    # then the `csv` data set's, so its keys can be set too: here the titles' file.
    run = api.train(
        {"base": "rectk:quickstart", "name": "python_api"},
        overrides={"train.epochs": args.epochs, "data.catalogue": str(titles.resolve())},
        data=frame,
        run_dir=args.run_dir,
    )
    print(f"\nrun directory {run.path}; test metrics:")
    print(run.evaluate()[["recall@10", "ndcg@10"]].round(4))

    # Top 5 for three known learners, and for a new learner given by the courses taken.
    recs = run.recommend(["learner_0001", "learner_0002"], k=5)
    print("\n" + recs.to_string(index=False, max_colwidth=40))
    taken = frame[frame.user_id == "learner_0001"].item_id.tolist()[:3]
    print(f"\na new learner who took {', '.join(taken)}:")
    print(run.recommend(histories=[taken], k=5).to_string(index=False, max_colwidth=40))

    # Every learner's top 10, in batches of 256, to a Parquet file (written whole or not at
    # all); `rectk recommend --run DIR --users FILE --out recs.parquet` does the same.
    table = run.recommend(k=10, batch_size=256)
    out = api.write_table(table, run.path / "recs.parquet")
    print(f"\n{len(table)} rows ({table.learner.nunique()} learners) written to {out}")

    # A finished run opens again from its directory alone.
    again = api.open_run(run.path)
    assert again.recommend("learner_0001", k=5).equals(run.recommend("learner_0001", k=5))


if __name__ == "__main__":
    main()
