"""The Optuna study of an optuna sweep in its Optuna storage (issue 19): a real Optuna + ASHA sweep through
``ablate run``, stopped by Ctrl-C and finished by ``ablate resume``; ``optuna.load_study`` on the sweep's
``optuna.db`` must give every trial with the state the store records (completed -> COMPLETE, stopped early
-> PRUNED, errored -> FAIL), its params and its intermediate values, before and after the resume, with no
duplicate trial."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from ablate.results import read_rows, trial_status
from ablate.sweep_trial import STATE_DIR
from faults import fault_env
from test_resume import kill_driver, start_driver, tune_state, wait_for
from toy import ROOT, SWEEP_TIMEOUT_S, ablate_cli, ablate_cmd, cli_env, toy_space, write_space


SAMPLES = 4
# RandomSampler(seed=10) proposes lr 1e-3, 1e-3, 1e-7, 1e6 in this order, one trial at a time: the first
# two complete, ASHA (grace 1, rf 2) stops the third at its first rung (lr 1e-7 leaves the model as
# initialised), the fourth diverges (its loss is NaN by step 50)
# a wide MLP and large batches: each trial runs several seconds, so that the second one is still running
# when the test stops the driver (a trial that ends during the stop is a known issue, README)
SPEC = toy_space("study", {"train.lr": {"choice": [1.0e-3, 1.0e-7, 1.0e6]}}, iterations=100, eval_every=50,
                 base={"model": {"hidden": 512, "depth": 3}, "discretization": {"s1": 20},
                       "train": {"ema": [0.99], "batch_size": 1000},
                       "eval": {"grid": False}},
                 tune={"searcher": {"name": "optuna", "num_samples": SAMPLES, "sampler": "random", "seed": 10},
                       "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
                       "max_concurrent": 1})
STATE = {"completed": "COMPLETE", "stopped_early": "PRUNED", "errored": "FAIL", "diverged": "FAIL",
         "interrupted": "RUNNING"}


def study_trials(sweep: Path) -> list[optuna.trial.FrozenTrial]:
    if not (sweep / "optuna.db").exists():
        return []
    try:
        return optuna.load_study(study_name=sweep.name, storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    except KeyError:  # the driver has not created the study yet
        return []


def check_study(sweep: Path, finished: bool) -> None:
    """Each Optuna trial against the store's record of the Ray trial it is tagged with."""
    trials = study_trials(sweep)
    rows = read_rows(str(sweep))
    status = trial_status(str(sweep)).set_index("trial_id")["status"]
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in trials}
    assert len(by_ray_id) == len(trials)  # one Optuna trial per Ray trial: nothing duplicated
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    if finished:
        assert len(trials) == SAMPLES and all(t.state.is_finished() for t in trials)
    for trial_id, st in status.items():
        (ray_id,) = [r for r in by_ray_id if trial_id.endswith(r)]
        frozen = by_ray_id[ray_id]
        assert frozen.state.name == STATE[st], (trial_id, st, frozen.state)
        mine = rows[rows["trial_id"] == trial_id]
        assert frozen.params == {"train.lr": mine["train.lr"].iloc[0]}
        evals = mine[(mine["step"] > 0) & mine["w2_1step"].notna()].set_index("step")["w2_1step"]
        if st in ("completed", "stopped_early"):
            assert sorted(frozen.intermediate_values) == sorted(evals.index)
        else:  # diverged or errored: its evaluations before the end; interrupted: up to the stop
            assert set(frozen.intermediate_values) <= set(evals.index)
        for step, value in frozen.intermediate_values.items():
            assert value == pytest.approx(evals[step]), (trial_id, step)
        if st == "completed":
            assert frozen.value == pytest.approx(evals.iloc[-1])


@pytest.mark.ray
@pytest.mark.slow
def test_optuna_study_in_its_database_survives_ctrl_c_and_resume(tmp_path: Path, ray_tmp: str) -> None:
    spec = write_space(tmp_path, SPEC)
    sweep = tmp_path / "runs" / "study"
    env = cli_env(RAY_TMPDIR=ray_tmp)
    with open(tmp_path / "run.out", "w") as out, open(tmp_path / "run.err", "w") as err:
        driver = subprocess.Popen(ablate_cmd("run", str(spec), "--out", str(tmp_path / "runs"), "--num-cpus", "2",
                                             "--quiet"), cwd=ROOT, env=env, stdout=out, stderr=err,
                                  start_new_session=True)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    # stop once the second trial runs: the first is told to the study, the second is interrupted
    while len([t for t in study_trials(sweep) if t.state.is_finished()]) < 1 or len(study_trials(sweep)) < 2:
        assert driver.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "the sweep never got to its second trial"
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGINT)
    driver.wait(timeout=180)
    assert driver.returncode == 128 + signal.SIGINT, (tmp_path / "run.err").read_text()[-3000:]
    assert f"optuna-dashboard sqlite:///{sweep / 'optuna.db'}" in (tmp_path / "run.out").read_text()
    check_study(sweep, finished=False)

    done = ablate_cli("resume", str(sweep), "--quiet", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    check_study(sweep, finished=True)
    states = sorted(t.state.name for t in study_trials(sweep))
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"], states


def tune_heard_checkpoint_at(sweep: Path, step: int) -> bool:
    """Whether Tune's saved experiment state has a trial whose last result is ``step`` with a checkpoint."""
    try:
        trials = json.loads(tune_state(sweep).read_text())["trial_data"]
    except (ValueError, OSError, KeyError):  # not written yet, or caught mid-copy
        return False
    lasts = [json.loads(runtime)["last_result"] for _, runtime in trials]
    return any(last.get("step") == step and last.get("checkpoint_dir_name") for last in lasts)


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_that_finished_as_its_driver_died_is_complete_in_the_study_after_resume(tmp_path: Path) -> None:
    """The trial stores its last row (step 100, completed) and the driver is frozen before Tune hears of it;
    the trial then saves its final state, and the driver is killed. On resume Tune restarts the trial from
    the checkpoint it knew (step 50), whose state file is the final one: the trial trains no further,
    stores nothing, and tells Tune its stored last row, so the study records it COMPLETE with its value
    (before, Tune ended it on its step-50 result and the searcher told the study PRUNED)."""
    spec = write_space(tmp_path, {**toy_space("finish", {"train.lr": {"choice": [1.0e-3]}}, iterations=100,
                                              eval_every=50, base={"eval": {"grid": False}}),
                                  "tune": {**SPEC["tune"], "searcher": {**SPEC["tune"]["searcher"], "num_samples": 1},
                                           "scheduler": {"name": "fifo"}}})
    sweep, gate = tmp_path / "runs" / "finish", tmp_path / "gate"
    driver = start_driver("run", str(spec), "--out", str(tmp_path / "runs"), "--num-cpus", "1", "--quiet",
                          TUNE_GLOBAL_CHECKPOINT_S="1",
                          **fault_env(ABLATE_FAULT_STEP="100", ABLATE_FAULT_WAIT_FOR=str(gate)))
    wait_for(lambda: Path(f"{gate}.reached").exists(), "the trial's last row", driver)
    wait_for(lambda: tune_heard_checkpoint_at(sweep, 50), "Tune's saved state to hold the step-50 checkpoint", driver)
    assert [t.state.name for t in study_trials(sweep)] == ["RUNNING"]
    (state_file,) = (sweep / STATE_DIR).glob("*.pt")
    saved_at = state_file.stat().st_mtime_ns
    os.kill(driver.pid, signal.SIGSTOP)  # Tune hears nothing more
    gate.touch()
    wait_for(lambda: state_file.stat().st_mtime_ns != saved_at, "the final state", driver)
    kill_driver(driver)
    assert trial_status(str(sweep))["status"].tolist() == ["completed"]
    assert [t.state.name for t in study_trials(sweep)] == ["RUNNING"]

    done = ablate_cli("resume", str(sweep), "--quiet", env=cli_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    check_study(sweep, finished=False)
    (frozen,) = study_trials(sweep)
    assert frozen.state.name == "COMPLETE" and sorted(frozen.intermediate_values) == [50, 100]
    status = trial_status(str(sweep))
    attempts = sorted(p.read_text() for p in (sweep / "metrics").glob("*/_attempt-*.json"))
    assert status["attempts"].tolist() == [1], (attempts, done.stderr[-3000:])  # the resume trained nothing
    assert status["n_rows"].tolist() == [len(read_rows(str(sweep)))]


@pytest.mark.ray
@pytest.mark.slow
def test_a_storage_that_already_holds_the_sweeps_study_is_refused(tmp_path: Path, ray_tmp: str) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="study", storage=url)
    spec = write_space(tmp_path, {**SPEC, "tune": {**SPEC["tune"], "searcher": {
        **SPEC["tune"]["searcher"], "storage": url}}})
    done = ablate_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--num-cpus", "1", "--quiet",
                      env=cli_env(RAY_TMPDIR=ray_tmp))
    assert done.returncode == 2
    assert f"tune.searcher.storage {url}: already holds a study named 'study'" in done.stderr


def test_restore_reconciles_the_study_with_the_searcher_ray_saved(tmp_path: Path) -> None:
    """A driver killed after Ray's last save of the searcher: the database may hold a trial asked since
    (it never ran: FAIL) and a trial told since (not told again when Ray completes it on resume)."""
    from ablate.spec import load_spec
    from ablate.sweep_search import _searcher

    spec = load_spec(str(write_space(tmp_path, SPEC)))
    sweep = tmp_path / "runs" / "study"
    limiter = _searcher(spec, str(sweep), notify=lambda line: None)
    searcher = limiter.searcher
    for trial_id in ("t0", "t1"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("t0", {"w2_1step": 0.4, "step": 50, "evaluated": True})
    searcher.on_trial_result("t0", {"w2_1step": 0.9, "step": 60, "evaluated": False})  # not an evaluation
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.on_trial_complete("t0", {"w2_1step": 0.3, "step": 100, "evaluated": True, "status": "completed"})
    searcher.suggest("t2")  # asked after the save: Ray's restored state will not know it

    restored = _searcher(spec, str(tmp_path / "runs" / "other"), notify=lambda line: None).searcher
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t0", {"w2_1step": 0.3, "step": 100, "evaluated": True, "status": "completed"})
    restored.on_trial_complete("t1", {"w2_1step": 0.5, "step": 50, "evaluated": True, "status": "running"})
    trials = study_trials(sweep)
    assert [(t.user_attrs["ray_trial_id"], t.state.name) for t in trials] == \
        [("t0", "COMPLETE"), ("t1", "PRUNED"), ("t2", "FAIL")]
    assert trials[0].intermediate_values == {50: 0.4, 100: 0.3} and trials[0].value == 0.3
    assert trials[1].intermediate_values == {50: 0.5}
