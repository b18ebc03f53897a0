"""Experiment trackers through Ray Tune's own logger callbacks (``tune.loggers`` / ``ablate run --log-to``).

Every store row reaches Ray as a result (ablate.sweep_trial.train_point), so these callbacks see every row:
metrics, ``images_seen``, ``wall_s``, ``status``, at the trainer step (Tune's ``timesteps_total``; step 0,
the untrained model, at step 0, where Ray's own callbacks would put it at Tune's iteration 1). A row with
a sample grid or scatter (``samples_png``, ``eval.grid``) also sends that picture as an image.

- ``tensorboard``: Ray's ``TBXLoggerCallback``: event files in each trial's directory under
  ``<sweep>/tune/`` (``tensorboard --logdir <sweep>/tune``); a resumed trial appends to its directory;
  pictures as the image ``samples`` (TensorBoard's Images tab, one per evaluation step).
- ``mlflow``: Ray's ``MLflowLoggerCallback`` with ``MLFLOW_TRACKING_URI`` or a local SQLite store
  ``<sweep>/mlflow.db`` (artifacts in ``<sweep>/mlartifacts``; MLflow 3 refuses its file store); the experiment is the sweep, one run per trial named after its arm, its flattened
  trainer config as parameters and its ``status`` as a tag, pictures as the artifacts
  ``samples/step_<step>.png``. A resumed sweep finds each trial's run by
  its ``ray_trial_name`` tag and continues it.
- ``wandb``: Ray's ``WandbLoggerCallback``: project ``ablate`` (or ``WANDB_PROJECT``), the sweep as the
  group, the arm as the run name, the flattened config; run files under ``<sweep>/wandb``; the run id is
  Ray's trial id with ``resume="allow"``, so a resumed trial continues its run; pictures as the image
  ``samples``. ``WANDB_MODE=offline``
  keeps everything local (W&B reads it).

A Ray module next to ablate.sweep (which imports it only when a tracker is asked for); each tracker's
package is imported only when asked for. Ray pickles the callbacks with the experiment (cloudpickle), so
``ablate resume`` logs to the same trackers.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import logging
import os
from typing import Any, Callable, Optional

import numpy as np

from ablate import storage
from ablate.spec import Point, SweepSpec
from ablate.train.config import flatten

logger = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "mlflow", "wandb")
#: the package each tracker's callback imports, and the extra of pyproject.toml that installs it
NEEDS = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
         "wandb": ("wandb", "wandb")}
WANDB_PROJECT = "ablate"
MLFLOW_DB = "mlflow.db"  # <sweep>/mlflow.db: the MLflow store when MLFLOW_TRACKING_URI is not set


class TrackerError(ValueError):
    """A tracker that cannot be used here: unknown, or its package is not installed."""


def check_trackers(names: list[str]) -> None:
    """Raise :class:`TrackerError` naming the extra to install for a tracker whose package is missing."""
    for name in names:
        if name not in NEEDS:
            raise TrackerError(f"tune.loggers: unknown tracker {name!r}; allowed: {', '.join(TRACKERS)}")
    for name in names:
        package, extra = NEEDS[name]
        if importlib.util.find_spec(package) is None:
            raise TrackerError(f"tune.loggers: {name} needs the {package} package: "
                               f"pip install -e \".[{extra}]\" (or pip install 'ablate[{extra}]')")


def trial_params(point: Point, spec: SweepSpec) -> dict[str, Any]:
    """The trial's trainer config flattened to dotted keys, lists as their text (tracker parameters)."""
    cfg = spec.config_for(point.params, point.variant, point.seed)
    return {key: str(value) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(cfg).items()}


def samples_image(sweep_dir: str, result: dict[str, Any]) -> Optional[np.ndarray]:
    """The picture of a row (``samples_png``, relative to the sweep) as an H x W x 3 uint8 array, or None."""
    relative = result.get("samples_png")
    if not relative:
        return None
    from PIL import Image

    location = storage.join(sweep_dir, relative)
    try:
        with Image.open(io.BytesIO(storage.read_bytes(location))) as picture:
            return np.asarray(picture.convert("RGB"))
    except OSError as error:  # a tracker's missing picture must not stop the sweep: its rows are stored
        logger.warning("trackers: %s: cannot read the sample picture (%s); not logged", location, error)
        return None


def _step(result: dict[str, Any]) -> int:
    """The trainer step of a result (Ray's callbacks take ``timesteps_total or training_iteration``, which
    puts step 0 at iteration 1)."""
    from ray.tune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION

    return result[TIMESTEPS_TOTAL] if TIMESTEPS_TOTAL in result else result[TRAINING_ITERATION]


def callbacks(names: list[str], spec: SweepSpec, sweep_dir: str,
              describe: Callable[[Any], tuple[str, dict[str, Any]]]) -> list:
    """Ray logger callbacks for ``names``; ``describe(trial)`` gives the trial's arm and parameters."""
    check_trackers(names)
    made = []
    sweep_name = sweep_dir.rstrip("/").rsplit("/", 1)[-1]
    if "tensorboard" in names:
        made.append(_tensorboard_callback(sweep_dir))
    if "mlflow" in names:
        made.append(_mlflow_callback(sweep_dir, sweep_name, describe))
    if "wandb" in names:
        made.append(_wandb_callback(sweep_dir, sweep_name, describe))
    return made


def _tensorboard_callback(sweep_dir: str):
    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.result import TRAINING_ITERATION

    class SweepTBXCallback(TBXLoggerCallback):
        """Ray's TensorBoard callback at the trainer step (step 0 included), with the sample pictures."""

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            # Ray's step is `timesteps_total or training_iteration`: the iteration it falls back to for step
            # 0 is made that step (Ray does not log the iteration itself to TensorBoard)
            super().log_trial_result(iteration, trial, {**result, TRAINING_ITERATION: _step(result)})
            image = samples_image(sweep_dir, result)
            if image is not None:
                self._trial_writer[trial].add_image("samples", image, global_step=_step(result),
                                                    dataformats="HWC")
                self._trial_writer[trial].flush()

    return SweepTBXCallback()


@functools.lru_cache(maxsize=None)
def _mlflow_client(uri: str):
    """One client per store (a SQLite store opens its engine once, not at every row)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _mlflow_callback(sweep_dir: str, sweep_name: str, describe):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class SweepMLflowCallback(MLflowLoggerCallback):
        """Ray's MLflow callback, its runs named after arms, continued on resume (found by their
        ``ray_trial_name`` tag), with the trainer config as parameters and ``status`` as a tag."""

        def log_trial_start(self, trial) -> None:
            if trial not in self._trial_runs:
                client = _mlflow_client(self.tracking_uri)
                experiment = client.get_experiment_by_name(self.experiment_name)
                found = client.search_runs([experiment.experiment_id],
                                           f"tags.ray_trial_name = '{trial}'") if experiment else []
                arm, params = describe(trial)
                if found:
                    self._trial_runs[trial] = found[0].info.run_id
                else:
                    run = self.mlflow_util.start_run(tags={**self.tags, "ray_trial_name": str(trial),
                                                           "arm": arm}, run_name=arm, set_active=False)
                    self._trial_runs[trial] = run.info.run_id
                    self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=params)

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            run_id = self._trial_runs[trial]
            self.mlflow_util.log_metrics(run_id=run_id, metrics_to_log=result, step=_step(result))
            client = _mlflow_client(self.tracking_uri)
            if "status" in result:
                client.set_tag(run_id, "status", result["status"])
            image = samples_image(sweep_dir, result)
            if image is not None:
                client.log_image(run_id, image, artifact_file=f"samples/step_{_step(result):08d}.png")

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:  # MLflow 3 refuses its file store: a SQLite store and artifacts in the sweep
        if not storage.is_local(sweep_dir):
            raise TrackerError(f"tune.loggers: mlflow: {sweep_dir} is not on this machine; set "
                               "MLFLOW_TRACKING_URI to your tracking server")
        local = storage.local_path(sweep_dir)
        os.makedirs(local, exist_ok=True)
        uri = f"sqlite:///{os.path.join(local, MLFLOW_DB)}"
        client = _mlflow_client(uri)
        if client.get_experiment_by_name(sweep_name) is None:
            client.create_experiment(sweep_name, artifact_location="file://" + os.path.join(local, "mlartifacts"))
    return SweepMLflowCallback(tracking_uri=uri, experiment_name=sweep_name)


def _wandb_callback(sweep_dir: str, sweep_name: str, describe):
    from ray.air.integrations.wandb import WandbLoggerCallback

    class SweepWandbCallback(WandbLoggerCallback):
        """Ray's W&B callback, each run named after its arm with the trainer config, continued on resume."""

        def log_trial_start(self, trial) -> None:
            arm, params = describe(trial)
            self.kwargs = {**self._fixed, "name": arm, "config": params}
            super().log_trial_start(trial)

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            image = samples_image(sweep_dir, result)  # an H x W x 3 array: Ray's callback makes it a wandb.Image
            super().log_trial_result(iteration, trial, result if image is None else {**result, "samples": image})

    directory = None
    if storage.is_local(sweep_dir):
        directory = os.path.join(storage.local_path(sweep_dir), "wandb")
        os.makedirs(directory, exist_ok=True)
    fixed = {"resume": "allow", **({"dir": directory} if directory else {})}
    # Tune waits for each run's logging actor at the end (30 minutes by default, for uploads); offline
    # there is nothing to upload, and a Ctrl-C that also reached the actors' W&B processes would wait it all
    offline = os.environ.get("WANDB_MODE") in ("offline", "disabled")
    callback = SweepWandbCallback(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), group=sweep_name,
                                  **({"upload_timeout": 30} if offline else {}), **fixed)
    callback._fixed = fixed
    return callback
