"""Experiment trackers through Ray Tune's logger callbacks (issue 19): a real sweep with TensorBoard, MLflow
and W&B (offline), stopped by Ctrl-C and resumed; then each tracker's files are read back with its own
reader: TensorBoard's EventAccumulator, MLflow's client (one run per trial, params, metric history per
step, none duplicated after the resume), the W&B offline run directories."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ablate.results import read_rows
from toy import ROOT, SWEEP_TIMEOUT_S, ablate_cli, ablate_cmd, cli_env, toy_space, write_space

pytest.importorskip("tensorboardX", reason="the tensorboard extra: pip install -e '.[tensorboard]'")
pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")
pytest.importorskip("wandb", reason="the wandb extra: pip install -e '.[wandb]'")

ITERATIONS, EVERY, REPORT = 300, 100, 50
SPEC = toy_space("tracked", {"weighting.name": {"grid": ["inv_dt", "edm"]}}, iterations=ITERATIONS,
                 eval_every=EVERY, report_every=REPORT, base={"data": {"n_train": 2000}},
                 tune={"loggers": ["tensorboard", "mlflow"]})


def env(ray_tmp: str) -> dict[str, str]:
    """The CLI's clean environment, offline trackers, and this process's PYTHONPATH after the checkout (where
    the trackers' packages may have been put)."""
    base = cli_env(RAY_TMPDIR=ray_tmp, WANDB_MODE="offline", WANDB_SILENT="true")
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    base.pop("MLFLOW_TRACKING_URI", None)
    return base


@pytest.mark.ray
@pytest.mark.slow
def test_tensorboard_mlflow_and_wandb_get_every_row_and_continue_after_resume(tmp_path: Path,
                                                                             ray_tmp: str) -> None:
    spec = write_space(tmp_path, SPEC)
    sweep = tmp_path / "runs" / "tracked"
    with open(tmp_path / "run.out", "w") as out, open(tmp_path / "run.err", "w") as err:
        driver = subprocess.Popen(ablate_cmd("run", str(spec), "--out", str(tmp_path / "runs"), "--num-cpus", "2",
                                             "--quiet", "--log-to", "wandb"), cwd=ROOT, env=env(ray_tmp),
                                  stdout=out, stderr=err, start_new_session=True)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while True:  # stop once a trial is past its first checkpoint (step 100) and before all have finished
        assert driver.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
        assert time.monotonic() < deadline
        try:
            rows = read_rows(str(sweep))
        except (FileNotFoundError, ValueError):
            rows = None
        if rows is not None and len(rows) and rows["step"].max() > EVERY:
            break
        time.sleep(0.3)
    os.killpg(driver.pid, signal.SIGINT)
    driver.wait(timeout=180)
    assert driver.returncode == 128 + signal.SIGINT, (tmp_path / "run.err").read_text()[-3000:]
    done = ablate_cli("resume", str(sweep), "--quiet", env=env(ray_tmp))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    check_records(sweep)


def check_rows(logged: dict[int, float], stored: pd.Series) -> None:
    """A tracker's series of one column against the store's: every row of the trial logged at its step
    with its value (step 0 at step 0), but for at most one row: the one a trial wrote while the driver was
    stopping, which never reached Ray (its resumed trainer state is past it)."""
    expected = dict(stored.items())
    assert set(logged) <= set(expected) and len(set(expected) - set(logged)) <= 1, (logged, expected)
    assert all(logged[step] == pytest.approx(expected[step]) for step in logged)


def check_records(sweep: Path) -> None:
    """Each tracker's records of the finished sweep against its store."""
    rows = read_rows(str(sweep))
    trials = sorted(rows["trial_id"].unique())
    assert len(trials) == 2
    arms = rows.groupby("trial_id")["arm"].first().to_dict()  # one seed: an arm is a trial
    w2 = rows.dropna(subset=["w2_1step"]).set_index(["trial_id", "step"])["w2_1step"]
    pictured = set(range(0, ITERATIONS + 1, EVERY))  # eval.grid: a scatter at every evaluation
    assert rows.dropna(subset=["samples_png"])["step"].unique().tolist() == sorted(pictured)

    # MLflow: one run per trial, named after its arm, the trainer config as params, every row's metrics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(arms.values())  # none duplicated by the resume
    ray_names = {}
    for trial, arm in arms.items():
        (run,) = [run for run in runs if run.info.run_name == arm]
        ray_names[trial] = run.data.tags["ray_trial_name"]
        assert run.data.tags["status"] == "completed"
        assert run.data.params["weighting.name"] == arm.split("=")[1]
        assert run.data.params["train.iterations"] == str(ITERATIONS)
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "images_seen")}
        check_rows(logged, rows[rows["trial_id"] == trial].set_index("step")["images_seen"])
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "w2_1step")}
        for step in set(history) & set(range(EVERY, ITERATIONS + 1, EVERY)):
            assert history[step] == pytest.approx(w2[(trial, step)])
        assert ITERATIONS in history and 0 in history
        pictures = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        check_pictures({int(p.split("_")[-1][:-4]) for p in pictures}, pictured)
        assert all(p == f"samples/step_{int(p.split('_')[-1][:-4]):08d}.png" for p in pictures)

    # TensorBoard: the event files of each trial's directory, read with TensorBoard's own reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial, ray_name in ray_names.items():
        (trial_dir,) = [d for d in (sweep / "tune").iterdir() if d.is_dir() and d.name.startswith(ray_name + "_")]
        events = EventAccumulator(str(trial_dir))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert "ray/tune/images_seen" in tags and "ray/tune/wall_s" in tags
        check_rows({e.step: e.value for e in events.Scalars("ray/tune/images_seen")},
                   rows[rows["trial_id"] == trial].set_index("step")["images_seen"])
        scalars = {e.step: e.value for e in events.Scalars("ray/tune/w2_1step")}
        for step in set(scalars) & set(range(EVERY, ITERATIONS + 1, EVERY)):
            assert scalars[step] == pytest.approx(w2[(trial, step)])
        assert ITERATIONS in scalars and 0 in scalars
        images = events.Images("samples")
        check_pictures({image.step for image in images}, pictured)
        assert all(image.width > 100 and image.height > 100 for image in images)

    # W&B offline: runs under <sweep>/wandb, one run id per trial (Ray's trial id), resumed in a second
    # directory of the same id
    run_dirs = sorted((sweep / "wandb" / "wandb").glob("offline-run-*"))
    ids = {d.name.split("-", 3)[-1] for d in run_dirs}
    assert sorted(ids) == sorted(name.split("_", 2)[-1] for name in ray_names.values()), run_dirs
    assert all(list(d.glob("*.wandb")) for d in run_dirs)
    for trial_id in ids:  # the pictures as W&B images (media files of the run's directories)
        media = [p for d in run_dirs if d.name.endswith(trial_id) for p in d.glob("files/media/images/samples_*.png")]
        assert len(pictured) - 1 <= len(media) <= len(pictured), media


def check_pictures(logged: set[int], pictured: set[int]) -> None:
    """A tracker's picture steps: every evaluation's, but for at most one (see check_rows)."""
    assert logged <= pictured and len(pictured - logged) <= 1, (logged, pictured)


def test_an_unknown_tracker_or_a_missing_package_is_named_before_anything_starts(tmp_path: Path) -> None:
    from ablate.trackers import TrackerError, check_trackers

    with pytest.raises(TrackerError, match="unknown tracker 'neptune'; allowed: tensorboard, mlflow, wandb"):
        check_trackers(["mlflow", "neptune"])
    done = ablate_cli("run", str(write_space(tmp_path, SPEC)), "--log-to", "nothing", "--out", str(tmp_path))
    assert done.returncode == 2 and "unknown tracker 'nothing'" in done.stderr
    # wandb made unimportable (as if not installed) in a real `ablate run`
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['wandb'] = None; "
                           "from ablate.cli import main; sys.exit(main(sys.argv[1:]))", "run",
                           str(write_space(tmp_path, SPEC)), "--log-to", "wandb", "--out", str(tmp_path / "o")],
                          cwd=ROOT, env=env("unused"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert 'tune.loggers: wandb needs the wandb package: pip install -e ".[wandb]"' in done.stderr
    assert not (tmp_path / "o").exists()
