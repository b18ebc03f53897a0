"""``write_reproductions``: the claims of a claims file, decided on their sweeps, as one Markdown
report with a figure per claim (the paired differences) and per sweep read (the curves).

The inputs are data only: the claims (:mod:`ablate.figures.claims`), each sweep's results DataFrame
(or None when it has not run), and per sweep its state and wall time; running sweeps and reading
stores is the caller's (``benchmarks/reproduce.py``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ablate.figures.claims import (FAILS, PENDING, REFERENCE, REPRODUCES, VERDICT_RULE, Claim,
                                   ClaimsFile, ComparisonResult, claim_verdict, compare)
from ablate.figures.plots import figure_style, plot_curves

VERDICT_COLORS = {REPRODUCES: "tab:green", FAILS: "tab:red", REFERENCE: "tab:gray"}
PNG_DPI = 110


@dataclass
class SweepState:
    """What the report says about one file's sweep."""

    trials: int  # trials the file defines
    finished: int = 0  # trials that ended: completed, diverged, errored or stopped early
    wall_s: Optional[float] = None  # measured wall time of its runs, all attempts together
    note: str = ""  # e.g. "not run", "file changed since the sweep began"

    @property
    def complete(self) -> bool:
        return self.finished >= self.trials

    @property
    def progress(self) -> str:
        """``finished``, ``not run`` or ``k of n trials finished``."""
        if self.complete:
            return "finished"
        if self.note == "not run":
            return "not run"
        return f"{self.finished} of {self.trials} trials finished"


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def _interval(stats: tuple) -> str:
    mean, low, high = stats[:3]
    if not np.isfinite(mean):
        return "no data yet"
    return _number(mean) + (f" [{_number(low)}, {_number(high)}]" if np.isfinite(low) else "")


def _verdict_text(result: ComparisonResult) -> str:
    text = result.verdict
    if result.seeds_needed:
        text += f" (~{result.seeds_needed} seeds would decide it)"
    return text + "".join(f"; {note}" for note in result.notes)


def _claimed(result: ComparisonResult) -> str:
    return {"lower": "arm < baseline", "higher": "arm > baseline", "none": "-"}[result.comparison.claim]


def _results_table(claims: ClaimsFile, claim: Claim, results: list[ComparisonResult]) -> list[str]:
    lines = ["| quantity | arm | baseline | claimed | arm: mean [95% CI] | baseline: mean [95% CI] "
             "| arm - baseline [95% CI] (pairs) | per seed | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        c = result.comparison
        file = c.file or claim.file
        pairs = result.difference[3]
        seeds = ", ".join(f"{seed}: {_number(d)}" for seed, d in sorted(result.per_seed.items()))
        where = f" ({file})" if c.file else ""
        lines.append(f"| {c.name}{where} | {claims.label(file, c.arm)} | {claims.label(file, c.baseline)} "
                     f"| {_claimed(result)} | {_interval(result.arm)} | {_interval(result.baseline)} "
                     f"| {_interval(result.difference)} ({pairs}) | {seeds or '-'} "
                     f"| {_verdict_text(result)} |")
    return lines


def plot_claim(claims: ClaimsFile, claim: Claim, results: list[ComparisonResult]) -> Figure:
    """The claim's comparisons, one panel per compared quantity (each on its own scale), one row per
    comparison: the mean paired difference with its 95% interval and the seeds as dots against a
    zero line, coloured by verdict (green reproduces, red does not, blue inconclusive, grey
    reference)."""
    groups: dict[str, list[ComparisonResult]] = {}
    for result in results:
        groups.setdefault(result.comparison.name, []).append(result)
    with figure_style():
        fig = Figure(figsize=(8.5, 1.0 + 0.9 * len(groups) + 0.45 * len(results)),
                     layout="constrained")
        axes = fig.subplots(len(groups), 1, squeeze=False,
                            height_ratios=[len(g) + 0.6 for g in groups.values()])[:, 0]
        for ax, (name, members) in zip(axes, groups.items()):
            ax.axvline(0.0, color="black", lw=1, ls="--")
            ticks = []
            for row, result in enumerate(members):
                c = result.comparison
                file = c.file or claim.file
                color = VERDICT_COLORS.get(result.verdict, "tab:blue")
                mean, low, high, _ = result.difference
                if np.isfinite(low):
                    ax.errorbar(mean, row, xerr=[[mean - low], [high - mean]], fmt="o", color=color,
                                capsize=4)
                elif np.isfinite(mean):
                    ax.plot(mean, row, "o", color=color)
                seeds = list(result.per_seed.values())
                ax.scatter(seeds, [row + 0.2] * len(seeds), s=12, color=color, alpha=0.5)
                side = {"lower": " (claim < 0)", "higher": " (claim > 0)", "none": ""}[c.claim]
                where = f" [{file}]" if c.file else ""
                ticks.append(f"{claims.label(file, c.arm)} - {claims.label(file, c.baseline)}"
                             f"{where}{side}")
            ax.set_yticks(range(len(members)), ticks, fontsize="x-small")
            ax.set_ylim(len(members) - 0.4, -0.6)
            ax.set_title(f"{name}: arm minus baseline" + (" (log10 ratio)" if name.startswith("log10")
                                                          else ""), fontsize="small")
        fig.suptitle(f"{claim.id}: {claim.paper} {claim.where}\n"
                     "mean paired difference with 95% bootstrap CI; dots: seeds", fontsize="medium")
    return fig


def _curves(claims: ClaimsFile, claim: Claim, file: str, df: pd.DataFrame) -> Optional[Figure]:
    """The claim's metrics against step for the arms it compares in ``file``'s sweep."""
    comparisons = [c for c in claim.comparisons if (c.file or claim.file) == file]
    arms = {a for c in comparisons for a in (c.arm, c.baseline)}
    metrics = [m for m in dict.fromkeys(c.metric for c in comparisons)
               if m in df.columns and df[m].notna().any()]
    rows = df[df["arm"].isin(arms)]
    if rows.empty or not metrics:
        return None
    rows = rows.assign(arm=rows["arm"].map(lambda a: claims.label(file, a)))
    return plot_curves(rows, metrics, "step", sweep_name=f"{claim.id} ({file})")


def _save(fig: Figure, figures_dir: Path, stem: str, out: Path) -> str:
    """Write ``fig`` as ``figures_dir/stem.png``; return its path relative to the report."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    path = figures_dir / f"{stem}.png"
    fig.savefig(path, dpi=PNG_DPI)
    return Path(os.path.relpath(path, out.parent)).as_posix()


def _claim_section(claims: ClaimsFile, claim: Claim, frames: dict[str, Optional[pd.DataFrame]],
                   states: dict[str, SweepState], out: Path, figures_dir: Path) -> tuple[list[str], str]:
    results = [compare(frames.get(c.file or claim.file), c) for c in claim.comparisons]
    unfinished = [f"{f}: {states[f].progress}" for f in claim.files() if not states[f].complete]
    decided = claim_verdict(results)
    if unfinished:
        decided = f"{PENDING} ({'; '.join(unfinished)})"
    lines = [f'<a id="{claim.id}"></a>', "", f"## {claim.id}: {claim.paper} {claim.where}", "",
             f"**Claim.** {claim.statement}", "",
             f"**Paper's numbers.** {claim.paper_numbers}", "",
             f"**Setting here** (`searchspaces/repro/{claim.file}.yaml`). {claim.setting}", "",
             *_results_table(claims, claim, results), "",
             f"**Verdict: {decided}.**", "",
             f"**Findings.** {claim.findings.strip() or 'not investigated yet'}", ""]
    if any(np.isfinite(r.difference[0]) for r in results):
        link = _save(plot_claim(claims, claim, results), figures_dir, f"{claim.id}_paired", out)
        lines += [f"![{claim.id}: paired differences]({link})", ""]
    for file in claim.files():
        df = frames.get(file)
        fig = _curves(claims, claim, file, df) if df is not None else None
        if fig is not None:
            link = _save(fig, figures_dir, f"{claim.id}_curves_{file}", out)
            lines += [f"![{claim.id}: curves ({file})]({link})", ""]
    return lines, decided


def _wall_table(claims: ClaimsFile, states: dict[str, SweepState]) -> list[str]:
    lines = ["| file | trials | expected on 2 idle cores (min) | measured wall (min) | state |",
             "|---|---|---|---|---|"]
    for file, info in claims.files.items():
        state = states[file]
        expected = f"{info.expected_min:.0f}" if info.expected_min else "-"
        wall = f"{state.wall_s / 60:.0f}" if state.wall_s else "-"
        notes = [state.progress] + ([state.note] if state.note and state.note != "not run" else [])
        lines.append(f"| `searchspaces/repro/{file}.yaml` | {state.trials} | {expected} | {wall} "
                     f"| {'; '.join(notes)} |")
    expected = sum(info.expected_min or 0 for info in claims.files.values())
    measured = sum(s.wall_s or 0 for s in states.values())
    lines.append(f"| all | {sum(s.trials for s in states.values())} | {expected:.0f} "
                 f"| {f'{measured / 60:.0f}' if measured else '-'} | |")
    return lines


def write_reproductions(claims: ClaimsFile, frames: dict[str, Optional[pd.DataFrame]],
                        states: dict[str, SweepState], out: str | Path, figures_dir: str | Path,
                        command: str, preamble: str = "") -> dict[str, str]:
    """Write the report to ``out`` and its PNGs under ``figures_dir`` (linked relative to ``out``);
    return each claim's verdict."""
    out, figures_dir = Path(out), Path(figures_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for claim in claims.claims:  # a claim's old figures must not outlive its data
        for old in figures_dir.glob(f"{claim.id}_*.png"):
            old.unlink()
    sections, verdicts = [], {}
    for claim in claims.claims:
        lines, verdicts[claim.id] = _claim_section(claims, claim, frames, states, out, figures_dir)
        sections += lines
    summary = ["| claim | paper | where | verdict |", "|---|---|---|---|"]
    summary += [f"| [{c.id}](#{c.id}) | {c.paper} | {c.where} | {verdicts[c.id]} |"
                for c in claims.claims]
    text = ["# Reproductions", "",
            "The papers' claims that a CPU can test, each run as a sweep of `searchspaces/repro/` with "
            "seeds paired across arms, and what those sweeps say. Regenerate this page with", "",
            f"    {command}", "",
            *([preamble, ""] if preamble else []),
            "## Verdicts", "", *summary, "",
            "## How a verdict is reached", "", VERDICT_RULE, "",
            "## Wall time per file", "", *_wall_table(claims, states), "",
            *sections]
    out.write_text("\n".join(text).rstrip() + "\n")
    return verdicts

