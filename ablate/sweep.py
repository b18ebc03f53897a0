"""Ray Tune sweeps: run, resume and Ray's start-up (beside sweep_trial, sweep_search, sweep_callbacks,
sweep_workers and trackers, the modules that import ray).

A sweep directory (local path or any pyarrow URI) holds::

    sweep.json          what ran: name, source file, its sha256, profile, --set overrides, Ray version,
                        what the status table needs (ablate.progress.table_view) and the swept
                        config keys (the columns `ablate figures` reads besides metrics)
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

import datetime as _dt
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow.fs as pafs
import ray
from ray import tune

from . import results, storage, sweep_workers  # sweep_workers: trials on several Ray Train workers
from .interrupt import StopSignals, exit_status
from .progress import SPEC_FILE, SWEEP_FILE, SweepError, arm_label, load_sweep, table_view
from .spec import SweepSpec, load_spec
from .sweep_callbacks import ProgressTable, StatusWriter, _TuneStopNotes
from .sweep_search import _param_space, _scheduler, _searcher
from .sweep_trial import _for_ray, _point_of, sweep_columns, train_point

TUNE_DIR = "tune"


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


def new_sweep_dir(out: str, name: str) -> str:
    """``out/name``, or ``out/name-<timestamp>`` when that already holds a sweep (never overwrite)."""
    candidate = storage.join(out, name)
    if storage.exists(candidate):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        candidate = storage.join(out, f"{name}-{stamp}")
    return candidate


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
        "swept": spec.swept_keys(),  # the config columns `ablate figures` reads (it needs no spec either)
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
