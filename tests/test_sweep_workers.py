"""Multi-worker trials through ``python -m ablate.cli run`` (ablate.sweep_workers): a real local Ray, Ray
Tune trials that each drive a 2-worker Ray Train run (gloo on CPU). Ray is told it has 4 CPUs (2 trials x
2 workers x 1 CPU) whatever the machine has; the toy trainer needs far less.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ablate.results import read_rows, trial_status
from ablate.spec import load_spec
from faults import fault_env
from toy import SWEEP_TIMEOUT_S, ablate_cli, cli_env, toy_space, write_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TWO_WORKERS = toy_space(
    "two_workers", {"weighting.name": {"grid": ["inv_dt", "edm"]}}, iterations=60, eval_every=20,
    report_every=10, base={"model": {"hidden": 32, "dropout": 0.1}, "train": {"batch_size": 64,
                                                                              "distributed": {"workers": 2}},
                           "eval": {"grid": False, "samples": 200}, "log": {"checkpoint_every": 1}},
    tune={"max_concurrent": 2, "max_failures": 1})


def run_sweep(tmp_path: Path, ray_tmp: str, **env: str) -> Path:
    out = tmp_path / "runs"
    proc = ablate_cli("run", str(write_space(tmp_path, TWO_WORKERS)), "--out", str(out), "--num-cpus", "4",
                      "--quiet", env=cli_env(RAY_TMPDIR=ray_tmp, **env), timeout=SWEEP_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    (sweep_dir,) = list(out.iterdir())
    return sweep_dir


def check_rows(sweep_dir: Path) -> None:
    """Both trials completed, by 2 workers, with one row per (trial, step) at every report."""
    rows = read_rows(str(sweep_dir))
    status = trial_status(str(sweep_dir)).set_index("trial_id")["status"]
    assert len(status) == 2 and set(status) == {"completed"}
    for trial_id, mine in rows.groupby("trial_id"):
        assert sorted(mine["step"]) == list(range(0, 61, 10)), trial_id
        assert set(mine["train.distributed.workers"]) == {2}
        assert mine.loc[mine["step"] > 0, "loss"].notna().all()
        assert mine.loc[mine["step"] % 20 == 0, "w2_1step"].notna().all()
        assert mine["images_seen"].tolist() == [s * 64 for s in mine["step"]]


def test_two_trials_of_two_workers_complete_and_a_killed_worker_resumes_without_lost_or_duplicated_rows(
        tmp_path, ray_tmp):
    """Rank 1 of one trial SIGKILLs itself at step 30 on its first attempt: that Ray Train run fails,
    Tune retries the trial from its checkpoint at step 20, and the rows of the steps past it are the
    retry's. The other trial runs undisturbed."""
    spec = write_space(tmp_path, TWO_WORKERS)
    killed, calm = (p.trial_name for p in load_spec(spec).points())
    sweep_dir = run_sweep(tmp_path, ray_tmp, **fault_env(ABLATE_FAULT_STEP="30", ABLATE_FAULT_KILL_RANK="1",
                                                          ABLATE_FAULT_TRIALS=killed))
    check_rows(sweep_dir)
    rows = read_rows(str(sweep_dir))
    mine = rows[rows["trial_id"] == killed]
    assert (mine.loc[mine["step"] <= 20, "attempt"] == 1).all()  # kept from before the kill
    assert (mine.loc[mine["step"] > 20, "attempt"] == 2).all()  # retrained from the step-20 checkpoint
    assert (rows.loc[rows["trial_id"] == calm, "attempt"] == 1).all()
