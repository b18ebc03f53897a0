"""Trials larger than one process: a Tune trial that trains on ``train.distributed.workers`` Ray Train
workers (a second Ray module next to :mod:`ablate.sweep`, which picks this trainable when a point asks
for more than one worker).

The Tune trial is the driver of a Ray Train ``TorchTrainer`` (Ray Train V2, the default since Ray 2.51:
"a Tune trial launches a Ray Train run", ray.tune.integration.ray_train). The workers each ask
``tune.resources`` (per worker: ``{cpu, gpu}``), Ray Train creates the torch.distributed process group
(``train.distributed.backend``: NCCL on GPUs, gloo on CPUs) and every worker runs the same trainer
(:class:`ablate.train.distributed.DataParallel` slices the batch and all-reduces gradients).

Rank 0 alone evaluates and writes: rows to the store (:func:`ablate.trial.run_trial`), sample pictures,
the trainer state every ``log.checkpoint_every`` results; it sends each Tune result (built by
:class:`ablate.sweep_trial.TuneResults`, as a single-process trial's) through a Ray queue to the trial,
which reports it to Tune, with a checkpoint marker where one is due, exactly as
:func:`ablate.sweep_trial.train_point` does (Ray's own ``TuneReportCallback`` forwards metrics only, so Tune would hold no checkpoint to resume
from). Every rank loads the same state file when the trial resumes. A failed worker fails the Ray Train
run (``FailureConfig(max_failures=0)``), hence the Tune trial, which Tune retries from its last
checkpoint (``tune.max_failures``): the store drops the rows past that checkpoint (a new attempt).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import uuid
from typing import Any, Optional

import ray
from ray import tune

from . import storage
from .spec import SweepSpec
from .sweep_trial import (STATE_DIR, TuneResults, _for_ray, _local_copy, _point_of, _save_state,
                          _store_has_rows, point_columns, report_hook, tell_finished)
from .train.columns import ColumnTypes

#: the memory (bytes) a multi-worker trial's driver reserves: its only resource (workers reserve theirs)
DRIVER_MEMORY = 256 * 2 ** 20
#: how long the trial waits on its queue before looking whether the Ray Train run ended
_POLL_S = 1.0


def multi_worker(spec: SweepSpec) -> bool:
    """Whether any point of the sweep asks for more than one worker."""
    return any(spec.config_for(params, variant, spec.seeds[0]).train.distributed.workers > 1
               for params, variant in spec.probe_points())


def check_worker_resources(spec: SweepSpec, path: str, total: dict[str, float]) -> Optional[str]:
    """Why this cluster can never hold one trial's workers (``tune.resources`` is per worker), or None."""
    res = spec.tune.resources
    workers = max(spec.config_for(params, variant, spec.seeds[0]).train.distributed.workers
                  for params, variant in spec.probe_points())
    for key, per in (("cpu", res.cpu), ("gpu", res.gpu)):
        if per * workers > total.get(key.upper(), 0):
            return (f"{path}: tune.resources: {key}={per:g} per worker x train.distributed.workers="
                    f"{workers} but the Ray cluster has only {total.get(key.upper(), 0):g} {key.upper()}s")
    if res.gpu and res.gpu < 1 and workers > 1:
        return (f"{path}: tune.resources: gpu={res.gpu:g} per worker with train.distributed.workers="
                f"{workers}: NCCL needs one whole GPU per worker (gpu: 1), or use one worker per trial")
    return None


def trainable(spec: SweepSpec, sweep_dir: str, columns: ColumnTypes):
    """The Tune trainable of a multi-worker sweep. The trial itself (the Ray Train driver, idle but for
    relaying results) holds no CPU or GPU, only ``DRIVER_MEMORY`` (Tune refuses a trial without any
    resource); the workers ask for theirs when the trial starts them, so ``workers x tune.resources``
    is what a trial takes."""
    fn = tune.with_parameters(train_point_workers, spec=spec, sweep_dir=sweep_dir, columns=columns)
    return tune.with_resources(fn, {"cpu": 0, "gpu": 0, "memory": DRIVER_MEMORY})


def train_point_workers(config: dict[str, Any], spec: SweepSpec, sweep_dir: str, columns: ColumnTypes) -> None:
    """One point, one seed, on ``train.distributed.workers`` Ray Train workers (module doc)."""
    from ray.train import FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Empty, Queue

    point = _point_of(config, spec)
    context = tune.get_context()
    trial_id = point.trial_name if "point" in config else f"{context.get_trial_name()}"
    cfg = spec.config_for(point.params, point.variant, point.seed)
    res = spec.tune.resources
    use_gpu = res.gpu > 0
    if cfg.train.device == "auto":
        device = "cuda" if use_gpu else "cpu"
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": device})})
    backend = cfg.train.distributed.backend
    if backend == "auto":
        backend = "nccl" if cfg.train.device == "cuda" else "gloo"
    state_file = storage.join(sweep_dir, STATE_DIR, f"{trial_id}.pt")
    resume = tune.get_checkpoint() is not None
    if resume and not storage.exists(state_file):
        raise RuntimeError(f"{state_file}: missing: Ray Tune has a checkpoint of trial {trial_id} but "
                           "the trainer state it marks is gone")
    results: Queue = Queue(actor_options={"num_cpus": 0})
    loop_config = {"cfg": cfg, "spec": spec, "sweep_dir": sweep_dir, "columns": columns, "trial_id": trial_id,
                   "point_columns": point_columns(point, spec), "state_file": state_file, "resume": resume,
                   "first_attempt": not resume and not _store_has_rows(sweep_dir, trial_id),
                   "results": results, "threads": max(1, int(res.cpu))}
    per_worker = {"CPU": res.cpu, **({"GPU": res.gpu} if use_gpu else {})}
    trainer = TorchTrainer(
        _worker_loop, train_loop_config=loop_config, torch_config=TorchConfig(backend=backend),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.train.distributed.workers, use_gpu=use_gpu,
                                               resources_per_worker=per_worker),
        run_config=RunConfig(name=f"{trial_id}-{uuid.uuid4().hex[:8]}",
                             storage_path=_for_ray(storage.join(sweep_dir, "ray_train")),
                             failure_config=FailureConfig(max_failures=0)))
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # re-raised in the trial's thread below
            outcome["error"] = err

    runner = threading.Thread(target=fit, name=f"ray-train-{trial_id}", daemon=True)
    runner.start()
    told = 0
    while True:  # each result rank 0 sent, reported from this (the trial's) thread, until the run ends
        try:
            values, step = results.get(timeout=_POLL_S)
        except Empty:
            if runner.is_alive():
                continue
            if results.empty():
                break
            continue
        told += 1
        if step is None:
            tune.report(values)
            continue
        with tempfile.TemporaryDirectory() as marker:
            with open(os.path.join(marker, "step.json"), "w") as out:
                json.dump({"step": step, "state": state_file}, out)
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(marker))
    runner.join()
    if "error" in outcome:
        raise outcome["error"]
    if not told:
        tell_finished(sweep_dir, trial_id, TuneResults(spec.tune.metric, cfg))


def _worker_loop(loop: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer on this rank's slices; rank 0 evaluates, writes and reports."""
    import torch
    from ray.train import get_context
    from ray.train.torch import get_device

    from .trial import prepare_trial, run_trial

    rank = get_context().get_world_rank()
    torch.set_num_threads(loop["threads"])
    cfg = loop["cfg"]
    device = get_device() if cfg.train.device == "cuda" else torch.device("cpu")
    trial_id, sweep_dir = loop["trial_id"], loop["sweep_dir"]
    hook = report_hook()

    def fault(row: dict[str, Any]) -> None:
        """The report hook (ablate.sweep_trial.REPORT_HOOK_ENV), on every rank."""
        if hook is not None:
            hook(trial_id, row, rank, loop["first_attempt"])

    if rank != 0:  # no evaluation, no diagnostics (they would only be discarded), no writes
        cfg = cfg.model_copy(update={"log": cfg.log.model_copy(update={"diag_every": 0})})
    placement = {"node_id": ray.get_runtime_context().get_node_id(),
                 "ray_gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids())}
    setup = prepare_trial(cfg, sweep_dir if rank == 0 else None, {**loop["point_columns"], **placement},
                          device, pictures_under=f"samples/{trial_id}", schema=loop["columns"])
    resume = loop["resume"]
    with _local_copy(loop["state_file"]) if resume else contextlib.nullcontext() as resume_from:
        if rank != 0:
            setup.trainer.evaluator = None
            if resume_from is not None:
                setup.trainer.load(resume_from)
            setup.trainer.run(lambda row, _tr: fault(row))
            return
        spec = loop["spec"]
        run_trial(setup, sweep_dir, trial_id, resume_from=resume_from,
                  on_report=_rank0_reporter(loop, cfg, fault),
                  summary_metric=(spec.tune.metric, spec.tune.mode))


def _rank0_reporter(loop: dict[str, Any], cfg, fault):
    """Rank 0's hook after each stored row: what :func:`ablate.sweep_trial.train_point`'s does, with the Tune
    result sent to the trial's queue instead of reported here."""
    told = TuneResults(loop["spec"].tune.metric, cfg)

    def report(row: dict[str, Any], trainer, _checkpoint_due: bool) -> None:
        fault(row)
        values, checkpoint = told(row)
        if checkpoint:
            _save_state(trainer, loop["state_file"])
        loop["results"].put((values, row["step"] if checkpoint else None))

    return report
