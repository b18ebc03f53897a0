"""The results store (ablate/results.py): real pyarrow, real files, local disk and an fsspec filesystem."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ablate.results import (STATUSES, TrialWriter, _deduplicate, collect, collected_is_current,
                            mark_interrupted, read_rows, trial_status)

fsspec = pytest.importorskip("fsspec")


class Store:
    """A store root plus the filesystem that holds it (None: local disk, resolved from the path)."""

    def __init__(self, root: str, filesystem: pafs.FileSystem | None) -> None:
        self.root, self.filesystem = root, filesystem
        self.fs = filesystem or pafs.LocalFileSystem()

    def writer(self, trial_id: str) -> TrialWriter:
        return TrialWriter(self.root, trial_id, filesystem=self.filesystem)

    def read(self) -> pd.DataFrame:
        return read_rows(self.root, filesystem=self.filesystem)

    def names(self, trial_id: str) -> list[str]:
        selector = pafs.FileSelector(f"{self.root}/metrics/{trial_id}")
        return sorted(info.base_name for info in self.fs.get_file_info(selector))


@pytest.fixture(params=["local", "fsspec-memory"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "sweep"), None)
    memory = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    return Store(f"/sweep-{uuid.uuid4().hex}", memory)


def report(step: int, **metrics) -> dict:
    return {"sweep": "demo", "seed": 0, "step": step, "loss": 1.0 / (step + 1), "status": "running", **metrics}


def test_round_trip_keeps_values_and_adds_trial_columns(store: Store) -> None:
    writer = store.writer("t1")
    assert writer.begin_attempt(None) == 1
    writer.append([report(0, **{"coupling.beta": 30.0}), report(1, **{"coupling.beta": 30.0})])
    writer.append([report(2, **{"coupling.beta": 30.0}, fid_1step=12.5)])

    rows = store.read()
    assert list(rows["step"]) == [0, 1, 2]
    assert set(rows["trial_id"]) == {"t1"} and set(rows["attempt"]) == {1}
    assert list(rows["loss"]) == [1.0, 0.5, pytest.approx(1 / 3)]
    assert list(rows["coupling.beta"]) == [30.0] * 3
    assert rows["fid_1step"].isna().tolist() == [True, True, False]
    assert rows["fid_1step"].iloc[2] == 12.5
    assert store.names("t1") == ["_attempt-001.json", "_summary.json", "a001-00000000.parquet",
                                 "a001-00000001.parquet"]


def test_local_root_as_file_uri(tmp_path: Path) -> None:
    writer = TrialWriter(f"file://{tmp_path}", "t1")
    writer.begin_attempt(None)
    writer.append([report(0), report(1)])
    assert list(read_rows(str(tmp_path))["step"]) == [0, 1]
    assert list(read_rows(f"file://{tmp_path}")["step"]) == [0, 1]


def test_leftovers_of_a_killed_writer_are_ignored(store: Store) -> None:
    writer = store.writer("t1")
    writer.begin_attempt(None)
    writer.append([report(0), report(1)])
    directory = f"{store.root}/metrics/t1"
    complete = store.fs.open_input_file(f"{directory}/a001-00000000.parquet").read()
    for name in (".a001-00000001.parquet.0123abcd.tmp", ".half-written.parquet"):
        with store.fs.open_output_stream(f"{directory}/{name}") as stream:
            stream.write(complete[: len(complete) // 2])

    assert list(store.read()["step"]) == [0, 1]
    assert trial_status(store.root, store.filesystem)["n_rows"].tolist() == [1 * 2]
    # The next append of the same writer does not collide with the leftovers.
    writer.append([report(2)])
    assert list(store.read()["step"]) == [0, 1, 2]
    if store.filesystem is None:
        assert list(pd.read_parquet(f"{store.root}/metrics")["step"]) == [0, 1, 2]


_APPEND_FOREVER = """
import sys
from ablate.results import TrialWriter
writer = TrialWriter(sys.argv[1], "t1")
writer.begin_attempt(None)
step = 0
while True:
    writer.append([{"step": step, "loss": float(step), "note": "x" * 1000}])
    step += 1
"""


def test_sigkilled_writer_leaves_a_readable_gapless_store(tmp_path: Path) -> None:
    root = str(tmp_path / "sweep")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", _APPEND_FOREVER, root], env=env)
    try:
        deadline = time.monotonic() + 60
        trial_dir = Path(root) / "metrics" / "t1"
        while time.monotonic() < deadline and len(list(trial_dir.glob("a001-*.parquet"))) < 20:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    rows = read_rows(root)
    assert len(rows) >= 20
    assert list(rows["step"]) == list(range(len(rows)))
    assert list(rows["loss"]) == [float(step) for step in range(len(rows))]


def test_resumed_attempt_replaces_only_rows_past_its_checkpoint(store: Store) -> None:
    first = store.writer("t1")
    first.begin_attempt(None)
    first.append([report(step, origin="first") for step in range(11)])

    second = store.writer("t1")  # a new process resuming from the checkpoint at step 5
    assert second.begin_attempt(resumed_from_step=5) == 2
    second.append([report(step, origin="second") for step in range(5, 9)])

    rows = store.read()
    assert list(rows["step"]) == list(range(9))
    assert list(rows["attempt"]) == [1] * 5 + [2] * 4
    assert list(rows["origin"]) == ["first"] * 5 + ["second"] * 4

    third = store.writer("t1")
    assert third.begin_attempt(resumed_from_step=7) == 3
    third.append([report(8, origin="third")])
    rows = store.read()
    assert list(rows["step"]) == list(range(9))
    assert list(rows["attempt"]) == [1] * 5 + [2] * 3 + [3]
    assert rows.duplicated(["trial_id", "step"]).sum() == 0


def test_fresh_restart_discards_the_old_attempt(store: Store) -> None:
    first = store.writer("t1")
    first.begin_attempt(None)
    first.append([report(step, origin="first") for step in range(10)])
    restart = store.writer("t1")
    assert restart.begin_attempt(resumed_from_step=None) == 2

    assert store.read().empty
    restart.append([report(0, origin="restart"), report(1, origin="restart")])
    rows = store.read()
    assert list(rows["step"]) == [0, 1]
    assert list(rows["origin"]) == ["restart", "restart"]
    assert set(rows["attempt"]) == {2}


def test_schemas_are_unified_across_trials_and_files(store: Store) -> None:
    vc = store.writer("vc")
    vc.begin_attempt(None)
    vc.append([report(0, **{"coupling.beta": 30.0, "batch": 128, "note": None, "fid_1step": None})])
    vc.append([report(1, **{"coupling.beta": 30.0, "batch": 128, "note": "eval", "fid_1step": 9.5})])
    gc = store.writer("gc")
    gc.begin_attempt(None)
    gc.append([report(0, **{"coupling.mu": 0.5, "batch": 0.5, "unused": None})])

    rows = store.read().set_index(["trial_id", "step"])
    assert rows["batch"].dtype == np.float64
    assert rows.loc[("vc", 0), "batch"] == 128.0 and rows.loc[("gc", 0), "batch"] == 0.5
    assert rows.loc[("vc", 1), "coupling.beta"] == 30.0 and np.isnan(rows.loc[("gc", 0), "coupling.beta"])
    assert rows.loc[("gc", 0), "coupling.mu"] == 0.5 and np.isnan(rows.loc[("vc", 0), "coupling.mu"])
    assert rows.loc[("vc", 1), "note"] == "eval" and pd.isna(rows.loc[("vc", 0), "note"])
    assert rows["unused"].isna().all()
    assert rows.loc[("vc", 1), "fid_1step"] == 9.5


def test_collect_writes_one_file_with_one_row_per_trial_step(store: Store) -> None:
    for trial in ("a", "b"):
        writer = store.writer(trial)
        writer.begin_attempt(None)
        writer.append([report(step) for step in range(6)])
        writer.begin_attempt(resumed_from_step=3)
        writer.append([report(step) for step in range(3, 8)])

    path = collect(store.root, filesystem=store.filesystem)
    assert path == f"{store.root}/results.parquet"
    with store.fs.open_input_file(path) as source:
        collected = pq.read_table(source).to_pandas()
    assert len(collected) == 16
    assert not collected.duplicated(["trial_id", "step"]).any()
    pd.testing.assert_frame_equal(collected, store.read(), check_dtype=False)

    elsewhere = collect(store.root, out=f"{store.root}-out/all.parquet", filesystem=store.filesystem)
    assert len(pd.read_parquet(elsewhere, filesystem=store.filesystem)) == 16


def test_collect_to_a_local_file_from_a_local_root(tmp_path: Path) -> None:
    writer = TrialWriter(str(tmp_path), "t1")
    writer.begin_attempt(None)
    writer.append([report(0), report(1)])
    path = collect(str(tmp_path))
    assert path == f"{tmp_path}/results.parquet"
    assert list(pd.read_parquet(path)["step"]) == [0, 1]


def test_final_status_is_applied_to_the_last_row(store: Store) -> None:
    done = store.writer("done")
    done.begin_attempt(None)
    done.set_status("running", step=0)
    done.append([report(step) for step in range(3)])
    done.set_status("completed", step=2)

    crashed = store.writer("crashed")
    crashed.begin_attempt(None)
    crashed.append([report(step) for step in range(4)])
    traceback = "Traceback (most recent call last):\n  ...\nRuntimeError: nan loss\n"
    crashed.set_status("errored", step=3, error=traceback)
    retry = store.writer("crashed")
    retry.begin_attempt(resumed_from_step=2)
    retry.append([report(3)])  # still running; the old attempt's "errored" must not stick to it

    rows = store.read()
    assert list(rows.loc[rows["trial_id"] == "done", "status"]) == ["running", "running", "completed"]
    assert list(rows.loc[rows["trial_id"] == "crashed", "status"]) == ["running"] * 4

    status = trial_status(store.root, store.filesystem).set_index("trial_id")
    assert status.loc["done", "status"] == "completed" and status.loc["done", "attempts"] == 1
    assert status.loc["done", "last_step"] == 2 and status.loc["done", "n_rows"] == 3
    assert pd.isna(status.loc["done", "error"])
    assert status.loc["crashed", "status"] == "errored" and status.loc["crashed", "attempts"] == 2
    assert status.loc["crashed", "error"] == "RuntimeError: nan loss"
    assert status.loc["crashed", "n_rows"] == 4 and status.loc["crashed", "last_step"] == 3


def test_trial_without_rows_is_listed(store: Store) -> None:
    writer = store.writer("early")
    writer.begin_attempt(None)
    writer.set_status("errored", error="ValueError: bad config")
    [status] = trial_status(store.root, store.filesystem).to_dict("records")
    assert pd.isna(status.pop("last_step"))
    assert status == {"trial_id": "early", "status": "errored", "attempts": 1,
                      "error": "ValueError: bad config", "n_rows": 0}


def test_interrupted_marks_only_trials_still_running_and_a_resumed_attempt_clears_it(store: Store) -> None:
    midway = store.writer("midway")
    midway.begin_attempt(None)
    midway.set_status("running", step=0)
    midway.append([report(step) for step in range(3)])
    finished = store.writer("finished")  # its last row is written, its status is not (stopped in between)
    finished.begin_attempt(None)
    finished.set_status("running", step=0)
    finished.append([report(0), {**report(1), "status": "completed"}])
    done = store.writer("done")
    done.begin_attempt(None)
    done.append([{**report(0), "status": "diverged"}])
    done.set_status("diverged", step=0)
    starting = store.writer("starting")  # started, no row yet
    starting.begin_attempt(None)
    starting.set_status("running", step=0)

    assert mark_interrupted(f"{store.root}-none", store.filesystem) == []  # no trial had started
    assert mark_interrupted(store.root, store.filesystem) == ["midway", "starting"]
    status = trial_status(store.root, store.filesystem).set_index("trial_id")["status"].to_dict()
    assert status == {"midway": "interrupted", "finished": "completed", "done": "diverged",
                      "starting": "interrupted"}
    rows = store.read()
    assert list(rows.loc[rows["trial_id"] == "midway", "status"]) == ["running", "running", "interrupted"]
    assert "interrupted" in STATUSES

    resumed = store.writer("midway")  # `ablate resume`: the next attempt records running again
    resumed.begin_attempt(resumed_from_step=1)
    resumed.set_status("running", step=1)
    assert trial_status(store.root, store.filesystem).set_index("trial_id").loc["midway", "status"] == "running"
    assert list(store.read().query("trial_id == 'midway'")["status"]) == ["running", "running"]
    assert mark_interrupted(store.root, store.filesystem) == ["midway"]  # again, now at step 1
    assert trial_status(store.root, store.filesystem).set_index("trial_id").loc["midway", "last_step"] == 1


def test_collected_file_is_current_until_the_store_changes(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert not collected_is_current(root)  # nothing collected
    writer = TrialWriter(root, "t1")
    writer.begin_attempt(None)
    writer.append([report(0)])
    assert not collected_is_current(root)
    time.sleep(0.05)  # file times: a later write must get a later time than the collected file's
    collect(root)
    assert collected_is_current(root)
    time.sleep(0.05)
    writer.append([report(1)])
    assert not collected_is_current(root)
    time.sleep(0.05)
    collect(root)
    assert collected_is_current(root)
    writer.set_status("interrupted", step=1)  # a status counts as a change too
    os.utime(f"{root}/metrics/t1/_status.json", (time.time() + 1, time.time() + 1))
    assert not collected_is_current(root)


def test_pandas_reads_raw_rows_of_a_single_trial(store: Store) -> None:
    writer = store.writer("run")
    writer.begin_attempt(None)
    writer.append([report(0, fid_1step=None)])  # no evaluation yet: an all-null metric column
    writer.append([report(1, fid_1step=None), report(2, fid_1step=7.0)])
    raw = pd.read_parquet(f"{store.root}/metrics", filesystem=store.filesystem).sort_values("step")
    assert list(raw["step"]) == [0, 1, 2]
    assert list(raw["trial_id"]) == ["run"] * 3
    assert raw["fid_1step"].iloc[2] == 7.0 and raw["fid_1step"].iloc[:2].isna().all()


def test_deduplication_matches_a_row_by_row_reference() -> None:
    rng = np.random.default_rng(0)
    rows, attempts = [], []
    for trial in range(40):
        for attempt in range(1, rng.integers(1, 5) + 1):
            resumed = None if attempt == 1 or rng.random() < 0.2 else int(rng.integers(0, 300))
            attempts.append((f"t{trial}", attempt, resumed))
            start = 0 if resumed is None else resumed + 1
            for step in range(start, start + int(rng.integers(0, 300))):
                rows.append((f"t{trial}", attempt, step))
    rows_frame = pd.DataFrame(rows, columns=["trial_id", "attempt", "step"])
    attempts_frame = pd.DataFrame(attempts, columns=["trial_id", "attempt", "resumed_from_step"]).astype(
        {"resumed_from_step": float}
    )

    resumes = {(trial, attempt): resumed for trial, attempt, resumed in attempts}
    expected: dict[tuple[str, int], int] = {}
    for trial, attempt, step in rows:
        later = [r for (t, a), r in resumes.items() if t == trial and a > attempt]
        if any(r is None or r < step for r in later):
            continue
        expected[(trial, step)] = max(attempt, expected.get((trial, step), 0))

    kept = _deduplicate(rows_frame, attempts_frame)
    assert len(rows_frame) > 10_000
    assert {(t, s): a for t, s, a in zip(kept["trial_id"], kept["step"], kept["attempt"])} == expected
    assert len(kept) == len(expected)


def test_invalid_use_gives_clear_errors(store: Store) -> None:
    writer = store.writer("t1")
    with pytest.raises(RuntimeError, match="begin_attempt"):
        writer.append([report(0)])
    writer.begin_attempt(None)
    with pytest.raises(ValueError, match="'step' must be an int"):
        writer.append([{"loss": 1.0}])
    with pytest.raises(ValueError, match="'weights' is a list"):
        writer.append([report(0, weights=[1, 2])])
    with pytest.raises(ValueError, match="added by the writer"):
        writer.append([report(0, trial_id="other")])
    with pytest.raises(ValueError, match="'flag' of trial t1 mixes types"):
        writer.append([report(0, flag=True), report(1, flag="yes")])
    with pytest.raises(ValueError, match="one of running, completed"):
        writer.set_status("finished")
    with pytest.raises(ValueError, match="resumed_from_step"):
        writer.begin_attempt(-1)
    for bad in ("", "a/b", "_hidden", ".dot"):
        with pytest.raises(ValueError, match="trial_id"):
            store.writer(bad)
    with pytest.raises(FileNotFoundError, match="no results store"):
        read_rows(f"{store.root}-missing", store.filesystem)
    assert STATUSES == ("running", "completed", "stopped_early", "diverged", "errored", "interrupted")


def test_incompatible_column_types_across_files_are_reported(store: Store) -> None:
    for trial, value in (("a", 1), ("b", "one")):
        writer = store.writer(trial)
        writer.begin_attempt(None)
        writer.append([report(0, width=value)])
    with pytest.raises(ValueError, match="incompatible column types.*width"):
        store.read()
