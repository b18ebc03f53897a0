"""``make_report``: the figures and tables that fit a sweep, written with a ``report.md``.

What is drawn depends on the data alone: the metrics present (FID for images, W2 for low-dimensional
data, gradient variance, transport cost, KL), the swept keys (importance needs two or more) and a
baseline arm when one is named. An early-stopping audit (ablate.figures.audit) replays ASHA on the curves
of a sweep whose trials ran to the end. A running sweep (partial data) gets the same report over what has
been reported so far, its header saying how many trials are still running and up to which step; errored
and diverged trials are listed and marked.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ablate.figures.audit import GRACE_PERIOD, REDUCTION_FACTOR, audit_section
from ablate.figures.frame import (FAILED_STATUSES, arm_order, check_results, main_metric,
                                  metrics_present, swept_keys, trial_outcomes)
from ablate.figures.importance import param_importances, plot_importances
from ablate.figures.plots import (plot_curves, plot_final, plot_grad_variance,
                                  plot_paired_differences, save_figure)
from ablate.figures.tables import paper_table
from ablate.train.metric_table import SIDE_METRICS, TABLE_METRICS

log = logging.getLogger(__name__)


def _extractor_parts(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split trials by FID feature extractor: FIDs of different extractors are never compared."""
    if "fid_extractor" not in df.columns or df["fid_extractor"].dropna().nunique() < 2:
        return [("", df)]
    per_trial = df.dropna(subset=["fid_extractor"]).groupby("trial_id")["fid_extractor"].last()
    return [(str(name), df[df["trial_id"].isin(per_trial.index[per_trial == name])])
            for name in sorted(per_trial.unique())]


def _proportional_to_step(df: pd.DataFrame) -> bool:
    """Images seen is step times one batch size for every trial (the curve would repeat step's)."""
    ratio = (df["images_seen"] / df["step"].where(df["step"] > 0)).dropna()
    return ratio.round(6).nunique() <= 1


class _Writer:
    """Saves figures under ``figures/`` and collects the Markdown that shows them."""

    def __init__(self, out_dir: Path, suffix: str):
        self.out_dir, self.suffix, self.lines = out_dir, suffix, []

    def figure(self, fig: Figure, stem: str, caption: str) -> None:
        stem = f"{stem}_{self.suffix}" if self.suffix else stem
        png, pdf = save_figure(fig, self.out_dir / "figures", stem)
        self.lines += [f"![{caption}](figures/{png.name})", "",
                       f"*{caption}* ([PDF](figures/{pdf.name}))", ""]


def _status_section(df: pd.DataFrame) -> list[str]:
    outcomes = trial_outcomes(df)
    counts = outcomes["status"].value_counts()
    lines = ["## Trials", "", ", ".join(f"{n} {status}" for status, n in counts.items()) + ".", ""]
    lines += ["| trial | arm | seed | status | last step | reports |", "|---|---|---|---|---|---|"]
    for trial_id, row in outcomes.iterrows():
        status = f"**⚠ {row.status}**" if row.status in FAILED_STATUSES else row.status
        lines.append(f"| {trial_id} | {row.arm} | {row.seed} | {status} | {row.last_step} | "
                     f"{row.reports} |")
    failed = outcomes[outcomes["status"].isin(FAILED_STATUSES)]
    if len(failed):
        lines += ["", f"⚠ {len(failed)} trial(s) failed ({', '.join(failed.index.astype(str))}): "
                  "they are left out of the means, intervals, tables and importances, and drawn "
                  "as dotted lines ending in × in the curves.", ""]
    return lines + [""]


#: running trials named one by one in the header up to this many
_NAMED_RUNNING = 8


def _progress_note(df: pd.DataFrame) -> list[str]:
    """The header's word on an unfinished sweep: how many trials are still running and up to which step
    the report has their reports; how many were interrupted (the sweep's driver was stopped)."""
    outcomes = trial_outcomes(df)
    running = outcomes[outcomes["status"] == "running"]["last_step"].astype(int)
    interrupted = int((outcomes["status"] == "interrupted").sum())
    lines = []
    if len(running):
        steps = (", ".join(f"`{trial}` {step}" for trial, step in running.items()) if len(running) <= _NAMED_RUNNING
                 else f"from step {running.min()}")
        lines.append(f"**The sweep is still running**: {len(running)} of {len(outcomes)} trials, reported up to "
                     f"step {running.max()} ({steps}). Figures and tables show the reports so far (a running "
                     "trial counts with its latest value).")
    if interrupted:
        lines.append(f"**{interrupted} of {len(outcomes)} trials were interrupted** (the sweep's driver was "
                     "stopped): they count with their latest value; `ablate resume` continues them.")
    return [line for text in lines for line in (text, "")]


def _part_sections(df: pd.DataFrame, writer: _Writer, sweep_name: str, swept: list[str],
                   baseline: str | None, asha: tuple[int, int]) -> None:
    present = metrics_present(df)
    try:
        main = main_metric(df)
    except ValueError:
        writer.lines += ["No metric has been reported yet.", ""]
        return
    table_metrics = next((tuple(m for m in pair if m in present) for pair in TABLE_METRICS
                          if any(m in present for m in pair)), ())
    if table_metrics:
        writer.lines += ["## Final metrics", "",
                         paper_table(df, table_metrics, sweep_name=sweep_name), ""]
        for fmt, ext in (("markdown", "md"), ("latex", "tex")):
            name = f"table_{writer.suffix}.{ext}" if writer.suffix else f"table.{ext}"
            (writer.out_dir / name).write_text(paper_table(df, table_metrics, fmt=fmt,
                                                           sweep_name=sweep_name))
        writer.lines += [f"LaTeX: [`{name}`]({name}).", ""]
        for metric in table_metrics:
            writer.figure(plot_final(df, metric, sweep_name), f"final_{metric}",
                          f"Final {metric} per arm")
    if baseline is not None:
        writer.lines += [f"## Paired differences against {baseline}", ""]
        for metric in table_metrics or (main,):
            writer.figure(plot_paired_differences(df, metric, baseline, sweep_name),
                          f"paired_{metric}", f"Final {metric} minus {baseline} on the same seed")
    writer.lines += ["## Curves", ""]
    for x in ("step", "images_seen", "wall_s"):
        if x in df.columns and not (x == "images_seen" and _proportional_to_step(df)):
            writer.figure(plot_curves(df, main, x, sweep_name), f"curve_{main}_{x}",
                          f"{main} against {x}")
    side = [m for m in SIDE_METRICS if m in present and m != main]
    if side:
        writer.figure(plot_curves(df, side, "step", sweep_name), "curves_step",
                      f"{', '.join(side)} against step")
    if "grad_var" in present:
        fid = main if main.startswith(("fid", "w2")) else None
        writer.figure(plot_grad_variance(df, sweep_name, fid_metric=fid), "grad_variance",
                      "Gradient variance (VCT Fig. 3 style)" + (f" and {fid}" if fid else ""))
    writer.lines += ["## Early stopping audit", "",
                     "Would ASHA have kept the best arm? (every main metric is lower-is-better)", ""]
    lines, figure, _ = audit_section(df, main, "min", *asha)
    writer.lines += lines
    if figure is not None:
        writer.figure(figure, f"rank_agreement_{main}",
                      f"Kendall tau between the arms' ranking by {main} at each step and at the end")
    if len(swept) >= 2:
        writer.lines += ["## Parameter importance", ""]
        try:
            importances, evaluator = param_importances(df, main, swept)
        except ValueError as err:
            writer.lines += [f"Not available yet: {err}.", ""]
        else:
            writer.figure(plot_importances(importances, evaluator, main, sweep_name),
                          f"importance_{main}", f"Importance of the swept parameters for final "
                          f"{main} ({evaluator} over the completed trials)")


def make_report(df: pd.DataFrame, out_dir: str | Path, sweep_name: str,
                swept: list[str] | None = None, baseline: str | None = None,
                grace_period: int = GRACE_PERIOD, reduction_factor: int = REDUCTION_FACTOR) -> Path:
    """Write the figures (PNG and PDF under ``out_dir/figures``), the tables (``table.md``,
    ``table.tex``) and ``out_dir/report.md`` that shows them; return the report's path.

    ``swept`` overrides the swept keys inferred from the data; ``baseline`` names an arm to compare
    every other arm against, seed by seed; ``grace_period`` and ``reduction_factor`` are the ASHA
    settings the early-stopping audit replays (:mod:`ablate.figures.audit`).
    """
    check_results(df)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    swept = list(swept) if swept is not None else swept_keys(df)
    unknown = [key for key in swept if key not in df.columns]
    if unknown:
        raise ValueError(f"swept key(s) {', '.join(unknown)} are not columns of the results")
    if baseline is not None and baseline not in set(df["arm"]):
        raise ValueError(f"baseline arm {baseline!r} is not in the results; arms: "
                         f"{', '.join(arm_order(df))}")
    lines = [f"# {sweep_name}", "", *_progress_note(df),
             f"Swept: {', '.join(f'`{k}`' for k in swept) or 'nothing (one point)'}. "
             f"Arms: {', '.join(f'`{a}`' for a in arm_order(df))}.", ""]
    lines += _status_section(df)
    for suffix, part in _extractor_parts(df):
        part = part.copy()
        part.attrs["swept"] = swept
        writer = _Writer(out_dir, suffix)
        if suffix:
            writer.lines += [f"# FID features: {suffix}", ""]
        _part_sections(part, writer, sweep_name, swept, baseline, (grace_period, reduction_factor))
        lines += writer.lines
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    log.info("wrote %s", report)
    return report
