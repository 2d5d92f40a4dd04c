"""Run metrics: ``metrics.jsonl`` (one JSON object per line) and TensorBoard event files.

TensorBoard tags are the ``metrics.jsonl`` keys as they are (``valid/ndcg@10``): the event
files are written directly, since tensorboardX's ``add_scalar`` would rename ``@`` to ``_``.
In a multi-host run only process 0 writes (``primary``); the others' calls do nothing.
"""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, *, tensorboard: bool = True, primary: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.primary = primary
        self._tb = None
        if tensorboard and primary:
            from tensorboardX import FileWriter

            self._tb = FileWriter(str(self.run_dir / "tensorboard"))

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.primary:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self._tb is not None:
            from tensorboardX.proto.summary_pb2 import Summary

            tags = [Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
            self._tb.add_summary(Summary(value=tags), step)
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after ``step`` (they will be logged again on resume)."""
        if not (self.primary and self.path.exists()):
            return
        keep = [
            ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step
        ]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln]

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
