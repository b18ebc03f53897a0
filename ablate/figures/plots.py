"""Figures of a results DataFrame: curves with seed bands, VCT Fig. 3 gradient variance, finals.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so it renders with
Agg, keeps no global state and needs no closing); :func:`save_figure` writes it as PNG and PDF.
Bands and error bars are percentile-bootstrap intervals of the mean over seeds
(:func:`ablate.figures.frame.bootstrap_mean_ci`).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ablate.figures.frame import (FAILED_STATUSES, X_AXES, arm_order, bootstrap_mean_ci,
                                  ema, final_values, label, numeric, trial_outcomes)

WALL_GRID_POINTS = 60  # wall-clock curves: each trial is interpolated onto this many times per arm


@contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's white-grid style and paper context for the figures made inside."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def arm_colors(arms: list[str]) -> dict[str, tuple]:
    """A fixed colour per arm, colour-blind safe up to ten arms."""
    palette = sns.color_palette("colorblind" if len(arms) <= 10 else "husl", len(arms))
    return dict(zip(arms, palette))


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.png`` (150 dpi) and ``stem.pdf`` under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def _sweep_title(df: pd.DataFrame, sweep_name: str | None) -> str:
    if sweep_name:
        return sweep_name
    names = df["sweep"].dropna().unique() if "sweep" in df.columns else []
    return str(names[0]) if len(names) else "sweep"


def _finish(fig: Figure, title: str, legend_title: str | None = None) -> None:
    """Sweep title on top and one legend (the labelled artists of every axes) below the axes."""
    fig.suptitle(title)
    handles: dict[str, object] = {}
    for ax in fig.axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if handles:
        longest = max(len(text) for text in handles)
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncol=1 if longest > 45 else 2 if longest > 22 else 3, fontsize="small",
                   title=legend_title, title_fontsize="small")


def _wrap(arm: str) -> str:
    """An arm label over several lines, one swept key each, for tick labels."""
    return str(arm).replace(",", ",\n")


def _check_x(x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")


def _use_log_scale(ax: Axes, values: pd.Series) -> None:
    """Log scale where a positive quantity spans more than 1.5 decades (FID early vs late)."""
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")


def _trial_points(df: pd.DataFrame, metric: str, x: str, failed: bool) -> pd.DataFrame:
    """``trial_id, arm, x, value`` of the finite reports of healthy (or only failed) trials."""
    outcomes = trial_outcomes(df)
    is_failed = outcomes["status"].isin(FAILED_STATUSES)
    keep = outcomes.index[is_failed if failed else ~is_failed]
    rows = df[df["trial_id"].isin(keep)].assign(value=numeric(df[metric]), x=numeric(df[x]))
    return rows.dropna(subset=["value", "x"]).sort_values(["trial_id", "x"])[
        ["trial_id", "arm", "x", "value"]]


def _on_wall_grid(points: pd.DataFrame) -> pd.DataFrame:
    """Interpolate every trial onto a per-arm wall-clock grid over the span all its trials cover
    (the whole span if they do not overlap), so the mean never jumps where a seed stops."""
    frames = []
    for arm, rows in points.groupby("arm", sort=False):
        spans = rows.groupby("trial_id")["x"].agg(["min", "max"])
        low, high = spans["min"].max(), spans["max"].min()
        if low >= high:
            low, high = spans["min"].min(), spans["max"].max()
        grid = np.linspace(low, high, WALL_GRID_POINTS)
        for trial_id, trial in rows.groupby("trial_id", sort=False):
            inside = (grid >= trial["x"].min()) & (grid <= trial["x"].max())
            values = np.interp(grid, trial["x"], trial["value"])
            frames.append(pd.DataFrame({"trial_id": trial_id, "arm": arm, "x": grid[inside],
                                        "value": values[inside]}))
    return pd.concat(frames, ignore_index=True) if frames else points


def curve_summary(df: pd.DataFrame, metric: str, x: str = "step",
                  confidence: float = 0.95) -> pd.DataFrame:
    """Per arm and x: mean over seeds of ``metric`` and its bootstrap interval.

    Returns ``arm, x, mean, low, high, n`` (n = seeds averaged there). Errored and diverged trials
    are left out. Against ``wall_s`` each trial is first interpolated onto a common time grid.
    """
    _check_x(x)
    points = _trial_points(df, metric, x, failed=False)
    if x == "wall_s":
        points = _on_wall_grid(points)
    rows = []
    for (arm, x_value), group in points.groupby(["arm", "x"], sort=False):
        mean, low, high = bootstrap_mean_ci(group["value"], confidence)
        rows.append((arm, x_value, mean, low, high, len(group)))
    return pd.DataFrame(rows, columns=["arm", "x", "mean", "low", "high", "n"]).sort_values(
        ["arm", "x"], ignore_index=True)


def draw_curves(ax: Axes, df: pd.DataFrame, metric: str, x: str, colors: dict[str, tuple],
                confidence: float = 0.95) -> None:
    """Mean line and bootstrap band per arm on ``ax``; failed trials as dotted lines ending in x."""
    summary = curve_summary(df, metric, x, confidence)
    for arm, color in colors.items():
        rows = summary[summary["arm"] == arm]
        if rows.empty:
            continue
        seeds = int(rows["n"].max())
        ax.plot(rows["x"], rows["mean"], color=color, lw=1.8, label=f"{arm} (n={seeds})")
        ax.fill_between(rows["x"], rows["low"], rows["high"], color=color, alpha=0.2, lw=0)
    failed = _trial_points(df, metric, x, failed=True)
    for (trial_id, arm), rows in failed.groupby(["trial_id", "arm"], sort=False):
        ax.plot(rows["x"], rows["value"], color=colors.get(arm, "grey"), lw=1, ls=":")
        ax.plot(rows["x"].iloc[-1:], rows["value"].iloc[-1:], "x", color=colors.get(arm, "grey"),
                ms=8, mew=2, label=f"{trial_id} ({arm}) failed")
    _use_log_scale(ax, numeric(df[metric]))
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(metric))


def plot_curves(df: pd.DataFrame, metric: str | list[str], x: str = "step",
                sweep_name: str | None = None, confidence: float = 0.95) -> Figure:
    """``metric`` against step, images seen or wall-clock: one line per arm (mean over seeds) with
    a bootstrap band; errored/diverged trials drawn apart and marked. A list of metrics gives one
    panel each (two columns) sharing the legend."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    arms = arm_order(df)
    colors = arm_colors(arms)
    columns = 1 if len(metrics) == 1 else 2
    rows = -(-len(metrics) // columns)
    with figure_style():
        fig = Figure(figsize=(7.5 if columns == 1 else 11.0, 1.5 + 4.0 * rows),
                     layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, name in zip(axes, metrics):
            draw_curves(ax, df, name, x, colors, confidence)
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        _finish(fig, f"{_sweep_title(df, sweep_name)}: {', '.join(metrics)} vs {x}",
                f"arm: mean over seeds (n), {confidence:.0%} bootstrap CI band")
    return fig


def plot_grad_variance(df: pd.DataFrame, sweep_name: str | None = None, metric: str = "grad_var",
                       fid_metric: str | None = "fid_1step", smoothing: float = 0.9,
                       confidence: float = 0.95) -> Figure:
    """VCT Fig. 3: gradient variance per report (shaded, every seed) with its exponential moving
    average (smoothing 0.9) of the mean over seeds drawn over it; below, the FID curve."""
    arms = arm_order(df)
    colors = arm_colors(arms)
    points = _trial_points(df, metric, "step", failed=False)
    with figure_style():
        fig = Figure(figsize=(7.5, 8.0 if fid_metric else 5.0), layout="constrained")
        axes = fig.subplots(2 if fid_metric else 1, 1, sharex=True, squeeze=False)[:, 0]
        for arm in arms:
            rows = points[points["arm"] == arm]
            if rows.empty:
                continue
            for _, trial in rows.groupby("trial_id", sort=False):
                axes[0].plot(trial["x"], trial["value"], color=colors[arm], alpha=0.25, lw=0.8)
            mean = rows.groupby("x")["value"].mean()
            axes[0].plot(mean.index, ema(mean.to_numpy(), smoothing), color=colors[arm], lw=2,
                         label=f"{arm} (n={rows['trial_id'].nunique()})")
        _use_log_scale(axes[0], points["value"])
        axes[0].set_ylabel(label(metric))
        axes[0].set_title(f"{metric} per report (thin, every seed) and EMA {smoothing} of the "
                          f"seed mean (thick)", fontsize="medium")
        if fid_metric:
            draw_curves(axes[1], df, fid_metric, "step", colors, confidence)
            axes[1].set_title(f"{fid_metric}: mean over seeds, {confidence:.0%} bootstrap CI",
                              fontsize="medium")
            axes[0].set_xlabel("")
        axes[-1].set_xlabel(label("step"))
        _finish(fig, f"{_sweep_title(df, sweep_name)}: gradient variance"
                + (f" and {fid_metric}" if fid_metric else ""), "arm (n seeds)")
    return fig


def plot_final(df: pd.DataFrame, metric: str, sweep_name: str | None = None,
               confidence: float = 0.95) -> Figure:
    """Final value of ``metric`` per arm: every seed as a dot, the mean with its bootstrap
    interval as a bar; tick labels give the seeds used and the failed trials left out."""
    arms = arm_order(df)
    colors = arm_colors(arms)
    finals = final_values(df, metric)
    outcomes = trial_outcomes(df)
    failed = outcomes[outcomes["status"].isin(FAILED_STATUSES)].groupby("arm").size()
    with figure_style():
        longest = max((len(line) for arm in arms for line in _wrap(arm).splitlines()), default=8)
        width = min(16.0, max(5.0, len(arms) * max(1.1, 0.065 * longest) + 1.5))
        fig = Figure(figsize=(width, 4.8), layout="constrained")
        ax = fig.add_subplot()
        ticks = []
        for position, arm in enumerate(arms):
            values = finals.loc[finals["arm"] == arm, "value"]
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(position + jitter[: len(values)], values, color=colors[arm], alpha=0.7, s=22)
            mean, low, high = bootstrap_mean_ci(values, confidence)
            if np.isfinite(low):
                ax.errorbar(position, mean, yerr=[[mean - low], [high - mean]], fmt="_", ms=22,
                            color="black", capsize=6, lw=1.5)
            elif np.isfinite(mean):
                ax.plot(position, mean, "_", color="black", ms=22)
            note = f", {failed[arm]} failed" if arm in failed.index else ""
            ticks.append(f"{_wrap(arm)}\n(n={len(values)}{note})")
        ax.set_xticks(range(len(arms)), ticks, rotation=30 if len(arms) > 6 else 0,
                      ha="right" if len(arms) > 6 else "center", fontsize="small")
        ax.set_ylabel(f"final {label(metric)}")
        ax.set_xlabel("arm")
        ax.set_title(f"dots: seeds; black bar: mean with {confidence:.0%} bootstrap CI",
                     fontsize="medium")
        fig.suptitle(f"{_sweep_title(df, sweep_name)}: final {metric} per arm")
    return fig


def paired_differences(df: pd.DataFrame, metric: str, baseline: str,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Per arm: final ``metric`` minus the baseline arm's on the same seed, averaged over the seeds
    both ran, with a bootstrap interval. Returns ``arm, pairs, mean, low, high``."""
    finals = final_values(df, metric)
    if baseline not in set(df["arm"]):
        raise ValueError(f"baseline arm {baseline!r} is not in the results; arms: "
                         f"{', '.join(arm_order(df))}")
    by_seed = finals.pivot_table(index="seed", columns="arm", values="value", aggfunc="mean")
    rows = []
    for arm in arm_order(df):
        if arm == baseline or arm not in by_seed or baseline not in by_seed:
            continue
        differences = (by_seed[arm] - by_seed[baseline]).dropna()
        rows.append((arm, len(differences), *bootstrap_mean_ci(differences, confidence)))
    return pd.DataFrame(rows, columns=["arm", "pairs", "mean", "low", "high"])


def plot_paired_differences(df: pd.DataFrame, metric: str, baseline: str,
                            sweep_name: str | None = None, confidence: float = 0.95) -> Figure:
    """Paired per-seed differences of the final ``metric`` against ``baseline``, with intervals."""
    table = paired_differences(df, metric, baseline, confidence)
    colors = arm_colors(arm_order(df))
    with figure_style():
        fig = Figure(figsize=(8.0, max(3.0, 0.8 * len(table) + 1.5)), layout="constrained")
        ax = fig.add_subplot()
        ax.axvline(0.0, color="black", lw=1, ls="--")
        for position, row in enumerate(table.itertuples()):
            if np.isfinite(row.low):
                ax.errorbar(row.mean, position, xerr=[[row.mean - row.low], [row.high - row.mean]],
                            fmt="o", color=colors[row.arm], capsize=5)
            else:
                ax.plot(row.mean, position, "o", color=colors[row.arm])
        ax.set_yticks(range(len(table)), [f"{_wrap(a)}\n({p} paired seeds)" for a, p in
                                          zip(table["arm"], table["pairs"])], fontsize="small")
        ax.invert_yaxis()
        ax.set_ylabel("arm")
        ax.set_xlabel(f"final {metric} minus the baseline's on the same seed"
                      + (" (negative = better)" if metric.startswith(("fid", "w2")) else ""))
        ax.set_title(f"baseline: {baseline}\nmean over paired seeds, {confidence:.0%} bootstrap CI",
                     fontsize="medium")
        fig.suptitle(f"{_sweep_title(df, sweep_name)}: final {metric} against the baseline")
    return fig
