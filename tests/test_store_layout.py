"""The compacted store layout (ablate/results.py, issue 18): compaction, crashes at any instant, dedup
after resume, stores written before compaction, summaries against rows, requests per read."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ablate import results
from ablate.results import COMPACT_EVERY, TrialWriter, read_rows, trial_status, trial_summaries

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "sweep_results.parquet"


def report(step: int, **extra) -> dict:
    return {"step": step, "loss": 1.0 / (step + 1), "status": "running", "arm": "a",
            "w2_1step": float((step * 7919) % 101) if step % 3 == 0 else None, **extra}


def names(root: Path, trial: str) -> list[str]:
    return sorted(p.name for p in (root / "metrics" / trial).iterdir())


def expected_summary(rows: pd.DataFrame, trial: str, metric: str = "w2_1step", mode: str = "min") -> dict:
    mine = rows[rows["trial_id"] == trial]
    values = mine[metric].dropna()
    return {"n_rows": len(mine), "last_step": int(mine["step"].iloc[-1]), "arm": mine["arm"].iloc[-1],
            "last": float(values.iloc[-1]), "best": float(values.min() if mode == "min" else values.max())}


def check_summaries_agree(root: str, filesystem=None) -> None:
    rows = read_rows(root, filesystem)
    summaries = trial_summaries(root, filesystem, metric="w2_1step", mode="min").set_index("trial_id")
    for trial in rows["trial_id"].unique():
        got = summaries.loc[trial]
        want = expected_summary(rows, trial)
        assert {k: (got[k].item() if hasattr(got[k], "item") else got[k]) for k in want} == want, trial


def test_appends_are_compacted_every_n_and_when_the_attempt_ends(tmp_path: Path) -> None:
    writer = TrialWriter(str(tmp_path), "t1", metric="w2_1step")
    writer.begin_attempt(None)
    total = 2 * COMPACT_EVERY + 6
    for step in range(total):
        writer.append([report(step)])
    assert [n for n in names(tmp_path, "t1") if n.endswith(".parquet")] == (
        [f"a001-{seq:08d}.parquet" for seq in range(2 * COMPACT_EVERY, total)]
        + [f"a001-upto-{2 * COMPACT_EVERY:08d}.parquet"])
    check_summaries_agree(str(tmp_path))  # summary of the compaction + the appends since
    writer.close()
    assert names(tmp_path, "t1") == ["_attempt-001.json", "_summary.json", f"a001-upto-{total:08d}.parquet"]
    assert list(read_rows(str(tmp_path))["step"]) == list(range(total))
    raw = pd.read_parquet(tmp_path / "metrics")  # any Parquet reader sees each row once
    assert sorted(raw["step"]) == list(range(total))
    check_summaries_agree(str(tmp_path))


def test_crash_between_compaction_write_and_deletes_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The files a writer killed after writing its compacted file (and, second case, its summary) but
    before deleting what that file replaces: both copies of the rows are on disk."""
    for summary_written in (False, True):
        root = tmp_path / f"summary-{summary_written}"
        writer = TrialWriter(str(root), "t1", metric="w2_1step")
        writer.begin_attempt(None)
        for step in range(COMPACT_EVERY + 5):
            writer.append([report(step)])
        before = root / "before"
        shutil.copytree(root / "metrics", before)
        writer.close()  # compacts the 5 appends since the first compaction
        for name in os.listdir(before / "t1"):  # the deletes never happened
            if name != "_summary.json" or not summary_written:
                shutil.copy(before / "t1" / name, root / "metrics" / "t1" / name)
        shutil.rmtree(before)
        assert len([n for n in names(root, "t1") if n.endswith(".parquet")]) == 7
        rows = read_rows(str(root))
        assert list(rows["step"]) == list(range(COMPACT_EVERY + 5))
        assert trial_status(str(root))["n_rows"].tolist() == [COMPACT_EVERY + 5]
        check_summaries_agree(str(root))

        resumed = TrialWriter(str(root), "t1", metric="w2_1step")  # and the trial goes on
        assert resumed.begin_attempt(resumed_from_step=30) == 2
        for step in range(31, 40):
            resumed.append([report(step, origin="second")])
        resumed.close()
        rows = read_rows(str(root))
        assert list(rows["step"]) == list(range(40))
        assert rows.set_index("step").loc[31:, "attempt"].eq(2).all()
        check_summaries_agree(str(root))


_APPEND_FOREVER = """
import sys
from ablate.results import TrialWriter
writer = TrialWriter(sys.argv[1], "t1", metric="w2_1step")
writer.begin_attempt(None if sys.argv[2] == "-" else int(sys.argv[2]))
step = 0 if sys.argv[2] == "-" else int(sys.argv[2]) + 1
while True:
    writer.append([{"step": step, "loss": float(step), "status": "running", "arm": "a",
                    "w2_1step": float(step % 7), "note": "x" * 200}])
    step += 1
"""


def test_sigkilled_writers_leave_gapless_rows_and_agreeing_summaries(tmp_path: Path) -> None:
    """Three attempts, each killed at an arbitrary instant (mid-append, mid-compaction, mid-delete), each
    resuming from a step before the last one written."""
    root = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    resume_from = "-"
    for wanted in (70, 110, 150):
        process = subprocess.Popen([sys.executable, "-c", _APPEND_FOREVER, str(root), resume_from], env=env)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    last_step = trial_status(str(root))["last_step"].iloc[0]
                    if pd.notna(last_step) and last_step >= wanted:
                        break
                except (FileNotFoundError, IndexError):  # no store, or no trial, yet
                    pass
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        rows = read_rows(str(root))
        assert list(rows["step"]) == list(range(len(rows))), "rows are gapless and unique"
        assert list(rows["loss"]) == [float(step) for step in range(len(rows))]
        assert len(rows) > wanted
        check_summaries_agree(str(root))
        resume_from = str(wanted - 20)


def test_resumed_attempts_compact_separately_and_dedup(tmp_path: Path) -> None:
    first = TrialWriter(str(tmp_path), "t1", metric="w2_1step")
    first.begin_attempt(None)
    for step in range(50):
        first.append([report(step, origin="first")])
    first.close()
    second = TrialWriter(str(tmp_path), "t1", metric="w2_1step")
    second.begin_attempt(resumed_from_step=20)
    for step in range(21, 90):
        second.append([report(step, origin="second")])
    second.close()
    assert [n for n in names(tmp_path, "t1") if n.endswith(".parquet")] == [
        "a001-upto-00000050.parquet", "a002-upto-00000069.parquet"]
    rows = read_rows(str(tmp_path))
    assert list(rows["step"]) == list(range(90))
    assert list(rows["origin"]) == ["first"] * 21 + ["second"] * 69
    check_summaries_agree(str(tmp_path))
    restart = TrialWriter(str(tmp_path), "t1", metric="w2_1step")
    restart.begin_attempt(None)  # from scratch: every earlier row is stale
    restart.append([report(0, origin="third")])
    restart.close()
    assert read_rows(str(tmp_path))["origin"].tolist() == ["third"]
    assert trial_summaries(str(tmp_path), metric="w2_1step").loc[0, "n_rows"] == 1


def write_old_layout(root: Path, table: pa.Table) -> None:
    """The store as the writer before compaction left it: one file per report row, the attempt and
    status records, no summary."""
    frame = table.to_pandas()
    for trial, mine in frame.groupby("trial_id"):
        directory = root / "metrics" / trial
        directory.mkdir(parents=True)
        (directory / "_attempt-001.json").write_text(json.dumps(
            {"attempt": 1, "resumed_from_step": None, "started": "2026-12-01T00:00:00+00:00"}))
        (directory / "_status.json").write_text(json.dumps(
            {"status": "completed", "attempt": 1, "step": int(mine["step"].max()), "error": None,
             "updated": "2026-12-01T00:00:00+00:00"}))
        for seq, index in enumerate(mine.index):
            pq.write_table(table.slice(index, 1), directory / f"a001-{seq:08d}.parquet")


def test_stores_written_before_compaction_read_and_resume(tmp_path: Path) -> None:
    fixture = pq.read_table(FIXTURE)
    write_old_layout(tmp_path, fixture)
    expected = fixture.to_pandas().sort_values(["trial_id", "step"]).reset_index(drop=True)
    rows = read_rows(str(tmp_path))
    pd.testing.assert_frame_equal(rows[expected.columns], expected, check_dtype=False)
    plotted = read_rows(str(tmp_path), columns=["step", "w2_1step"])
    assert list(plotted.columns) == ["trial_id", "attempt", "step", "w2_1step"]
    pd.testing.assert_frame_equal(plotted, rows[plotted.columns], check_dtype=False)
    status = trial_status(str(tmp_path))
    assert status["n_rows"].tolist() == expected.groupby("trial_id").size().tolist()
    assert set(status["status"]) == {"completed"}
    check_summaries_agree(str(tmp_path))

    trial = expected["trial_id"].iloc[0]  # a trial of the old sweep resumed by the new writer
    resumed_at = int(expected.loc[expected["trial_id"] == trial, "step"].iloc[5])
    columns = {name: {"int64": int, "double": float, "bool": bool}.get(str(field.type), str)
               for name, field in zip(fixture.column_names, fixture.schema) if name not in ("trial_id", "attempt")}
    columns.update({name: float for name, field in zip(fixture.column_names, fixture.schema)
                    if str(field.type) == "null"})
    writer = TrialWriter(str(tmp_path), trial, columns=columns, metric="w2_1step")
    assert writer.begin_attempt(resumed_from_step=resumed_at) == 2
    last = expected[expected["trial_id"] == trial].iloc[-1].to_dict()
    writer.append([{**{k: (None if pd.isna(v) else v) for k, v in last.items() if k in columns},
                    "step": resumed_at + 1}])
    writer.close()
    mine = read_rows(str(tmp_path)).query("trial_id == @trial")
    assert list(mine["step"]) == [*expected.loc[expected["trial_id"] == trial, "step"].iloc[:6], resumed_at + 1]
    check_summaries_agree(str(tmp_path))


def test_summaries_agree_with_rows_across_trials_attempts_and_tails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for t in range(12):
        resume = None
        for _attempt in range(int(rng.integers(1, 4))):
            writer = TrialWriter(str(tmp_path), f"t{t}", metric="w2_1step")
            writer.begin_attempt(resume)
            start = 0 if resume is None else resume + 1
            end = start + int(rng.integers(1, 80))
            for step in range(start, end):
                writer.append([report(step)])
            if rng.random() < 0.6:  # else killed: no close, a tail of appends stays
                writer.close()
            resume = None if rng.random() < 0.15 else int(rng.integers(0, end))
    check_summaries_agree(str(tmp_path))
    trial_status(str(tmp_path))  # and the plain status reads the same store


class _CountingMemory:
    """A fresh in-memory fsspec filesystem whose reads are counted (file opens and listings)."""

    def __init__(self) -> None:
        fsspec_memory = pytest.importorskip("fsspec.implementations.memory")
        counts = self.counts = Counter()

        class Counting(fsspec_memory.MemoryFileSystem):
            store, pseudo_dirs = {}, [""]

            def ls(self, path, *args, **kwargs):
                counts["ls"] += 1
                return super().ls(path, *args, **kwargs)

            def _open(self, path, mode="rb", **kwargs):
                counts["read" if "r" in mode else "write"] += 1
                return super()._open(path, mode, **kwargs)

        self.fs = pafs.PyFileSystem(pafs.FSSpecHandler(Counting(skip_instance_cache=True)))


@pytest.mark.parametrize("reports", [40, 400])
def test_requests_per_read_grow_with_trials_not_rows(reports: int) -> None:
    memory, trials = _CountingMemory(), 6
    for t in range(trials):
        writer = TrialWriter("/sweep", f"t{t}", filesystem=memory.fs, metric="w2_1step")
        writer.begin_attempt(None)
        for step in range(reports):
            writer.append([report(step)])
        writer.close()
    for read in (lambda: read_rows("/sweep", memory.fs), lambda: trial_status("/sweep", memory.fs),
                 lambda: trial_summaries("/sweep", memory.fs, "w2_1step")):
        memory.counts.clear()
        read()
        # per trial: its compacted file, status and attempt records or its summary; listings per directory
        assert memory.counts["read"] <= 3 * trials, memory.counts
        assert memory.counts["ls"] <= trials + 2, memory.counts
    assert len(read_rows("/sweep", memory.fs)) == trials * reports


def test_read_rows_reads_only_the_columns_asked(tmp_path: Path) -> None:
    writer = TrialWriter(str(tmp_path), "t1")
    writer.begin_attempt(None)
    writer.append([report(0, note="x"), report(1, note="y")])
    writer.close()
    plotted = read_rows(str(tmp_path), columns=["w2_1step", "absent"])
    assert list(plotted.columns) == ["trial_id", "attempt", "step", "w2_1step"]
    assert "status" in read_rows(str(tmp_path), columns=["status"])
    assert results.read_rows(str(tmp_path))["note"].tolist() == ["x", "y"]


def test_status_reads_sweep_json_and_summaries_without_ray_or_torch(tmp_path: Path) -> None:
    """``ablate status`` of a sweep whose sweep.json records its table (what ``ablate run`` writes):
    the table from the summaries, and neither ray nor torch imported."""
    sweep = tmp_path / "sweep"
    for trial, values in (("done", [3.0, 1.0, 2.0]), ("running", [5.0])):
        writer = TrialWriter(str(sweep), trial, metric="w2_1step", mode="min")
        writer.begin_attempt(None)
        for step, value in enumerate(values):
            writer.append([{**report(step), "w2_1step": value, "arm": f"arm-{trial}"}])
        if trial == "done":
            writer.set_status("completed", step=len(values) - 1)
            writer.close()
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "table": {
        "metric": "w2_1step", "mode": "min", "iterations": 10, "arms": {"pending": "arm-pending"}}}))
    code = ("import contextlib, io, json, sys\nfrom ablate.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    assert main(['status', {str(sweep)!r}]) == 0\n"
            "print(json.dumps([out.getvalue(), sorted(set(sys.modules) & {'ray', 'torch', 'ablate.sweep'})]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    table, imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == []
    lines = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert lines["done"][1:5] == ["2/10", "2", "1", "completed"] and lines["done"][-1] == "arm-done"
    assert lines["running"][1:4] == ["0/10", "5", "5"] and lines["running"][-1] == "arm-running"
