"""Results store at scale (issue 18): the compacted layout against the append-only one, side by side.

Synthetic rows shaped like ``tests/fixtures/sweep_results.parquet`` (its 81 columns and values, step and
metric varied), written through :class:`ablate.results.TrialWriter`. Prints, for each size:

- append latency of one report (median, p99, max) with compaction every ``COMPACT_EVERY`` appends, and
  without (summaries still written: the layout before this change wrote only the row file);
- time, CPU time (all threads: on a shared machine the steadier number) and peak memory (RSS of a
  fresh process: imports included, the baseline of one that only imports is printed) of
  ``read_rows`` (all columns, the two a learning curve plots, and what ``ablate figures`` reads:
  bookkeeping, metrics and the swept keys), ``trial_status``, ``collect`` and
  ``ablate status`` (the CLI's own call; the process's wall time adds start-up and imports);
- requests per read on a counting in-memory fsspec filesystem (``LIST``: one per 1000 keys listed, as
  an object store pages a prefix listing; ``HEAD``: ``info`` calls; ``GET``: files opened for reading,
  where an object store does 1-3 ranged GETs per Parquet file: footer, then the column chunks).

The compacted store is the state of a sweep in progress: 90% of the trials finished (one compacted file
each), 10% running with 16 appends since their last compaction. The append-only layout is written for
sizes up to ``--old-max`` rows (it costs ~4 ms per file to read; larger is minutes per read).

    python benchmarks/store_scale.py                              # 10^4 and 10^5 rows, ~10 minutes
    python benchmarks/store_scale.py --sizes 2000 --old-max 2000  # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate import results  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "sweep_results.parquet"
METRIC = "w2_1step"
PLOTTED = ["step", METRIC]  # what a learning-curve figure reads
#: the fixture's swept keys: with bookkeeping and metrics, what `ablate figures` reads (figures.frame.plotted_columns)
SWEPT = ["coupling.name", "weighting.name"]
_TYPES = {"int64": int, "double": float, "bool": bool, "string": str, "large_string": str, "null": float}


def template() -> tuple[dict[str, type], list[dict]]:
    """The fixture's columns (writer columns aside) with their types, and its rows as dicts."""
    table = pq.read_table(FIXTURE)
    columns = {f.name: _TYPES[str(f.type)] for f in table.schema if f.name not in results.WRITER_COLUMNS}
    rows = [{k: v for k, v in row.items() if k in columns} for row in table.to_pylist()]
    return columns, rows


def make_rows(rows: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for i in range(n):
        row = dict(rows[i % len(rows)])
        row.update(step=i * 100, status="running", loss=float(rng.random()))
        row[METRIC] = float(rng.random()) if i % 4 == 0 else None  # evaluations every 4th report
        out.append(row)
    return out


def write_store(root: str, trials: int, per_trial: int, columns: dict, rows: list[dict], compacted: bool) -> None:
    """``trials`` trials of ``per_trial`` reports. Compacted: 90% finished (bulk appends, then closed:
    the same files as per-report appends and compactions), 10% running with their last 16 reports as
    single appends not compacted yet. Append-only: one file per report, never compacted, no summaries
    (the layout of sweeps written before compaction)."""
    rng = np.random.default_rng(0)
    every = results.COMPACT_EVERY
    if not compacted:
        results.COMPACT_EVERY = 10**9
    try:
        for t in range(trials):
            writer = results.TrialWriter(root, f"t{t:05d}", columns=columns, metric=METRIC, mode="min")
            writer.begin_attempt(None)
            writer.set_status("running", step=0)
            mine = make_rows(rows, per_trial, rng)
            running = compacted and t % 10 == 9
            if compacted:
                split = per_trial - 16 if running else per_trial
                writer.append(mine[:split])
                writer.close()
                for row in mine[split:]:
                    writer.append([row])
            else:
                for row in mine:
                    writer.append([row])
            if not running:
                writer.set_status("completed", step=mine[-1]["step"])
        if not compacted:  # the layout before compaction had no summaries either
            for summary in Path(root, "metrics").glob("*/_summary.json"):
                summary.unlink()
        Path(root, "sweep.json").write_text(json.dumps({"name": "bench", "table": {
            "metric": METRIC, "mode": "min", "iterations": per_trial * 100, "arms": {}}, "swept": SWEPT}))
    finally:
        results.COMPACT_EVERY = every


def append_latency(columns: dict, rows: list[dict], n: int, compacted: bool) -> dict:
    every = results.COMPACT_EVERY
    if not compacted:
        results.COMPACT_EVERY = 10**9
    try:
        with tempfile.TemporaryDirectory() as tmp:
            writer = results.TrialWriter(tmp, "t", columns=columns, metric=METRIC)
            writer.begin_attempt(None)
            times, cpu = [], []
            for row in make_rows(rows, n, np.random.default_rng(1)):
                start, cpu_start = time.perf_counter(), time.process_time()
                writer.append([row])
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            writer.close()
    finally:
        results.COMPACT_EVERY = every
    ms = sorted(1000 * t for t in times)
    return {"median_ms": statistics.median(ms), "p99_ms": ms[int(0.99 * (len(ms) - 1))], "max_ms": ms[-1],
            "cpu_median_ms": statistics.median(1000 * t for t in cpu), "cpu_mean_ms": 1000 * statistics.mean(cpu)}


# --------------------------------------------------------------------------- one op, fresh process
def run_op(op: str, root: str) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    if op == "read_rows":
        n = len(results.read_rows(root))
    elif op == "read_rows_plotted":
        n = len(results.read_rows(root, columns=PLOTTED))
    elif op == "read_rows_report":
        from ablate.figures.frame import plotted_columns

        n = len(results.read_rows(root, columns=plotted_columns(root)))
    elif op == "trial_status":
        n = len(results.trial_status(root))
    elif op == "ablate status":
        import contextlib
        import io

        from ablate.cli import main as cli
        with contextlib.redirect_stdout(io.StringIO()) as table:
            if cli(["status", root]):
                raise SystemExit("ablate status failed")
        n = len(table.getvalue().splitlines()) - 2
    elif op == "collect":
        out = results.collect(root, out=os.path.join(tempfile.mkdtemp(), "results.parquet"))
        n = pq.read_metadata(out).num_rows
    else:
        n = 0
    return {"s": time.perf_counter() - start, "cpu": time.process_time() - cpu, "n": n, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def measure(op: str, root: str) -> dict:
    """``op`` in a fresh interpreter: its own time and peak RSS, and the process's wall time (start-up
    and imports included: what a user of ``ablate status`` waits)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--op", op, "--root", root], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return {**json.loads(done.stdout.splitlines()[-1]), "wall": time.perf_counter() - start}


# ------------------------------------------------------------------------------- request counting
def counting_filesystem():
    from fsspec.implementations.memory import MemoryFileSystem

    class Counting(MemoryFileSystem):
        """An in-memory fsspec filesystem counting requests as an object store would bill them."""

        store, pseudo_dirs, counts = {}, [""], Counter()
        _listing = False

        def find(self, path, *args, **kwargs):
            Counting._listing = True
            try:
                found = super().find(path, *args, **kwargs)
            finally:
                Counting._listing = False
            self.counts["LIST"] += max(1, -(-len(found) // 1000))
            return found

        def ls(self, path, *args, **kwargs):
            if not Counting._listing:
                self.counts["LIST"] += 1
            return super().ls(path, *args, **kwargs)

        def info(self, path, **kwargs):
            if not Counting._listing:
                self.counts["HEAD"] += 1
            return super().info(path, **kwargs)

        def _open(self, path, mode="rb", **kwargs):
            self.counts["GET" if "r" in mode else "PUT"] += 1
            return super()._open(path, mode, **kwargs)

    return Counting(), pafs.PyFileSystem(pafs.FSSpecHandler(Counting()))


def requests(root: str) -> dict:
    """Requests of each read, the store copied into a counting in-memory filesystem."""
    memory, fs = counting_filesystem()
    local = pafs.LocalFileSystem()
    for info in local.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with open(info.path, "rb") as source:
                memory.pipe_file("/store" + info.path[len(root):], source.read())
    out = {}
    for name, call in (("read_rows", lambda: results.read_rows("/store", fs)),
                       ("read_rows_plotted", lambda: results.read_rows("/store", fs, columns=PLOTTED)),
                       ("trial_status", lambda: results.trial_status("/store", fs)),
                       ("status_table", lambda: results.trial_summaries("/store", fs, METRIC, "min"))):
        memory.counts.clear()
        call()
        out[name] = dict(memory.counts)
    memory.store.clear()
    return out


def files_and_bytes(root: str) -> tuple[int, int]:
    paths = [p for p in Path(root, "metrics").rglob("*") if p.is_file()]
    return len(paths), sum(p.stat().st_size for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--per-trial", type=int, default=100, help="reports per trial (trials = size / this)")
    parser.add_argument("--old-max", type=int, default=10_000, help="largest size written append-only too")
    parser.add_argument("--appends", type=int, default=1000, help="appends timed for the latency")
    parser.add_argument("--op"), parser.add_argument("--root")
    parser.add_argument("--appends-only", action="store_true", help="only the append latency")
    args = parser.parse_args()
    if args.op:
        print(json.dumps(run_op(args.op, args.root)))
        return

    print(f"store_scale: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.0f}), python {platform.python_version()}, pyarrow {pa.__version__}; "
          f"compaction every {results.COMPACT_EVERY} appends")
    columns, rows = template()
    print(f"rows: {len(columns) + 2} columns (tests/fixtures/sweep_results.parquet), {args.per_trial} reports "
          f"per trial")
    for compacted in (False, True):
        lat = append_latency(columns, rows, args.appends, compacted)
        print(f"append ({'compacted' if compacted else 'no compaction'}, {args.appends} appends): "
              f"median {lat['median_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms  max {lat['max_ms']:.1f} ms; "
              f"CPU median {lat['cpu_median_ms']:.1f} ms, mean {lat['cpu_mean_ms']:.1f} ms")
    if args.appends_only:
        return
    base = measure("none", ".")
    print(f"baseline process (python + ablate.results imports): {base['wall']:.2f} s, peak RSS "
          f"{base['rss_mb']:.0f} MB")
    ops = ["read_rows", "read_rows_plotted", "read_rows_report", "trial_status", "collect", "ablate status"]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for size in args.sizes:
            trials = size // args.per_trial
            for compacted in (False, True):
                if not compacted and size > args.old_max:
                    continue
                layout = "compacted" if compacted else "append-only"
                root = os.path.join(tmp, f"{layout}-{size}")
                start = time.perf_counter()
                write_store(root, trials, args.per_trial, columns, rows, compacted)
                files, size_bytes = files_and_bytes(root)
                print(f"\n== {size} rows, {trials} trials, {layout}: {files} files, {size_bytes / 1e6:.1f} MB "
                      f"(written in {time.perf_counter() - start:.0f} s)")
                for op in ops:
                    m = measure(op, root)
                    print(f"  {op:<18} {m['s']:7.2f} s  cpu {m['cpu']:6.2f} s  (process {m['wall']:6.2f} s)  "
                          f"peak RSS {m['rss_mb']:6.0f} MB   ({m['n']} rows)")
                for op, counts in requests(root).items():
                    print(f"  requests {op:<18} " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
                shutil.rmtree(root)


if __name__ == "__main__":
    main()
