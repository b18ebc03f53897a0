"""The sweep's search algorithm and scheduler for Ray Tune: grid / random points, Optuna with its
study in an Optuna storage, ASHA and the median rule judging evaluations (a Ray module, beside
:mod:`ablate.sweep`)."""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Optional

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from . import storage
from .progress import SweepError
from .spec import SweepSpec

from .sweep_trial import EVALUATIONS

log = logging.getLogger(__name__)

OPTUNA_DB = "optuna.db"  # <sweep>/optuna.db: the Optuna study of an optuna sweep (optuna_storage)


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
