"""Ray Tune sweeps: the only module that imports ray.

A sweep directory (local path or any pyarrow URI) holds::

    sweep.json          what ran: name, source file, its sha256, profile, --set overrides, Ray version,
                        and what the status table needs (ablate.progress.table_view)
    spec.yaml           the search-space file's text as it was when the sweep began
    metrics/<trial>/    the results store (ablate.results), written from inside each trial
    tune/               Ray Tune's experiment (trial state, searcher/scheduler state, checkpoints)
    samples/<trial>/    sample grids and scatters, step_<step>.png (the rows' ``samples_png``)
    ray_train/          Ray Train's records of multi-worker trials (ablate.sweep_workers)
    optuna.db           an optuna sweep's Optuna study (or the file's ``tune.searcher.storage``)
    mlflow.db, wandb/   trackers' records with ``tune.loggers`` (ablate.trackers; TensorBoard's are in tune/)

Each trial reports every store row to the store and to Ray (so that the trackers' logger callbacks,
ablate.trackers, see every row, with the trainer step as Tune's ``timesteps_total``); the results of
evaluations (``evaluated``) carry a checkpoint every ``log.checkpoint_every``. Schedulers judge only
evaluations and final results, and their time is ``evaluations``, the number of evaluations after step 0.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.result import TIMESTEPS_TOTAL
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from . import results, storage
from .interrupt import StopSignals, exit_status
from .progress import SPEC_FILE, SWEEP_FILE, SweepError, arm_label, load_sweep, render_table, table_view
from .spec import Point, SweepSpec, load_spec, make_point
from .train.columns import ColumnTypes, merge_columns, row_columns

log = logging.getLogger(__name__)

TUNE_DIR = "tune"
STATE_DIR = "checkpoints"  # <sweep>/checkpoints/<trial_id>.pt: each trial's latest trainer state
EVALUATIONS = "evaluations"  # the schedulers' time: evaluations after step 0 (``evaluations``)
OPTUNA_DB = "optuna.db"  # <sweep>/optuna.db: the Optuna study of an optuna sweep (optuna_storage)
#: test-only fault injection at report step ABLATE_FAULT_STEP: once (first attempt) in trials whose
#: name contains ABLATE_FAULT_TRIALS (all trials if unset), on every attempt in trials whose name
#: contains ABLATE_FAULT_ALWAYS (so they end errored when their retries run out)
FAULT_STEP_ENV, FAULT_TRIALS_ENV, FAULT_ALWAYS_ENV = "ABLATE_FAULT_STEP", "ABLATE_FAULT_TRIALS", "ABLATE_FAULT_ALWAYS"


class SweepInterrupted(RuntimeError):
    """The driver stopped on SIGINT or SIGTERM: Ray Tune saved its state, the trials that were running are
    recorded ``interrupted``, and ``ablate resume`` continues the sweep when ``resumable`` (Tune had saved
    a state to continue from: not so when the signal came before its first trial started)."""

    def __init__(self, sweep_dir: str, signum: int, resumable: bool):
        super().__init__(f"{sweep_dir}: interrupted by {signal.Signals(signum).name}")
        self.sweep_dir, self.signum, self.resumable = sweep_dir, signum, resumable
        self.exit_status = exit_status(signum)


# ----------------------------------------------------------------------------------- locations
def _write_text(location: str, text: str) -> None:
    storage.write_file(location, text.encode())


def _read_text(location: str) -> str:
    return storage.read_bytes(location).decode()


def _for_ray(location: str) -> str:
    """How Ray Tune takes a location: a local path as a path, any other URI as it is."""
    return storage.local_path(location) if storage.is_local(location) else location


def new_sweep_dir(out: str, name: str) -> str:
    """``out/name``, or ``out/name-<timestamp>`` when that already holds a sweep (never overwrite)."""
    candidate = storage.join(out, name)
    if storage.exists(candidate):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        candidate = storage.join(out, f"{name}-{stamp}")
    return candidate


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


def _fault_due(trial_id: str, step: int, attempt_first: bool) -> bool:
    at = os.environ.get(FAULT_STEP_ENV)
    if not at or int(at) != step:
        return False
    always = os.environ.get(FAULT_ALWAYS_ENV)
    if always and always in trial_id:
        return True
    which = os.environ.get(FAULT_TRIALS_ENV)
    return attempt_first and (which is None or which in trial_id)


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
    metric, every = spec.tune.metric, cfg.log.checkpoint_every
    state = {"reports": 0, "last": math.nan}

    def report(row: dict[str, Any], trainer, _checkpoint_due: bool) -> None:
        if _fault_due(trial_id, row["step"], first_attempt):
            raise RuntimeError(f"injected fault at step {row['step']} ({FAULT_STEP_ENV})")
        final = row["status"] != "running"
        if metric in row:
            state["last"] = row[metric]
        evaluated = metric in row and row["step"] > 0  # step 0: the untrained model, no rung of a scheduler
        values = {**_ray_metrics(row), metric: state["last"], "evaluated": evaluated,
                  EVALUATIONS: evaluations(row["step"], cfg), TIMESTEPS_TOTAL: row["step"]}
        if not (evaluated or final):
            tune.report(values)  # a row between evaluations: for the trackers; schedulers skip it
            return
        state["reports"] += 1
        if row["status"] == "diverged" or not (final or state["reports"] % every == 0):
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
                  summary_metric=(metric, spec.tune.mode))


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


# ------------------------------------------------------------------------------------- searcher
class SpaceSuggester:
    """Optuna define-by-run space: picklable (Ray pickles the searcher with the experiment)."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial) -> dict[str, Any]:
        return self.spec.suggest(trial)


class PruningAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch with the study kept honest in its Optuna storage (``optuna_storage``).

    Ray's searcher tells Optuna every finished trial as COMPLETE with its last value, so a trial that
    ASHA stopped early looks like a finished one with a truncated value and misleads TPE. Here a trial
    whose last result is not ``completed`` is told as PRUNED (stopped early) or FAIL (diverged or
    errored), and only finished trials are COMPLETE. Intermediate values are reported at the trainer's
    step (the rows' ``step``; Ray's would be its report count), which is what optuna-dashboard plots.

    Ray pickles the searcher, its study and the study's storage with the experiment (``save``): an
    RDBStorage pickles as its URL, so a restored searcher writes to the same database. ``restore``
    reconciles the two when the driver died between a save and a later change of the database."""

    def suggest(self, trial_id: str) -> Optional[dict]:
        """Ray's suggestion, its Optuna trial tagged with Ray's trial id (the store's ``trial_id`` ends
        with it), so the study and the store can be joined."""
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or "step" not in result:
            return super().on_trial_result(trial_id, result)
        if result.get("evaluated"):  # else the metric is the last evaluation's, repeated for Tune
            self._ot_trials[trial_id].report(float(result[self.metric]), int(result["step"]))

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False):
        from optuna.trial import TrialState

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            self._completed_trials.add(trial_id)  # told before the driver died, after Ray's last save
            return
        if result and result.get("evaluated") and "step" in result:
            # Tune gives the result that ends a trial (ASHA's STOP, the last one) to on_trial_complete only
            ot_trial.report(float(result[self.metric]), int(result["step"]))
        status = (result or {}).get("status")
        if error or status in ("diverged", "errored"):
            state, value = TrialState.FAIL, None
        elif status != "completed":
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, result.get(self.metric)
        self._ot_study.tell(ot_trial, value, state=state)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's saved searcher, then the study brought in line with it: a trial the database holds as
        RUNNING that the saved searcher never handed out (asked after Ray's last save of a driver that was
        then killed) will never report and is told FAIL; a trial the database already holds as finished
        is not told again."""
        from optuna.trial import TrialState

        super().restore(checkpoint_path)
        known = {trial._trial_id: trial_id for trial_id, trial in self._ot_trials.items()}
        for frozen in self._ot_study.get_trials(deepcopy=False):
            if frozen._trial_id not in known and frozen.state == TrialState.RUNNING:
                log.warning("optuna study %s: trial %d was asked after Ray's last save of the searcher and "
                            "never ran; marked FAIL", self._ot_study.study_name, frozen.number)
                self._ot_study.tell(frozen.number, state=TrialState.FAIL)
            elif frozen._trial_id in known and frozen.state.is_finished():
                self._completed_trials.add(known[frozen._trial_id])


def optuna_storage(spec: SweepSpec, sweep_dir: str) -> Optional[str]:
    """Where the sweep's Optuna study lives: the file's ``tune.searcher.storage``, else
    ``sqlite:///<sweep dir>/optuna.db`` for a sweep on this machine's filesystem; None (the study lives in
    Ray's searcher state only) for a sweep in a remote store without a storage URL."""
    if spec.tune.searcher.storage:
        return spec.tune.searcher.storage
    if storage.is_local(sweep_dir):
        return f"sqlite:///{os.path.join(storage.local_path(sweep_dir), OPTUNA_DB)}"
    return None


def _searcher(spec: SweepSpec, sweep_dir: str, notify: Callable[[str], None]):
    s = spec.tune.searcher
    if s.name != "optuna":
        return None
    import optuna

    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler,
                "gp": optuna.samplers.GPSampler}
    url, study = optuna_storage(spec, sweep_dir), study_name(sweep_dir)
    ot_storage = None
    if url is None:
        notify(f"optuna: {sweep_dir} is not on this machine and the file names no tune.searcher.storage: the "
               "study lives in Ray's searcher state only")
    else:
        if storage.is_local(sweep_dir):  # the default database's directory: the new sweep's own
            os.makedirs(storage.local_path(sweep_dir), exist_ok=True)
        try:
            ot_storage = optuna.storages.RDBStorage(url)
        except Exception as err:  # SQLAlchemy: unknown dialect, missing driver, unreachable server
            raise SweepError(f"tune.searcher.storage {url}: Optuna cannot open it ({err})") from None
        if study in optuna.study.get_all_study_names(ot_storage):
            raise SweepError(f"tune.searcher.storage {url}: already holds a study named {study!r}; "
                             "`ablate resume` continues that sweep, or give the new one another --name")
        notify(f"optuna study {study}: {url} (optuna-dashboard {url})")
    search = PruningAwareOptunaSearch(space=SpaceSuggester(spec), metric=spec.tune.metric,
                                      mode=spec.tune.mode, sampler=samplers[s.sampler](seed=s.seed),
                                      study_name=study, storage=ot_storage)
    if spec.tune.max_concurrent:
        return ConcurrencyLimiter(search, max_concurrent=spec.tune.max_concurrent)
    return search


def study_name(sweep_dir: str) -> str:
    """The sweep's Optuna study: its directory's name (unique among the sweeps of one --out)."""
    return sweep_dir.rstrip("/").rsplit("/", 1)[-1]


class _JudgesEvaluations:
    """A scheduler that sees only the results of evaluations and trials' last results: every store row
    reaches Ray (for the tracker callbacks), but a row between evaluations repeats the last evaluation's
    metric, which would count again in a running mean (median rule) or a rung."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not result.get("evaluated") and result.get("status") == "running":
            return tune.schedulers.TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class EvaluationASHA(_JudgesEvaluations, tune.schedulers.ASHAScheduler):
    """Ray's ASHA on evaluations."""


class EvaluationMedianStopping(_JudgesEvaluations, tune.schedulers.MedianStoppingRule):
    """Ray's median stopping rule on evaluations."""


def _scheduler(spec: SweepSpec):
    sched = spec.tune.scheduler
    if sched.name == "asha":
        return EvaluationASHA(time_attr=EVALUATIONS, grace_period=sched.grace_period,
                              reduction_factor=sched.reduction_factor, max_t=_evaluations_per_trial(spec))
    if sched.name == "median":
        return EvaluationMedianStopping(time_attr=EVALUATIONS, grace_period=sched.grace_period,
                                        min_samples_required=sched.min_samples_required)
    return tune.schedulers.FIFOScheduler()


def _evaluations_per_trial(spec: SweepSpec) -> int:
    """Ray results of a full trial: one per evaluation after step 0 (every ``eval.every`` steps and at
    the end). ASHA's max_t: a smaller one would stop every trial before its last evaluation."""
    cfg = spec.config_for({}, None, spec.seeds[0]) if not spec.variants else \
        spec.config_for({}, next(iter(spec.variants)), spec.seeds[0])
    return math.ceil(cfg.train.iterations / cfg.eval.every)


def _param_space(spec: SweepSpec) -> Optional[dict[str, Any]]:
    if spec.tune.searcher.name == "optuna":
        return None
    points = spec.points()
    return {"point": tune.grid_search([{"params": p.params, "variant": p.variant, "seed": p.seed}
                                       for p in points])}


def _trainable(spec: SweepSpec, sweep_dir: str):
    res = spec.tune.resources
    if sweep_workers.multi_worker(spec):  # trials on several Ray Train workers (ablate.sweep_workers)
        return sweep_workers.trainable(spec, sweep_dir, sweep_columns(spec))
    fn = tune.with_parameters(train_point, spec=spec, sweep_dir=sweep_dir, columns=sweep_columns(spec))
    return tune.with_resources(fn, {"cpu": res.cpu, "gpu": res.gpu})


# ---------------------------------------------------------------------------------------- ray
def start_ray(address: Optional[str], num_cpus: Optional[int]) -> None:
    # Tune's own console output repeats what the progress table shows; keep the terminal readable
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    env = {k: v for k, v in os.environ.items() if k.startswith("ABLATE_")}
    runtime_env = {"env_vars": env} if env else None
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False)


def fit_resources(spec: SweepSpec, path: str, notify: Callable[[str], None]) -> SweepSpec:
    """A GPU request on a cluster without GPUs must not wait forever: fall back to the file's ``cpu``
    profile (with a notice) or refuse with the reason."""
    res = spec.tune.resources
    total = ray.cluster_resources()
    if res.gpu > 0 and total.get("GPU", 0) < min(res.gpu, 1):
        if "cpu" in spec.profiles and spec.profile != "cpu":
            notify(f"notice: the file asks for gpu={res.gpu} per trial but this Ray cluster has no "
                   "GPU; using its 'cpu' profile")
            return load_spec(path, "cpu", spec.overrides)
        raise SweepError(f"{path}: tune.resources: gpu={res.gpu} per trial but this Ray cluster has "
                         "no GPU, and the file has no 'cpu' profile to fall back to")
    if sweep_workers.multi_worker(spec):  # tune.resources is per worker (ablate.sweep_workers)
        problem = sweep_workers.check_worker_resources(spec, path, total)
        if problem:
            raise SweepError(problem)
    elif res.cpu > total.get("CPU", 0):
        raise SweepError(f"{path}: tune.resources: cpu={res.cpu} per trial but the Ray cluster has "
                         f"only {total.get('CPU', 0):g} CPUs (start Ray with more or ask for fewer)")
    return spec


# --------------------------------------------------------------------------------------- running
class ProgressTable(tune.Callback):
    """A live table: trial, swept values, step/total, last and best metric, status."""

    def __init__(self, spec: SweepSpec, every_s: float = 15.0, stream=sys.stdout):
        self.spec, self.every_s, self.stream = spec, every_s, stream
        self.total = table_view(spec)["iterations"]
        self.rows: dict[str, dict[str, Any]] = {}
        self._last = 0.0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self.rows.setdefault(trial.trial_id, {"best": math.nan})
        value = result.get(self.spec.tune.metric, math.nan)
        better = min if self.spec.tune.mode == "min" else max
        if isinstance(value, float) and math.isfinite(value):
            row["best"] = value if math.isnan(row["best"]) else better(row["best"], value)
        row.update(step=result.get("step"), last=value, status=result.get("status", "running"))
        self._maybe_print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def _maybe_print(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        print(render_table(self.spec.tune.metric, self.total, [self._line(t) for t in trials]), file=self.stream,
              flush=True)

    def _line(self, trial) -> dict[str, Any]:
        row = self.rows.get(trial.trial_id, {})
        point = _point_of(trial.config, self.spec)
        return {"trial": point.trial_name if "point" in trial.config else str(trial),
                "arm": arm_label(point), "step": row.get("step"), "last": row.get("last"),
                "best": row.get("best"), "status": row.get("status") or trial.status.lower()}


class StatusWriter(tune.Callback):
    """Driver-side outcomes the trial cannot write itself: stopped early by the scheduler, errored
    after its last retry."""

    def __init__(self, spec: SweepSpec, sweep_dir: str):
        self.spec, self.sweep_dir = spec, sweep_dir

    def _trial_id(self, trial) -> str:
        return (_point_of(trial.config, self.spec).trial_name if "point" in trial.config
                else str(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last, trial_id = trial.last_result or {}, self._trial_id(trial)
        # Tune's last result can be older than the trial: resumed from a stale experiment state, a
        # trial whose stored state had already finished ends without reporting; its own record decides
        if last.get("status") == "running" and results.current_status(self.sweep_dir, trial_id) == "running":
            results.mark_status(self.sweep_dir, trial_id, "stopped_early", step=last.get("step"))

    def on_trial_error(self, iteration, trials, trial, **info):
        error = None
        if trial.error_file and os.path.exists(trial.error_file):
            error = Path(trial.error_file).read_text()
        results.mark_status(self.sweep_dir, self._trial_id(trial), "errored",
                            step=(trial.last_result or {}).get("step"), error=error)


def _run_config(spec: SweepSpec, sweep_dir: str, quiet: bool, loggers: list[str]) -> tune.RunConfig:
    callbacks = [StatusWriter(spec, sweep_dir)]
    if not quiet:
        callbacks.append(ProgressTable(spec))
    if loggers:
        from . import trackers

        def describe(trial) -> tuple[str, dict[str, Any]]:
            point = _point_of(trial.config, spec)
            return arm_label(point), trackers.trial_params(point, spec)

        callbacks += trackers.callbacks(loggers, spec, sweep_dir, describe)
    return tune.RunConfig(
        name=TUNE_DIR, storage_path=_for_ray(sweep_dir),
        failure_config=tune.FailureConfig(max_failures=spec.tune.max_failures),
        checkpoint_config=tune.CheckpointConfig(),  # markers only, all kept: see train_point
        callbacks=callbacks, verbose=0)


class _TuneStopNotes(logging.Filter):
    """Watches Ray Tune's log while it stops on a signal. Its notes on a stopped run (its Ctrl-C advice,
    ``Resume experiment with: Tuner.restore(...)``, the trials it left unfinished) name a Python API the
    user never called, so they are dropped (the CLI says how to continue: ``ablate resume DIR``); its note
    that the final save of its experiment state is over (or failed) tells ``signals`` that a second
    signal may end the process now."""

    HIDDEN = ("Stop signal received", "Experiment has been interrupted", "Trials did not complete")
    SAVED = ("Wrote the latest version of all result files and experiment state",
             "Experiment state snapshotting failed")

    def __init__(self, signals: StopSignals):
        super().__init__()
        self.signals = signals

    def filter(self, record: logging.LogRecord) -> bool:
        if self.signals.received is None:
            return True
        message = record.getMessage()
        if message.startswith(self.SAVED):
            self.signals.saved()
        return not message.startswith(self.HIDDEN)


def _fit(tuner: tune.Tuner, sweep_dir: str, command: str) -> None:
    """``tuner.fit()``, stopping cleanly on the first SIGINT or SIGTERM and at once on the second
    (ablate.interrupt). Raises :class:`SweepInterrupted` after a stop, once every trial that was running
    is recorded ``interrupted`` in the store."""
    # Tune stops cleanly on SIGUSR1 (and SIGINT, which it would take over) with a handler it installs in
    # Tuner.fit (ray.tune.tune._setup_signal_catching): it ends its loop after the current step, saves its
    # experiment state (what `ablate resume` restores) and stops the trials. Both signals go to that
    # handler here; before Tune has installed it nothing has run yet, and the signal interrupts fit.
    tune_handler_before = signal.getsignal(signal.SIGUSR1)

    def ask_tune_to_stop() -> bool:
        handler = signal.getsignal(signal.SIGUSR1)
        if handler is tune_handler_before or not callable(handler):
            return False
        handler(signal.SIGUSR1, None)
        return True

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT stays ours (Tune reads this in fit)
    notice = (f"ablate {command}: stopping: Ray Tune saves its state and stops the trials "
              "(a second Ctrl-C quits at once)")
    farewell = f"ablate {command}: stopped at once; `ablate resume {sweep_dir}` continues it"
    tune_log = logging.getLogger("ray.tune.tune")
    with StopSignals(ask_tune_to_stop, notice, farewell) as signals:
        notes = _TuneStopNotes(signals)
        tune_log.addFilter(notes)
        try:
            tuner.fit()
        except KeyboardInterrupt:
            if signals.received is None:
                raise
        finally:
            tune_log.removeFilter(notes)
        if signals.received is None:
            return
        signals.saved()  # whatever Tune saved is saved: a second signal now exits at once
        # Trials stop at their next report (Tune asked them to), and a local Ray's shutdown ends their
        # processes, so none writes after the statuses below. On a cluster the job's trials end as the
        # driver leaves: one that finishes meanwhile records its outcome after `interrupted` (and one
        # whose last row already says it finished keeps that outcome: results.mark_interrupted).
        ray.shutdown()
        results.mark_interrupted(sweep_dir)
    raise SweepInterrupted(sweep_dir, signals.received,
                           resumable=tune.Tuner.can_restore(_for_ray(storage.join(sweep_dir, TUNE_DIR))))


def run_sweep(path: str, profile: Optional[str] = None, overrides: Optional[dict[str, Any]] = None,
              out: str = "runs", name: Optional[str] = None, address: Optional[str] = None,
              num_cpus: Optional[int] = None, quiet: bool = False,
              notify: Callable[[str], None] = print, log_to: Optional[list[str]] = None) -> str:
    """Validate ``path``, start (or connect to) Ray and run the sweep; returns the sweep directory.
    ``log_to`` adds trackers to the file's ``tune.loggers`` (ablate.trackers). Raises
    :class:`SweepInterrupted` when SIGINT or SIGTERM stopped it."""
    spec = load_spec(path, profile, overrides)  # raises SpecError before anything starts
    loggers = list(dict.fromkeys([*spec.tune.loggers, *(log_to or [])]))
    if loggers:
        from .trackers import TrackerError, check_trackers

        try:
            check_trackers(loggers)
        except TrackerError as err:
            raise SweepError(str(err)) from None
    out = storage.absolute(out)  # trials run in working directories of Ray's choosing
    try:
        storage.resolve(out)
    except (ValueError, OSError) as err:
        raise SweepError(f"--out {out}: not a path or filesystem URI pyarrow can open ({err})") from None
    start_ray(address, num_cpus)
    spec = fit_resources(spec, path, notify)
    sweep_dir = new_sweep_dir(out, name or spec.name)
    searcher = _searcher(spec, sweep_dir, notify)  # refuses a storage that holds this sweep's study already
    _write_text(storage.join(sweep_dir, SPEC_FILE), Path(path).read_text())
    _write_text(storage.join(sweep_dir, SWEEP_FILE), json.dumps({
        "name": spec.name, "source": os.path.abspath(path), "sha256": spec.sha256,
        "profile": spec.profile, "overrides": spec.overrides, "workdir": spec.workdir, "num_cpus": num_cpus,
        "ray": ray.__version__, "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "table": table_view(spec),  # what `ablate status` shows, so that it needs neither the spec nor Ray
        "loggers": loggers,
    }, indent=2, default=str))
    notify(f"sweep {spec.name}: {sweep_dir}")
    tuner = tune.Tuner(
        _trainable(spec, sweep_dir), param_space=_param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.tune.metric, mode=spec.tune.mode,
                                    scheduler=_scheduler(spec), search_alg=searcher,
                                    num_samples=_num_samples(spec),
                                    # a multi-worker trial's Ray Train run must end with its actor
                                    reuse_actors=not sweep_workers.multi_worker(spec),
                                    max_concurrent_trials=spec.tune.max_concurrent),
        run_config=_run_config(spec, sweep_dir, quiet, loggers))
    _fit(tuner, sweep_dir, "run")
    results.collect(sweep_dir)
    return sweep_dir


def _num_samples(spec: SweepSpec) -> int:
    return spec.tune.searcher.num_samples if spec.tune.searcher.name == "optuna" else 1


# ---------------------------------------------------------------------------------------- resume
def spec_changes(sweep_dir: str, record: dict[str, Any]) -> Optional[str]:
    """A unified diff when the source file changed since the sweep began, else None."""
    import difflib

    source = record["source"]
    if not os.path.exists(source):
        return None
    now, then = Path(source).read_text(), _read_text(storage.join(sweep_dir, SPEC_FILE))
    if now == then:
        return None
    return "".join(difflib.unified_diff(then.splitlines(True), now.splitlines(True),
                                        "when the sweep began", "now"))


def _check_experiment_state(tune_dir: str) -> None:
    """Ray Tune copies its experiment state into the sweep without an atomic rename, so a driver killed
    during that copy can leave it truncated: refuse with the file's name instead of failing in Ray."""
    fs, path = storage.resolve(tune_dir)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json"):
            try:
                with fs.open_input_stream(info.path) as src:
                    json.loads(src.read())
            except ValueError as err:
                raise SweepError(f"{info.path}: Ray Tune's experiment state is unreadable ({err}); the "
                                 "driver died while saving it: start the sweep again with `ablate run`") from None


def resume_sweep(sweep_dir: str, restart_errored: bool = False, address: Optional[str] = None,
                 num_cpus: Optional[int] = None, quiet: bool = False,
                 notify: Callable[[str], None] = print) -> str:
    """Finish an interrupted sweep: unfinished trials continue from their last checkpoints, errored
    ones too (or from scratch with ``restart_errored``); searcher and scheduler state are restored.
    Raises :class:`SweepInterrupted` when SIGINT or SIGTERM stopped it again."""
    sweep_dir = storage.absolute(sweep_dir)  # handed to trials, which run in Ray's working directories
    record, spec = load_sweep(sweep_dir)
    diff = spec_changes(sweep_dir, record)
    if diff:
        raise SweepError(f"{record['source']} changed since the sweep began; restore it or start a new "
                         f"sweep. What changed:\n{diff}")
    tune_dir = storage.join(sweep_dir, TUNE_DIR)
    if not tune.Tuner.can_restore(_for_ray(tune_dir)):
        raise SweepError(f"{sweep_dir}: Ray Tune's experiment state is missing ({tune_dir}): the driver "
                         "stopped before Tune saved it; start the sweep again with `ablate run`")
    _check_experiment_state(tune_dir)
    start_ray(address, num_cpus or record.get("num_cpus"))
    notify(f"resuming sweep {spec.name}: {sweep_dir}")
    tuner = tune.Tuner.restore(_for_ray(tune_dir),
                               trainable=_trainable(spec, sweep_dir), resume_unfinished=True,
                               resume_errored=not restart_errored, restart_errored=restart_errored)
    _fit(tuner, sweep_dir, "resume")
    results.collect(sweep_dir)
    return sweep_dir


# trials on several Ray Train workers; imported last: it builds on this module's trial helpers
from . import sweep_workers  # noqa: E402
