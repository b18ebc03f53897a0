"""Paper-style tables (VCT Tables 1-3, Guide Tables 2-3): "1-step / 2-step" per arm, best in bold.

Each cell is the mean over seeds of every trial's last measured value; the table states the seeds
used, the bootstrap interval and the trials left out (errored, diverged) or not finished.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ablate.figures.frame import (FAILED_STATUSES, Mode, arm_order, bootstrap_mean_ci,
                                  final_values, metrics_present, trial_outcomes)
from ablate.train.metric_table import TABLE_METRICS

N_RESAMPLES = 2000
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def default_table_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    """The 1-step / 2-step pair the data has: FID for images, else W2 for low-dimensional data."""
    for pair in TABLE_METRICS:
        present = tuple(metrics_present(df, pair))
        if present:
            return present
    raise ValueError(f"results hold no finite {' or '.join('/'.join(pair) for pair in TABLE_METRICS)} values")


def final_table(df: pd.DataFrame, metrics: tuple[str, ...] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
    """Per arm (reading order) and metric: ``{metric}_mean``, ``_low``, ``_high``, ``_n`` (seeds),
    and ``notes`` counting the arm's trials that are not completed (left out if failed)."""
    metrics = metrics or default_table_metrics(df)
    arms = arm_order(df)
    table = pd.DataFrame(index=pd.Index(arms, name="arm"))
    for metric in metrics:
        finals = final_values(df, metric)
        extractors = finals["fid_extractor"].dropna().unique() if "fid_extractor" in finals else []
        if metric.startswith("fid") and len(extractors) > 1:
            raise ValueError(f"{metric} mixes feature extractors ({', '.join(extractors)}); FIDs "
                             f"from different extractors are not comparable: filter fid_extractor")
        for arm in arms:
            values = finals.loc[finals["arm"] == arm, "value"]
            mean, low, high = bootstrap_mean_ci(values, confidence, N_RESAMPLES)
            table.loc[arm, [f"{metric}_{k}" for k in ("mean", "low", "high", "n")]] = \
                [mean, low, high, len(values)]
    outcomes = trial_outcomes(df)
    unfinished = outcomes[outcomes["status"] != "completed"]
    counts = unfinished.groupby(["arm", "status"]).size()
    table["notes"] = [", ".join(f"{n} {status}" + (" (left out)" if status in FAILED_STATUSES
                                                   else "")
                                for status, n in counts[arm].items()) if arm in counts else ""
                      for arm in arms]
    return table


def _number(value: float) -> str:
    """Two decimals as the papers print FID; three significant digits below 1 (W2 on toy data)."""
    if not np.isfinite(value):
        return "–"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _header(metrics: tuple[str, ...]) -> str:
    prefixes = {m.rsplit("_", 1)[0] for m in metrics}
    if len(prefixes) == 1 and all(m.endswith("step") for m in metrics):
        steps = " / ".join(m.rsplit("_", 1)[1].replace("step", "-step") for m in metrics)
        return f"{steps} {prefixes.pop().upper()}"
    return " / ".join(metrics)


def paper_table(df: pd.DataFrame, metrics: tuple[str, ...] | None = None,
                fmt: Literal["markdown", "latex"] = "markdown", mode: Mode = "min",
                confidence: float = 0.95, sweep_name: str | None = None) -> str:
    """The table as Markdown or LaTeX (booktabs): one row per arm, "m1 / m2" means with the best
    arm of each metric in bold (lowest for ``mode="min"``), one interval column per metric, the
    seeds and notes; the caption states how means and intervals were computed."""
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', got {fmt!r}")
    metrics = metrics or default_table_metrics(df)
    table = final_table(df, metrics, confidence)
    bold = (lambda s: f"\\textbf{{{s}}}") if fmt == "latex" else (lambda s: f"**{s}**")
    best = {m: (table[f"{m}_mean"].min() if mode == "min" else table[f"{m}_mean"].max())
            for m in metrics}
    header = ["arm", _header(metrics), *[f"{confidence:.0%} CI {m}" for m in metrics], "seeds",
              "notes"]
    rows = []
    for arm, row in table.iterrows():
        means = [bold(_number(row[f"{m}_mean"])) if row[f"{m}_mean"] == best[m]
                 else _number(row[f"{m}_mean"]) for m in metrics]
        intervals = [f"[{_number(row[f'{m}_low'])}, {_number(row[f'{m}_high'])}]"
                     if np.isfinite(row[f"{m}_low"]) else "–" for m in metrics]
        seeds = " / ".join(sorted({str(int(row[f"{m}_n"])) for m in metrics}))
        rows.append([str(arm), " / ".join(means), *intervals, seeds, row["notes"]])
    extractor = ""
    if "fid_extractor" in df.columns and any(m.startswith("fid") for m in metrics):
        names = df["fid_extractor"].dropna().unique()
        extractor = f" FID features: {', '.join(map(str, names))}." if len(names) else ""
    direction = "lower" if mode == "min" else "higher"
    caption = (f"{sweep_name + ': ' if sweep_name else ''}{_header(metrics)} per arm ({direction} "
               f"is better, best in bold): mean over seeds of each trial's last measured value; "
               f"{confidence:.0%} CI: percentile bootstrap of the mean over seeds ({N_RESAMPLES} "
               f"resamples); seeds: trials averaged; errored and diverged trials are left out."
               f"{extractor}")
    return _latex(header, rows, caption) if fmt == "latex" else _markdown(header, rows, caption)


def _markdown(header: list[str], rows: list[list[str]], caption: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\n{caption}\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in an arm label or note."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def _latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    body = [line([latex_escape(header[0]), *map(latex_escape, header[1:])])]
    body += [line([latex_escape(row[0]), row[1].replace("–", "--"),
                   *[cell.replace("–", "--") for cell in row[2:-1]], latex_escape(row[-1])])
             for row in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
                      r"\begin{tabular}{l" + "c" * (len(header) - 2) + "l}", r"\toprule", body[0],
                      r"\midrule", *body[1:], r"\bottomrule", r"\end{tabular}", r"\end{table}",
                      ""])
