"""Reading a sweep's results DataFrame: trials, arms, final values, intervals, smoothing.

The input is the results store as ``ablate.results.read_rows`` (or ``ablate collect``) gives it: one
row per (trial_id, step) with ``sweep, trial_id, attempt, seed, arm, variant, status``, every config
field under its dotted name, ``step, images_seen, wall_s`` and the metrics (NaN where not measured).
The last row of a trial carries the trial's outcome in ``status``. Nothing here knows the trainer or Ray.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from ablate import results, storage
from ablate.train import metric_table
from ablate.train.metric_table import MAIN_METRICS

REQUIRED_COLUMNS = ("trial_id", "seed", "arm", "step", "status")
FAILED_STATUSES = ("errored", "diverged")
X_AXES = ("step", "images_seen", "wall_s")
# Columns of the store that are neither config fields nor metrics.
BOOKKEEPING = ("sweep", "trial_id", "attempt", "seed", "arm", "variant", "status", "fid_extractor",
               *X_AXES)

Mode = Literal["min", "max"]


def label(column: str) -> str:
    """Axis label with units for a store column (the column name itself when unknown)."""
    return metric_table.label(column)


def load_results(path: str | Path, plotted_only: bool = False) -> pd.DataFrame:
    """A sweep's rows: a results ``.parquet`` file as it is, or a sweep directory (a path or a URI such
    as ``s3://...``). Of a sweep directory, its collected ``results.parquet`` is read when nothing was
    written to the store since it was collected, else the store itself (ablate.results.read_rows): a
    running or interrupted sweep gives the rows reported so far.

    ``plotted_only``: of the store, read only what the report uses (:func:`plotted_columns`)."""
    location = str(path).rstrip("/") if "://" in str(path) else str(Path(path).expanduser())
    if location.endswith(".parquet") or ("://" not in location and Path(location).is_file()):
        if "://" not in location and not Path(location).exists():
            raise FileNotFoundError(f"{location}: no such results file")
        return check_results(pd.read_parquet(location), source=location)
    if results.collected_is_current(location):
        collected = f"{location}/results.parquet"
        return check_results(pd.read_parquet(collected), source=collected)
    try:
        rows = results.read_rows(location, columns=plotted_columns(location) if plotted_only else None)
    except FileNotFoundError:
        raise FileNotFoundError(f"{location}: no results: neither a results store (metrics/) nor a "
                                "collected results.parquet") from None
    if rows.empty:
        raise ValueError(f"{location}: no trial has reported a row yet")
    return check_results(rows, source=f"{location}/metrics")


def plotted_columns(sweep_dir: str) -> Callable[[str], bool] | None:
    """The columns a report of the sweep uses: bookkeeping, metrics and the swept config keys its
    ``sweep.json`` records (a sweep's constant config columns are most of a row and no figure plots them);
    None (every column) for a sweep that records none."""
    record = storage.join(sweep_dir, "sweep.json")
    swept = json.loads(storage.read_bytes(record)).get("swept") if storage.exists(record) else None
    if swept is None:
        return None
    keep = {*BOOKKEEPING, *swept}
    return lambda column: column in keep or metric_table.is_metric(column)


def check_results(df: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """Return ``df`` if it has the store's required columns, else raise naming the missing ones."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}; the results store "
                         f"needs {', '.join(REQUIRED_COLUMNS)}")
    return df


def metrics_present(df: pd.DataFrame, candidates: tuple[str, ...] | None = None) -> list[str]:
    """The candidate metric columns (default: every metric column of the metric table, in its order)
    that hold at least one finite value."""
    candidates = metric_table.table_order(df.columns) if candidates is None else candidates
    return [m for m in candidates if m in df.columns and np.isfinite(numeric(df[m])).any()]


def main_metric(df: pd.DataFrame) -> str:
    """The headline metric present: FID after 1 step, else W2 (low-dim data), else the loss."""
    present = metrics_present(df, MAIN_METRICS)
    if not present:
        raise ValueError(f"results hold no finite value of {', '.join(MAIN_METRICS)}")
    return present[0]


def numeric(column: pd.Series) -> pd.Series:
    """A metric column as float, non-finite values (inf from a diverged run) as NaN."""
    values = pd.to_numeric(column, errors="coerce").astype(float)
    return values.where(np.isfinite(values))


def trial_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: ``arm, seed, status`` (of its last row; none yet counts as running),
    ``last_step``, ``reports``."""
    ordered = df.sort_values(["trial_id", "step"], kind="stable")
    last = ordered.groupby("trial_id", sort=False).tail(1).set_index("trial_id")
    out = last[["arm", "seed"]].copy()
    out["status"] = last["status"].astype(object).where(last["status"].notna(), "running")
    out["last_step"] = last["step"]
    out["reports"] = ordered.groupby("trial_id", sort=False).size()
    return out


def hashable(value: object) -> object:
    """A config value usable as a label or category: list-valued fields (``model.channel_mult``)
    become their string."""
    return str(list(value)) if isinstance(value, (list, tuple, np.ndarray)) else value


def swept_keys(df: pd.DataFrame) -> list[str]:
    """The swept config keys: ``df.attrs["swept"]`` if set, else the config columns that vary
    across trials but are constant within each arm (which leaves out per-seed fields such as
    ``train.seed``)."""
    if df.attrs.get("swept"):
        return list(df.attrs["swept"])
    config = [c for c in df.columns if "." in c and c not in BOOKKEEPING and not metric_table.is_metric(c)]
    firsts = df.sort_values("step").groupby("trial_id").head(1).astype({c: str for c in config})
    varying = [c for c in config if firsts[c].nunique() > 1]
    return [c for c in varying if (firsts.groupby("arm")[c].nunique() == 1).all()]


def _natural_key(text: str) -> list:
    return [(0, float(part), "") if re.fullmatch(r"\d+(\.\d+)?", part) else (1, 0.0, part)
            for part in re.split(r"(\d+(?:\.\d+)?)", str(text)) if part]


def arm_order(df: pd.DataFrame) -> list[str]:
    """Arms in reading order: by swept value (numbers numerically), variants and labels naturally
    (``beta=5`` before ``beta=15``, ladder ``A`` before ``B``)."""
    firsts = df.groupby("arm", sort=False).head(1).set_index("arm")
    keys = [] if "variant" in df.columns and firsts["variant"].notna().any() else swept_keys(df)
    keys = [k for k in keys if k in firsts.columns]

    def sort_key(arm: str) -> tuple:
        values = []
        for key in keys:
            value = hashable(firsts.at[arm, key])
            number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
            values.append((2, 0.0, "") if pd.isna(value) else
                          (0, float(number), "") if pd.notna(number) else (1, 0.0, str(value)))
        return (tuple(values), _natural_key(arm))

    return sorted(firsts.index, key=sort_key)


def final_values(df: pd.DataFrame, metric: str, include_failed: bool = False) -> pd.DataFrame:
    """The last finite value of ``metric`` in each trial.

    Returns one row per trial that measured it: ``trial_id, arm, seed, status, step, value`` (and
    ``fid_extractor`` where present). Errored and diverged trials are left out unless
    ``include_failed``. On a running sweep a running trial contributes its latest value.
    """
    if metric not in df.columns:
        raise KeyError(f"metric {metric!r} is not a column of the results; present: "
                       f"{', '.join(metrics_present(df)) or 'none'}")
    outcomes = trial_outcomes(df)
    rows = df.assign(value=numeric(df[metric])).dropna(subset=["value"])
    last = rows.sort_values(["trial_id", "step"], kind="stable").groupby("trial_id").tail(1)
    extra = ["fid_extractor"] if "fid_extractor" in last.columns else []
    out = last[["trial_id", "step", "value", *extra]].merge(
        outcomes[["arm", "seed", "status"]], left_on="trial_id", right_index=True)
    if not include_failed:
        out = out[~out["status"].isin(FAILED_STATUSES)]
    columns = ["trial_id", "arm", "seed", "status", "step", "value", *extra]
    return out[columns].reset_index(drop=True)


def bootstrap_mean_ci(values: np.ndarray | pd.Series, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval of the mean over seeds.

    Resamples the finite values with replacement ``n_resamples`` times and takes the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means. With
    fewer than two values there is no interval: ``(mean, nan, nan)``.
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(finite.mean())
    if finite.size < 2:
        return (mean, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = rng.choice(finite, size=(n_resamples, finite.size), replace=True).mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (mean, float(low), float(high))


def ema(values: np.ndarray | pd.Series, smoothing: float = 0.9) -> np.ndarray:
    """Exponential moving average as in VCT Fig. 3: s_0 = x_0, s_k = a s_{k-1} + (1 - a) x_k with
    smoothing a (0.9 in the paper). Non-finite values are skipped (they keep the last average)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out = np.full(len(values), np.nan)
    average = np.nan
    for index, value in enumerate(np.asarray(values, dtype=float)):
        if np.isfinite(value):
            average = value if np.isnan(average) else smoothing * average + (1 - smoothing) * value
        out[index] = average
    return out

