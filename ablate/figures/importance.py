"""Hyperparameter importance of a sweep with Optuna's evaluators, from the results store alone.

The finished trials are rebuilt as an Optuna study (``optuna.trial.create_trial`` and
``study.add_trial``): each completed trial's swept config values are its params and its final
metric its value. Trials stopped early by ASHA, running, errored or diverged ones are left out, as
Optuna's evaluators only read complete trials. The default evaluator is fANOVA
(``FanovaImportanceEvaluator(seed=0)``, a random forest over the params, deterministic with the
seed); any ``optuna.importance.BaseImportanceEvaluator`` can be passed instead.
"""
from __future__ import annotations

import logging

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure

from ablate.figures.frame import Mode, final_values, hashable, swept_keys
from ablate.figures.plots import figure_style

log = logging.getLogger(__name__)


def _distribution(values: pd.Series) -> optuna.distributions.BaseDistribution | None:
    """An Optuna distribution spanning the values a param took (None if it never varied)."""
    present = values.dropna()
    if present.astype(str).nunique() < 2:
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all() and not pd.api.types.is_bool_dtype(present):
        low, high = float(numbers.min()), float(numbers.max())
        if (numbers == numbers.round()).all() and pd.api.types.is_integer_dtype(present):
            return optuna.distributions.IntDistribution(int(low), int(high))
        return optuna.distributions.FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    return optuna.distributions.CategoricalDistribution(sorted(present.astype(str).unique()))


def study_from_results(df: pd.DataFrame, metric: str, params: list[str] | None = None,
                       mode: Mode = "min") -> optuna.Study:
    """An in-memory Optuna study holding the sweep's completed trials (params: the swept keys).

    A conditional param (NaN in some trials, e.g. ``coupling.beta`` only for ``vc``) is absent
    from the trials that lack it.
    """
    params = params or swept_keys(df)
    finals = final_values(df, metric)
    finals = finals[finals["status"] == "completed"]
    firsts = df.sort_values("step").groupby("trial_id").head(1).set_index("trial_id")
    config = firsts.loc[finals["trial_id"], params].map(hashable)
    distributions = {p: d for p in params if (d := _distribution(config[p])) is not None}
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for trial_id, value in zip(finals["trial_id"], finals["value"]):
        values = {p: config.at[trial_id, p] for p in distributions}
        values = {p: (str(v) if isinstance(distributions[p],
                                           optuna.distributions.CategoricalDistribution)
                      else v.item() if isinstance(v, np.generic) else v)
                  for p, v in values.items() if not pd.isna(v)}
        study.add_trial(optuna.trial.create_trial(
            params=values, distributions={p: distributions[p] for p in values}, value=float(value),
            user_attrs={"trial_id": str(trial_id)}))
    return study


def param_importances(df: pd.DataFrame, metric: str, params: list[str] | None = None,
                      mode: Mode = "min",
                      evaluator: optuna.importance.BaseImportanceEvaluator | None = None
                      ) -> tuple[dict[str, float], str]:
    """Normalised importance of each swept param for the final ``metric`` and the evaluator's name.

    Raises ``ValueError`` when fewer than two completed trials or no varying param are available.
    """
    study = study_from_results(df, metric, params, mode)
    trials = study.get_trials(deepcopy=False)
    varying = {name for trial in trials for name in trial.params}
    if len(trials) < 2 or not varying:
        raise ValueError(f"importance of {metric} needs at least two completed trials over a "
                         f"varying param; have {len(trials)} trials, params {sorted(varying)}")
    evaluator = evaluator or optuna.importance.FanovaImportanceEvaluator(seed=0)
    importances = {name: float(value) for name, value in
                   optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    log.info("importance of %s over %d trials with %s", metric, len(trials),
             type(evaluator).__name__)
    return importances, type(evaluator).__name__


def plot_importances(importances: dict[str, float], evaluator: str, metric: str,
                     sweep_name: str) -> Figure:
    """Horizontal bars of the normalised importances, the evaluator named in the title."""
    names = sorted(importances, key=importances.get)
    with figure_style():
        fig = Figure(figsize=(6.5, 1.2 + 0.5 * len(names)), layout="constrained")
        ax = fig.add_subplot()
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set_xlabel(f"importance for final {metric} (normalised to sum 1)")
        ax.set_ylabel("swept parameter")
        ax.set_xlim(0, 1)
        ax.set_title(f"{evaluator} over the completed trials", fontsize="medium")
        fig.suptitle(f"{sweep_name}: parameter importance for {metric}")
    return fig
