"""End-to-end Ray Tune sweeps through ``python -m ablate.cli run`` (real local Ray, tiny settings).

Each sweep runs as a subprocess with its own short ``RAY_TMPDIR``, so the test can check that every
Ray process it started is gone afterwards. Two sweeps in all (~1-2 min each on 2 loaded cores):

- a conditional space with two seeds, a profile and ``--set`` (store rows, nulls, pairing, overrides);
- ASHA over two variants that clearly differ (early stopping recorded in status and rows), one trial
  at a time, so that later trials run in the actor of an earlier one (``reuse_actors``): their rows
  must equal those of the same trials trained alone in a fresh trainer.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.results import read_rows
from ablate.spec import load_spec
from ablate.trial import prepare_trial, run_trial
from toy import SWEEP_TIMEOUT_S, ablate_cli, cli_env, toy_space, write_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# a fast EMA (0.99): after 50 steps the evaluated model already shows what the learning rate did
BASE = {"model": {"hidden": 128}, "discretization": {"s1": 20}, "train": {"ema": [0.99]},
        "eval": {"grid": False}}

CONDITIONAL = toy_space(
    "conditional",
    {"coupling.name": {"grid": ["independent", "vc"]},
     "coupling.beta": {"grid": [5.0], "when": {"coupling.name": "vc"}}},
    iterations=1000, eval_every=500, base=BASE, seeds=[0, 1],
    profiles={"small": {"model.hidden": 64, "train.iterations": 400}})

# lr 1e-7 leaves the model as it was initialised: its W2 after the first evaluation is clearly worse
ASHA = toy_space(
    "asha", iterations=1000, eval_every=500, base=BASE,
    variants={"learns": {"train.lr": 1.0e-3}, "frozen": {"train.lr": 1.0e-7}}, seeds=[0, 1],
    tune={"scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}, "max_concurrent": 1})


def run_cli(args: list[str], ray_tmp: str, timeout: float = SWEEP_TIMEOUT_S
            ) -> subprocess.CompletedProcess:
    return ablate_cli(*args, env=cli_env(RAY_TMPDIR=ray_tmp), timeout=timeout)


def sweep(tmp_path: Path, ray_tmp: str, spec: dict, *extra: str) -> Path:
    """Run the search space ``spec`` to completion; return its sweep directory."""
    out = tmp_path / "runs"
    proc = run_cli(["run", str(write_space(tmp_path, spec)), "--out", str(out), "--num-cpus", "2",
                    "--quiet", *extra], ray_tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_dir,) = list(out.iterdir())
    return sweep_dir


def test_conditional_sweep_with_seeds_profile_and_set(tmp_path, ray_tmp):
    iterations, every, report_every = 200, 100, 50
    space = write_space(tmp_path, CONDITIONAL)
    proc = run_cli(["run", str(space), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet",
                    "--profile", "small", "--set", f"train.iterations={iterations}", "--set",
                    f"eval.every={every}"], ray_tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_dir,) = list((tmp_path / "runs").iterdir())
    rows = pd.read_parquet(sweep_dir / "results.parquet")

    # EMA 0.99 over 200 steps: `ablate run` says so once, before the sweep, and runs it
    assert proc.stderr.count(f"ablate run: caution: {space}: train.ema: ") == 1, proc.stderr[-3000:]
    assert "0.99^200 = 13% of the initial weights" in proc.stderr

    # 2 points (independent; vc with beta 5) x 2 seeds, one row per report and no gaps
    assert rows["trial_id"].nunique() == 4
    assert not rows.duplicated(["trial_id", "step"]).any()
    expected_steps = list(range(0, iterations + 1, report_every))  # step 0: the untrained model
    for trial_id, mine in rows.groupby("trial_id"):
        assert sorted(mine["step"]) == expected_steps, trial_id
        evaluated = sorted(mine.loc[mine["w2_1step"].notna(), "step"])
        assert evaluated == list(range(0, iterations + 1, every)), (trial_id, evaluated)
        assert mine.sort_values("step")["status"].iloc[-1] == "completed", trial_id

    # the conditional key is null exactly where it is inactive
    independent = rows[rows["coupling.name"] == "independent"]
    vc = rows[rows["coupling.name"] == "vc"]
    assert len(independent) == len(vc) == 2 * len(expected_steps)
    assert independent["coupling.beta"].isna().all()
    assert (vc["coupling.beta"] == 5.0).all()

    # seeds pair across arms: every arm ran every seed, and an arm's seeds share its point key
    arms = rows.groupby("arm").agg(seeds=("seed", lambda s: sorted(set(s))),
                                   keys=("point_key", "nunique"))
    assert len(arms) == 2
    assert all(seeds == [0, 1] for seeds in arms["seeds"])
    assert (arms["keys"] == 1).all()
    assert (rows["train.seed"] == rows["seed"]).all()

    # overrides reach the trials: --set beats the profile, the profile beats the base
    assert (rows["train.iterations"] == iterations).all()
    assert (rows["eval.every"] == every).all()
    assert (rows["model.hidden"] == 64).all()

    status = run_cli(["status", str(sweep_dir)], ray_tmp, timeout=120)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("completed") == 4


def test_asha_stops_a_trial_early_and_says_so(tmp_path, ray_tmp):
    iterations, every = 200, 50  # 5 evaluations (steps 0-200); ASHA rungs at 1, 2, 4
    sweep_dir = sweep(tmp_path, ray_tmp, ASHA, "--set", f"train.iterations={iterations}",
                      "--set", f"eval.every={every}")
    rows = pd.read_parquet(sweep_dir / "results.parquet")

    # variants x seeds, the variant's value in every row
    assert rows["trial_id"].nunique() == 4
    assert rows.groupby("variant")["seed"].agg(lambda s: sorted(set(s))).to_dict() == \
        {"learns": [0, 1], "frozen": [0, 1]}
    assert (rows.loc[rows["variant"] == "frozen", "train.lr"] == 1e-7).all()
    assert (rows.loc[rows["variant"] == "learns", "train.lr"] == 1e-3).all()

    last = rows.sort_values("step").groupby("trial_id").tail(1).set_index("trial_id")
    stopped = last.index[last["status"] == "stopped_early"]
    assert len(stopped) >= 1, last[["variant", "step", "status"]]
    assert set(last["status"]) <= {"stopped_early", "completed"}
    assert (last.loc[stopped, "step"] < iterations).all()
    assert (last.loc[last["status"] == "completed", "step"] == iterations).all()
    # the scheduler stopped the bad arm (a learning trial may also be cut at the first rung: after 50
    # steps its W2 is within noise of the frozen one's) and let a learning trial finish
    assert "frozen" in set(last.loc[stopped, "variant"])
    assert (last.loc[last["status"] == "completed", "variant"] == "learns").any()

    status = run_cli(["status", str(sweep_dir)], ray_tmp, timeout=120)
    assert status.returncode == 0, status.stderr
    for trial_id in stopped:
        line = next(line for line in status.stdout.splitlines() if line.startswith(trial_id[:28]))
        assert "stopped_early" in line, status.stdout

    # later trials reused the first trial's actor (one process for several trials) ...
    pids = {}
    for result_file in (sweep_dir / "tune").glob("*/result.json"):
        results = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        pids[results[0]["trial_id"]] = results[0]["pid"]
    assert len(pids) == 4 and len(set(pids.values())) < 4, pids
    # ... and still trained exactly as a trial alone does: no state leaks from one trial to the next
    alone = trained_alone(sweep_dir / "spec.yaml", tmp_path / "alone",
                          {"train.iterations": iterations, "eval.every": every})
    compared = ["step", "loss", "w2_1step"]
    for trial_id, mine in rows.groupby("trial_id"):
        swept = mine.sort_values("step")[compared].reset_index(drop=True)
        reference = alone[alone["trial_id"] == trial_id].sort_values("step")[compared]
        pd.testing.assert_frame_equal(swept, reference.iloc[:len(swept)].reset_index(drop=True),
                                      check_exact=True, obj=trial_id)


def trained_alone(space: Path, out: Path, overrides: dict) -> pd.DataFrame:
    """Every point of ``space`` trained to the end in this process, one thread (as a 1-CPU trial)."""
    spec = load_spec(space, overrides=overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for point in spec.points():
            run_trial(prepare_trial(spec.config_for(point.params, point.variant, point.seed), None),
                      str(out), point.trial_name)
    finally:
        torch.set_num_threads(threads)
    return read_rows(str(out))
