"""Resuming failed sweeps without losing or duplicating rows (issue 7), with real processes.

Each sweep runs ``python -m ablate.cli`` in a subprocess on a tiny toy problem. The driver-kill test
SIGKILLs the ``ablate run`` / ``ablate resume`` driver, makes sure no Ray process of that driver is
left (see :func:`kill_driver`), and resumes. After every sweep the collected results must hold exactly
one row per (trial_id, step) for every report step of every trial, no row of a discarded attempt past
the checkpoint its successor resumed from, and one ``attempt`` per time the trial ran.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import pytest

from ablate.spec import load_spec
from faults import fault_env
from toy import ROOT, ablate_cli, ablate_cmd, cli_env, toy_space, write_space

TIMEOUT_S = 600
ITERATIONS, REPORT_EVERY, EVAL_EVERY = 600, 20, 60  # trials long enough (~10 s) to be caught mid-run


def write_spec(directory: Path, space: dict) -> Path:
    return write_space(directory, toy_space(
        "tiny", space, iterations=ITERATIONS, eval_every=EVAL_EVERY, report_every=REPORT_EVERY,
        base={"data": {"n_train": 2000}}, tune={"max_failures": 1}))


def report_steps(last: int = ITERATIONS) -> list[int]:
    """Every step at which the trainer reports, up to ``last``: 0, each report/eval step, the end."""
    steps = {0, ITERATIONS} | set(range(0, ITERATIONS + 1, REPORT_EVERY)) | set(range(0, ITERATIONS + 1, EVAL_EVERY))
    return sorted(s for s in steps if s <= last)


def driver_env(**extra: str) -> dict[str, str]:
    """The CLI's environment, without Tune's warning that syncing experiment state is slow."""
    return cli_env(TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0", **extra)


def ablate(*args: str, env: Optional[dict[str, str]] = None, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return ablate_cli(*args, env=env or driver_env(), timeout=timeout)


def start_driver(*args: str, **env: str) -> subprocess.Popen:
    """An ``ablate`` driver in its own session, so that its process group holds exactly the Ray
    head processes it starts (gcs, raylet, agents)."""
    return subprocess.Popen(ablate_cmd(*args), cwd=ROOT, env=driver_env(**env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition: Callable[[], Any], what: str, driver: subprocess.Popen, timeout: float = TIMEOUT_S) -> Any:
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if driver.poll() is not None:
            pytest.fail(f"the driver exited ({driver.returncode}) before {what}: {driver.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)
    return value


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _ray_worker_pids(driver_pid: int) -> list[int]:
    """PIDs of the worker processes (trials) of the Ray session that ``driver_pid`` started: Ray names
    the session directory after the starting process and each worker's log after the worker's PID."""
    pids = set()
    for session in glob.glob(f"/tmp/ray/session_*_{driver_pid}"):
        for log in glob.glob(f"{session}/logs/worker-*-*.out"):
            pids.add(int(Path(log).stem.rsplit("-", 1)[1]))
    return [pid for pid in pids if _is_ray_worker(pid)]


def _is_ray_worker(pid: int) -> bool:
    try:
        return _alive(pid) and "ray::" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except FileNotFoundError:
        return False


def kill_driver(driver: subprocess.Popen, grace_s: float = 30.0) -> list[int]:
    """SIGKILL the driver; returns the trial workers that outlived it by ``grace_s`` (then killed).

    Ray's head processes share the driver's fate (they die with it); trial workers notice their
    raylet is gone and exit within seconds. Whatever is still alive after the grace period is killed
    by PID: the driver's process group (head processes) and the session's worker PIDs."""
    workers = _ray_worker_pids(driver.pid)
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + grace_s
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.5)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return survivors


def attempts_on_disk(sweep: Path) -> pd.DataFrame:
    records = [{"trial_id": Path(f).parent.name, **json.loads(Path(f).read_text())}
               for f in glob.glob(str(sweep / "metrics" / "*" / "_attempt-*.json"))]
    return pd.DataFrame(records)


def tune_state(sweep: Path) -> Path:
    """Ray Tune's latest experiment state file in the sweep (trials, their checkpoints, searcher);
    each driver session writes its own, named by the time it started."""
    return max((sweep / "tune").glob("experiment_state-*.json"))


def whole_state_naming_a_checkpoint(sweep: Path) -> Optional[bytes]:
    """The latest experiment state if it is whole (Tune copies it in place) and names a checkpoint."""
    try:
        state = tune_state(sweep).read_bytes()
        json.loads(state)
    except (ValueError, OSError):
        return None
    return state if b"checkpoint_dir_name" in state else None  # a trial's last result had one


def statuses_on_disk(sweep: Path) -> dict[str, str]:
    out = {}
    for f in glob.glob(str(sweep / "metrics" / "*" / "_status.json")):
        try:
            out[Path(f).parent.name] = json.loads(Path(f).read_text())["status"]
        except (json.JSONDecodeError, FileNotFoundError):
            pass
    return out


def collected(sweep: Path) -> pd.DataFrame:
    result = ablate("collect", str(sweep), timeout=120)
    assert result.returncode == 0, result.stderr
    return pd.read_parquet(result.stdout.strip())


def check_integrity(sweep: Path, expected_steps: dict[str, list[int]]) -> pd.DataFrame:
    """The data-integrity rule of issue 7 on ``ablate collect``'s output; returns the rows."""
    rows = collected(sweep)
    assert set(rows["trial_id"]) == set(expected_steps)
    assert not rows.duplicated(["trial_id", "step"]).any()
    attempts = attempts_on_disk(sweep)
    for trial_id, steps in expected_steps.items():
        mine = rows[rows["trial_id"] == trial_id].sort_values("step")
        assert mine["step"].tolist() == steps, f"{trial_id}: gaps or extra rows"
        # no row of a discarded attempt past the step its successor resumed from
        began = attempts[attempts["trial_id"] == trial_id].set_index("attempt")["resumed_from_step"]
        assert sorted(began.index) == list(range(1, len(began) + 1))
        for attempt, step in zip(mine["attempt"], mine["step"]):
            later = began[began.index > attempt]
            cutoff = later.fillna(-1).min() if len(later) else float("inf")
            assert step <= cutoff, f"{trial_id}: row at step {step} of attempt {attempt} is stale"
        # an attempt that resumed did so from a checkpoint, i.e. an evaluation step
        assert all(pd.isna(s) or s % EVAL_EVERY == 0 for s in began)
    status = ablate("status", str(sweep), timeout=120)
    assert status.returncode == 0, status.stderr
    return rows


@pytest.mark.ray
@pytest.mark.slow
def test_driver_sigkill_then_resume_at_two_moments(tmp_path: Path) -> None:
    space = {"weighting.name": {"grid": ["inv_dt", "edm", "uniform"]}}
    spec_path = write_spec(tmp_path, space)
    trials = [p.trial_name for p in load_spec(str(spec_path)).points()]
    sweep = tmp_path / "runs" / "tiny"

    # moment 1: the first two trials are training (past their fourth checkpoint), the third is pending.
    # With Tune saving its experiment state every second (not ~10 s), keep a copy that names a
    # checkpoint; put it back after the kill, as a driver killed just after Tune replaced checkpoints
    # would leave it: resuming from it must neither fail nor lose or repeat rows
    driver = start_driver("run", str(spec_path), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet",
                          TUNE_GLOBAL_CHECKPOINT_S="1")
    stale = wait_for(lambda: whole_state_naming_a_checkpoint(sweep), "Tune's state to name a checkpoint",
                     driver)
    # by the fourth checkpoint, Tune (keeping two) would have deleted the one the copy names
    wait_for(lambda: glob.glob(str(sweep / "tune" / "*" / "checkpoint_000003")), "a fourth checkpoint", driver)
    kill_driver(driver)
    assert set(statuses_on_disk(sweep).values()) <= {"running"}  # nobody finished (or marked it)
    tune_state(sweep).write_bytes(stale)

    # moment 2: during the resumed sweep, once a trial has completed and another has not
    driver = start_driver("resume", str(sweep), "--quiet")
    wait_for(lambda: 0 < list(statuses_on_disk(sweep).values()).count("completed") < len(trials),
             "one trial to complete in the resumed sweep", driver)
    kill_driver(driver)

    done = ablate("resume", str(sweep), "--quiet", env=driver_env(CI="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = check_integrity(sweep, {t: report_steps() for t in trials})
    finals = rows.sort_values("step").groupby("trial_id")["status"].last()
    assert (finals == "completed").all()
    attempts = attempts_on_disk(sweep).groupby("trial_id")["attempt"].max()
    assert attempts.max() >= 2  # something was actually interrupted and ran again
    assert (rows.groupby("trial_id")["attempt"].max() == attempts[rows.groupby("trial_id").size().index]).all()

    # a changed search-space file is refused, showing what changed; nothing starts
    spec_path.write_text(spec_path.read_text().replace("max_concurrent: 2", "max_concurrent: 3"))
    refused = ablate("resume", str(sweep), timeout=120)
    assert refused.returncode == 2
    assert "changed since the sweep began" in refused.stderr and "+  max_concurrent: 3" in refused.stderr

    # Tune's state cut short by a driver killed while copying it: refused with the file's name
    spec_path.write_text(spec_path.read_text().replace("max_concurrent: 3", "max_concurrent: 2"))
    state = tune_state(sweep)
    state.write_bytes(state.read_bytes()[:100])
    refused = ablate("resume", str(sweep), timeout=120)
    assert refused.returncode == 2 and "unreadable" in refused.stderr and state.name in refused.stderr


def test_resume_refuses_a_directory_that_is_not_a_sweep(tmp_path: Path) -> None:
    refused = ablate("resume", str(tmp_path), timeout=120)
    assert refused.returncode == 2
    assert "not a sweep directory" in refused.stderr and str(tmp_path) in refused.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_injected_fault_is_retried_from_checkpoint_and_divergence_ends_one_trial(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, {"train.lr": {"grid": [1.0e-3, 1.0e+6, 2.0e-3]}})
    points = load_spec(str(spec_path)).points()
    healthy = next(p.trial_name for p in points if p.params["train.lr"] == 1.0e-3)
    diverging = next(p.trial_name for p in points if p.params["train.lr"] == 1.0e+6)
    failing = next(p.trial_name for p in points if p.params["train.lr"] == 2.0e-3)
    fault_step = 100  # between the checkpoints at evaluation steps 60 and 120

    worker_tmp = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))  # short: Ray's socket paths live here
    try:
        result = ablate("run", str(spec_path), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet",
                        env=driver_env(**fault_env(ABLATE_FAULT_STEP=str(fault_step), ABLATE_FAULT_TRIALS=healthy,
                                                 ABLATE_FAULT_ALWAYS=failing), TMPDIR=str(worker_tmp)))
        # the retries read their checkpoints in place: no copy of one is left behind in the temp dir
        assert not list(worker_tmp.glob("checkpoint_tmp_*"))
    finally:
        shutil.rmtree(worker_tmp, ignore_errors=True)
    # the always-failing trial ends errored after max_failures = 1 retry: the sweep goes on, exit 1
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 trial(s) errored" in result.stderr
    sweep = tmp_path / "runs" / "tiny"
    assert statuses_on_disk(sweep)[failing] == "errored"
    assert attempts_on_disk(sweep).groupby("trial_id").size()[failing] == 2

    rows = collected(sweep)
    diverged_rows = rows[rows["trial_id"] == diverging].sort_values("step")
    diverged_at = int(diverged_rows["step"].iloc[-1])
    assert diverged_rows["status"].iloc[-1] == "diverged" and diverged_at < ITERATIONS
    # the failing trial's rows stop at the fault step (stored just before the fault, in each attempt)
    rows = check_integrity(sweep, {healthy: report_steps(), diverging: report_steps(diverged_at),
                                   failing: report_steps(fault_step)})

    attempts = attempts_on_disk(sweep).set_index(["trial_id", "attempt"])["resumed_from_step"].sort_index()
    assert attempts[healthy].index.tolist() == [1, 2]  # retried once, from the checkpoint at step 60
    assert pd.isna(attempts[(healthy, 1)]) and attempts[(healthy, 2)] == 60
    assert attempts[diverging].index.tolist() == [1]  # divergence is not retried
    mine = rows[rows["trial_id"] == healthy]
    assert mine.loc[mine["step"] <= 60, "attempt"].eq(1).all() and mine.loc[mine["step"] > 60, "attempt"].eq(2).all()
    assert mine.sort_values("step")["status"].iloc[-1] == "completed"

    status = {line.split()[0]: line for line in ablate("status", str(sweep), timeout=120).stdout.splitlines()
              if line.strip()}
    assert " diverged " in status[diverging] and " completed " in status[healthy]
    assert " errored " in status[failing]
    assert any("error:" in line and "injected fault" in line for line in
               ablate("status", str(sweep), timeout=120).stdout.splitlines())


def test_resuming_from_the_checkpoint_of_a_finished_trial_writes_nothing(tmp_path: Path) -> None:
    """A driver killed after a trial's last report (checkpoint at the final step) but before Tune
    recorded the trial as finished: the trial restarts from that checkpoint, which must neither add
    an attempt nor overwrite the ``completed`` status."""
    from ablate.results import trial_status
    from ablate.trial import prepare_trial, run_trial

    spec = load_spec(str(write_spec(tmp_path, {"weighting.name": {"grid": ["inv_dt"]}})),
                     overrides={"train.iterations": 40, "eval.every": 20})
    checkpoint = str(tmp_path / "trainer.pt")

    def save(row, trainer, due: bool) -> None:
        if due:
            trainer.save(checkpoint)

    cfg = spec.config_for({}, None, 0)
    first = run_trial(prepare_trial(cfg, None), str(tmp_path), "t", on_report=save)
    again = run_trial(prepare_trial(cfg, None), str(tmp_path), "t", resume_from=checkpoint, on_report=save)
    assert first["status"] == again["status"] == "completed" and again["step"] == 40
    status = trial_status(str(tmp_path)).set_index("trial_id").loc["t"]
    assert status["status"] == "completed" and status["attempts"] == 1 and status["n_rows"] == 3
