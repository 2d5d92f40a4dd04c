"""Measuring a library's training process from outside, and comparing two libraries' results.

What a comparison script needs whatever the libraries (``vs_recbole.py`` uses it; a
``vs_pykt.py`` would too): run each library's command in a process of its own under a
``Watch`` (peak resident memory of the process tree, and the time each line of a JSONL log
arrives, so validations are timed without the library's help); turn those times into
per-epoch medians and time to a validation level; record the conditions (load average, CPU
count, platform) beside them; print one table of both libraries and their ratio; write the JSON.

Only the standard library is imported at the top, so the side that runs in another library's
virtual environment may import this module too; ``Watch`` imports psutil (the ``bench`` extra).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class Watch(threading.Thread):
    """Samples the RSS of ``pid`` and its children; stamps new lines of ``jsonl`` on arrival.

    ``peak_rss`` is the largest total seen (bytes); ``lines`` holds ``(time.time(), row)`` for
    every complete line, in order.
    """

    def __init__(self, pid: int, jsonl: Path | None = None, every: float = 0.05):
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.jsonl, self.every = jsonl, every
        self.peak_rss = 0
        self.lines: list[tuple[float, dict]] = []
        self._offset = 0
        self._halt = threading.Event()

    def _rss(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _read_lines(self) -> None:
        if self.jsonl is None or not self.jsonl.exists():
            return
        with self.jsonl.open() as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        now = time.time()
        self.lines += [(now, json.loads(ln)) for ln in complete.splitlines() if ln.strip()]

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_rss = max(self.peak_rss, self._rss())
            self._read_lines()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self._read_lines()


def launch(
    cmd: list[str], log: Path, *, cwd: Path, env=None, jsonl: Path | None = None
) -> tuple[int, float, Watch]:
    """Runs ``cmd`` to its end under a ``Watch``, its output into ``log``; returns (return
    code, start time as ``time.time()``, the stopped watch)."""
    with log.open("w") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        watch = Watch(proc.pid, jsonl)
        watch.start()
        rc = proc.wait()
        watch.stop()
    return rc, t0, watch


def create_venv(venv: Path, installs: Sequence[Sequence[str]]) -> Path:
    """Creates the virtual environment ``venv`` (its folder, ``.bench-venvs``, kept out of
    git) and runs ``pip install -q`` with each argument list of ``installs`` in turn (a CPU
    PyTorch first, so nothing later pulls a CUDA build); returns its interpreter."""
    import sys

    venv.parent.mkdir(parents=True, exist_ok=True)
    (venv.parent / ".gitignore").write_text("*\n")  # keep the venvs out of git
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for args in installs:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
    return python


def fail(name: str, log: Path) -> SystemExit:
    """The exit to raise when ``name`` failed: its log's last 30 lines."""
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    return SystemExit(f"{name} failed (log: {log}):\n{tail}")


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none): how busy the machine was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine() -> dict:
    """The conditions every report records beside its timings."""
    return {"cpu_count": os.cpu_count(), "machine": platform.platform()}


def median_gap(stamps: Sequence[float]) -> float | None:
    """Median seconds between consecutive time stamps (None for fewer than two).

    >>> median_gap([0.0, 5.0, 11.0, 15.0])
    5.0
    """
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) if gaps else None


def time_to_reach(curve: list[list[float]], level: float) -> float | None:
    """Seconds from the process start to the first validation value of at least ``level``
    (``curve``: ``[seconds, value]`` per validation, in order), or None if none reaches it.

    >>> time_to_reach([[10.0, 0.05], [20.0, 0.07], [30.0, 0.06]], 0.06)
    20.0
    """
    return next((t for t, v in curve if v >= level), None)


def add_time_to_common_level(results: dict, metric: str = "ndcg@10") -> None:
    """Sets each library's ``to_common_level_s``: its time to the lower of the two best
    validation values of ``metric``. When one library peaks early at a lower level, time to
    each one's own best compares unequal targets; this compares the same target."""
    if len(results) != 2:
        return
    level = min(r["valid_best"][metric] for r in results.values())
    for r in results.values():
        r["to_common_level_s"] = time_to_reach(r["valid_curve"], level - 1e-12)


Row = tuple[str, Callable[[dict], object], str]  # label, value from a result, format


def comparison_table(results: dict, rows: Sequence[Row]) -> tuple[str, dict]:
    """One column per library and, for two, their ratio (first / second) per row.

    Returns the table's text and the ratios by row label (rows where either value is missing
    or the second is 0 have none).

    >>> text, ratios = comparison_table(
    ...     {"a": {"s": 2.0}, "b": {"s": 8.0}}, [("s / epoch", lambda r: r["s"], "{:.1f}")]
    ... )
    >>> ratios
    {'s / epoch': 0.25}
    """
    names = list(results)
    width = max(len(r[0]) for r in rows) + 2
    ratio_header = f"{names[0]}/{names[1]}".rjust(15) if len(names) == 2 else ""
    lines = ["".ljust(width) + "".join(n.rjust(12) for n in names) + ratio_header]
    ratios = {}
    for label, get, fmt in rows:
        vals = [get(results[n]) for n in names]
        line = label.ljust(width) + "".join(
            ("-" if v is None else fmt.format(v)).rjust(12) for v in vals
        )
        if len(names) == 2 and None not in vals and vals[1]:
            ratios[label] = vals[0] / vals[1]
            line += f"{ratios[label]:15.2f}"
        lines.append(line)
    return "\n".join(lines), ratios


def load_range(results: dict) -> str:
    """The 1-minute load averages recorded in ``results`` (``load_average`` lists), as a range."""
    loads = [x for r in results.values() for x in r["load_average"]]
    return f"{min(loads):.1f}-{max(loads):.1f}"


def write_json(path: Path | None, report: dict) -> None:
    """Writes ``report`` to ``path`` (indented), creating its folder; nothing when ``path`` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def _self_test(folder: Path) -> None:
    """Watches a child that holds 64 MiB and writes three JSONL lines 0.3 s apart."""
    import sys

    jsonl = folder / "events.jsonl"
    child = (
        "import json, time\n"
        "held = bytearray(64 * 2**20)\n"
        f"with open({str(jsonl)!r}, 'w') as f:\n"
        "    for i in range(3):\n"
        "        time.sleep(0.3)\n"
        "        f.write(json.dumps({'step': i}) + '\\n')\n"
        "        f.flush()\n"
    )
    rc, t0, watch = launch(
        [sys.executable, "-c", child], folder / "child.log", cwd=folder, jsonl=jsonl
    )
    assert rc == 0, (folder / "child.log").read_text()
    stamps = [t for t, _ in watch.lines]
    assert [row["step"] for _, row in watch.lines] == [0, 1, 2], watch.lines
    assert watch.peak_rss >= 64 * 2**20, watch.peak_rss
    gap = median_gap(stamps)
    assert gap is not None and 0.1 < gap < 2.0, gap
    print(
        f"ok: 3 lines stamped {gap:.2f} s apart (median), peak RSS "
        f"{watch.peak_rss / 2**20:.0f} MiB, {stamps[-1] - t0:.2f} s to the last line"
    )


if (
    __name__ == "__main__"
):  # a check of this module alone, in a second: python benchmarks/_measure.py
    import doctest
    import tempfile

    assert doctest.testmod().failed == 0
    with tempfile.TemporaryDirectory() as tmp:
        _self_test(Path(tmp))
