"""One trial of a sweep inside Ray Tune: its point, its columns, the trainable that trains it and
reports every store row to Tune with checkpoint markers (a Ray module, beside :mod:`ablate.sweep`)."""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import tempfile
from typing import Any, Callable, Optional

import ray
from ray import tune
from ray.tune.result import TIMESTEPS_TOTAL

from . import storage
from .progress import arm_label
from .spec import Point, SweepSpec, make_point
from .train.columns import ColumnTypes, merge_columns, row_columns


log = logging.getLogger(__name__)

STATE_DIR = "checkpoints"  # <sweep>/checkpoints/<trial_id>.pt: each trial's latest trainer state
EVALUATIONS = "evaluations"  # the schedulers' time: evaluations after step 0 (``evaluations``)
#: the report hook (README *Development*): ``module:function``, called in every trial process after each
#: row as ``function(trial_id, row, rank, first_attempt)``; what it raises fails the trial as any error
#: does. The tests inject their faults through it (tests/faults.py).
REPORT_HOOK_ENV = "ABLATE_REPORT_HOOK"
ReportHook = Callable[[str, dict[str, Any], int, bool], None]


def _for_ray(location: str) -> str:
    """How Ray Tune takes a location: a local path as a path, any other URI as it is."""
    return storage.local_path(location) if storage.is_local(location) else location


# ------------------------------------------------------------------------------------- points
def point_columns(point: Point, spec: SweepSpec) -> dict[str, Any]:
    return {"sweep": spec.name, "arm": arm_label(point), "variant": point.variant,
            "point_key": point.key}


#: where a trial ran (``train_point``): the Ray node and the GPUs Ray assigned
PLACEMENT_COLUMNS = {"node_id": str, "ray_gpu_ids": str}


def sweep_columns(spec: SweepSpec) -> ColumnTypes:
    """The columns of every row of every trial of the sweep (the union over its probe points), so
    that all its files share one schema and any Parquet reader of the store sees every column."""
    from .data import describe_dataset

    parts = [PLACEMENT_COLUMNS]
    for params, variant in spec.probe_points():
        cfg = spec.config_for(params, variant, spec.seeds[0])
        extra = point_columns(make_point(params, variant, spec.seeds[0]), spec)
        parts.append(row_columns(cfg, describe_dataset(cfg.data).kind, True, extra))
    return merge_columns(*parts)


# ------------------------------------------------------------------------------------ trainable
def _point_of(config: dict[str, Any], spec: SweepSpec) -> Point:
    if "point" in config:  # grid / random: the full point was enumerated up front
        p = config["point"]
        return make_point(p["params"], p["variant"], p["seed"])
    params = {k: v for k, v in config.items()}
    return make_point(params, None, spec.seeds[0])


def report_hook() -> Optional[ReportHook]:
    """The function ``ABLATE_REPORT_HOOK`` names, or None."""
    name = os.environ.get(REPORT_HOOK_ENV)
    if not name:
        return None
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def _ray_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The numeric and short string fields of a row that Ray keeps in its result table."""
    return {k: v for k, v in row.items() if "." not in k and isinstance(v, (int, float, str, bool))}


def train_point(config: dict[str, Any], spec: SweepSpec, sweep_dir: str, columns: ColumnTypes) -> None:
    """The Ray Tune trainable: one point of the search space, one seed."""
    # imported here, in the trial's worker: the driver (and `ablate status`) never trains, and torch
    # with the evaluation stack (POT loads scikit-learn and scipy.stats) costs it ~3 s to import
    import torch

    from .trial import prepare_trial, run_trial

    point = _point_of(config, spec)
    context = tune.get_context()
    trial_id = point.trial_name if "point" in config else f"{context.get_trial_name()}"
    resources = context.get_trial_resources().required_resources
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    gpu_ids = ray.get_gpu_ids()  # Ray sets CUDA_VISIBLE_DEVICES to these, so "cuda" is the assigned one
    device = torch.device("cuda" if gpu_ids and torch.cuda.is_available() else "cpu")
    if gpu_ids and device.type == "cpu":
        log.warning("trial %s: Ray assigned GPU %s but CUDA is not available; training on CPU",
                    trial_id, gpu_ids)
    cfg = spec.config_for(point.params, point.variant, point.seed)
    if cfg.train.device == "auto":
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": device.type})})
    placement = {"node_id": ray.get_runtime_context().get_node_id(),
                 "ray_gpu_ids": ",".join(str(gpu) for gpu in gpu_ids)}
    setup = prepare_trial(cfg, sweep_dir, {**point_columns(point, spec), **placement}, device,
                          pictures_under=f"samples/{trial_id}",  # next to the store, wherever that is
                          schema=columns)

    # Tune's checkpoints are markers ("this trial has state to continue from"); the state itself is one
    # file per trial in the store, replaced whole at each checkpoint. Tune deletes old checkpoints before
    # its experiment state on storage stops naming them, so a driver killed in between would leave a
    # resume that restores from (or deletes) a checkpoint that is gone; markers are never deleted.
    state_file = storage.join(sweep_dir, STATE_DIR, f"{trial_id}.pt")
    resume = tune.get_checkpoint() is not None
    first_attempt = not resume and not _store_has_rows(sweep_dir, trial_id)
    told = TuneResults(spec.tune.metric, cfg)
    hook = report_hook()

    def report(row: dict[str, Any], trainer, _checkpoint_due: bool) -> None:
        if hook is not None:
            hook(trial_id, row, 0, first_attempt)
        values, checkpoint = told(row)
        if not checkpoint:
            tune.report(values)
            return
        _save_state(trainer, state_file)
        with tempfile.TemporaryDirectory() as marker:
            with open(os.path.join(marker, "step.json"), "w") as out:
                json.dump({"step": row["step"], "state": state_file}, out)
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(marker))

    if resume and not storage.exists(state_file):
        raise RuntimeError(f"{state_file}: missing: Ray Tune has a checkpoint of trial {trial_id} but "
                           "the trainer state it marks is gone")
    with _local_copy(state_file) if resume else contextlib.nullcontext() as resume_from:
        run_trial(setup, sweep_dir, trial_id, resume_from=resume_from, on_report=report,
                  summary_metric=(spec.tune.metric, spec.tune.mode))
    if not told.count:
        tell_finished(sweep_dir, trial_id, told)


class TuneResults:
    """What a trial tells Tune of each row it stored, and when with a checkpoint marker.

    Every row reaches Tune (the trackers log each one) with the step as ``timesteps_total``, the
    evaluations so far (``EVALUATIONS``, the schedulers' time), ``evaluated`` (an evaluation after step
    0: the rows schedulers and the Optuna searcher judge) and the metric: the last evaluation's value,
    repeated between evaluations. An evaluation or the last row is a checkpoint every
    ``log.checkpoint_every`` of them and at the end (not after a divergence: nothing to continue)."""

    def __init__(self, metric: str, cfg):
        self.metric, self.cfg = metric, cfg
        self.last, self.judged, self.count = math.nan, 0, 0

    def __call__(self, row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``row``'s Tune result, and whether it comes with a checkpoint."""
        self.count += 1
        final = row["status"] != "running"
        value = row.get(self.metric)
        if value is not None:
            self.last = value
        evaluated = value is not None and row["step"] > 0  # step 0: the untrained model, no rung
        values = {**_ray_metrics(row), self.metric: self.last, "evaluated": evaluated,
                  EVALUATIONS: evaluations(row["step"], self.cfg), TIMESTEPS_TOTAL: row["step"]}
        if not (evaluated or final):
            return values, False
        self.judged += 1
        return values, row["status"] != "diverged" and (final or self.judged % self.cfg.log.checkpoint_every == 0)


def tell_finished(sweep_dir: str, trial_id: str, told: TuneResults) -> None:
    """Tune's result for a trial that finished before Tune heard it: resumed from a checkpoint of a
    finished trial (a driver stopped between the trial's last stored row and Tune's processing of it), it
    trains no further and stores nothing, so its last stored row is told again; else Tune would end the
    trial on the last result it did hear (a running one: the Optuna searcher would call it PRUNED)."""
    from .results import last_row

    row = last_row(sweep_dir, trial_id)
    if row is not None and row["status"] != "running":
        log.info("trial %s: finished at step %d before the driver heard it; telling it now", trial_id, row["step"])
        tune.report(told(row)[0])


def _save_state(trainer, location: str) -> None:
    """The trainer's state to ``location``, replacing the previous one whole (never half-written)."""
    if storage.is_local(location):
        trainer.save(storage.local_path(location))  # a temporary file renamed into place
        return
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save(os.path.join(tmp, "trainer.pt"))
        storage.upload(os.path.join(tmp, "trainer.pt"), location)


@contextlib.contextmanager
def _local_copy(location: str):
    """A local path to the file at ``location``: itself when local, else a download removed afterwards."""
    if storage.is_local(location):
        yield storage.local_path(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(location))
        storage.download(location, path)
        yield path


def evaluations(step: int, cfg) -> int:
    """Evaluations after step 0 up to ``step``: every ``eval.every`` steps and at the last step. The
    schedulers' time (``EVALUATIONS``): a function of the step, so a trial resumed from a checkpoint
    counts on where it was."""
    every, last = cfg.eval.every, cfg.train.iterations
    return step // every + (1 if step == last and step % every else 0)


def _store_has_rows(sweep_dir: str, trial_id: str) -> bool:
    return storage.exists(storage.join(sweep_dir, "metrics", trial_id))
