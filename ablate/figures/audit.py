"""Early-stopping audit of a sweep whose trials ran to the end (grid / FIFO): would ASHA have been safe?

Two questions, from the recorded curves alone:

1. **Does an early evaluation rank the arms as the final one does?** At every evaluation step, Kendall's
   tau-b between the arms' values at that step and at the final step (arm = mean over its seeds), with a
   percentile-bootstrap interval that resamples each arm's seeds (the same resample at both steps).
   tau = 1: the same order; 0: unrelated; < 0: reversed.
2. **What would ASHA have done?** Ray Tune's ASHA (``ASHAScheduler``, one bracket) replayed on the
   trials' curves. Time is counted in evaluations after step 0 (``evaluations`` in
   ``ablate.sweep``); with ``max_t`` evaluations per full trial the rungs are at ``grace * rf**k`` for
   ``k < int(log(max_t / grace) / log(rf) + 1)`` (Ray's ``_Bracket``), and at a rung a trial whose value
   is worse than the ``(1 - 1/rf)`` percentile of the values recorded there (``np.nanpercentile``, on
   the metric signed so that higher is better) is stopped: about the top 1/rf go on. Ray applies the
   rule as trials arrive, so its decisions depend on their order; the replay lets every trial reach a
   rung before any is judged (the order-free case, which a sweep whose trials run in lockstep
   approaches). ASHA judges trials, not arms: each seed of an arm is a trial of its own. The replay
   gives the trial-steps spent against the grid's, whether the final winner (best mean final value)
   survives (at least one of its trials runs to the end, so that it is in ASHA's final comparison),
   and ASHA's own pick (the arm of the best final value among the trials that ran to the end).
   :func:`smallest_safe_grace` repeats it for growing grace periods.

Trials that errored or diverged are left out of both. On a sweep that is still running, "final" is the
last evaluation that every trial has reached.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ablate.figures.frame import (FAILED_STATUSES, Mode, arm_order, label, numeric,
                                  trial_outcomes)

#: Ray Tune's ASHAScheduler defaults (and those of a search-space file's ``asha`` scheduler)
GRACE_PERIOD, REDUCTION_FACTOR = 1, 4


class AuditUnavailable(ValueError):
    """The sweep cannot be audited (early-stopped trials, one arm, fewer than two evaluations)."""


@dataclass(frozen=True)
class Curves:
    """The audited metric of each trial at each evaluation step (``values``: trials x evaluations),
    truncated at the last evaluation every trial reached."""

    metric: str
    steps: np.ndarray  # the step of evaluation 1..max_t
    trials: list[str]
    arms: list[str]  # arm of each trial
    values: np.ndarray
    partial: bool  # some trial has evaluations beyond ``steps[-1]`` or is still running


def evaluation_curves(df: pd.DataFrame, metric: str) -> Curves:
    """Each completed trial's ``metric`` at its evaluations after step 0 (rows where it is measured).

    Raises :class:`AuditUnavailable` when a trial was stopped early (the sweep had a scheduler that
    stops trials: nothing to replay), or when fewer than two arms or two evaluations remain."""
    outcomes = trial_outcomes(df)
    stopped = outcomes.index[outcomes["status"] == "stopped_early"]
    if len(stopped):
        raise AuditUnavailable(f"{len(stopped)} trial(s) were stopped early by the sweep's scheduler; the "
                               "audit needs trials that ran to the end (a grid or FIFO sweep)")
    kept = outcomes.index[~outcomes["status"].isin(FAILED_STATUSES)]
    rows = df[df["trial_id"].isin(kept) & (df["step"] > 0)].assign(value=numeric(df[metric]))
    rows = rows.dropna(subset=["value"]).sort_values(["trial_id", "step"], kind="stable")
    table = rows.pivot_table(index="trial_id", columns="step", values="value", aggfunc="last")
    common = table.dropna(axis=1)  # steps every trial evaluated
    if common.shape[1] < 2 or len(common) < 2:
        raise AuditUnavailable(f"fewer than two evaluations of {metric} shared by every trial")
    last = common.columns.max()
    arms = [outcomes.at[t, "arm"] for t in common.index]
    if len(set(arms)) < 2:
        raise AuditUnavailable("one arm only: there is no ranking to audit")
    partial = bool(table.columns.max() > last or (outcomes.loc[common.index, "status"] == "running").any())
    return Curves(metric, common.columns.to_numpy(), list(common.index), arms, common.to_numpy(float),
                  partial)


# ------------------------------------------------------------------------------------- rank agreement
def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b over the last axis (ties counted as in ``scipy.stats.kendalltau``):
    (n_c - n_d) / sqrt((n_0 - n_x)(n_0 - n_y)), n_0 the number of pairs, n_x and n_y those tied in x
    and in y. NaN where either side is constant."""
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx, sy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    n0 = len(i)
    untied_x, untied_y = n0 - (sx == 0).sum(-1), n0 - (sy == 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(-1) / np.sqrt(untied_x * untied_y)


def _arm_means(curves: Curves, resamples: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Arm means over seeds at every evaluation: ``(arms, means)`` with means of shape
    (1 + resamples, arms, evaluations); index 0 the observed seeds, then bootstrap resamples of each
    arm's seeds (one resample per arm and draw, shared by every evaluation)."""
    rng = np.random.default_rng(seed)
    arms = [a for a in dict.fromkeys(curves.arms)]
    means = np.empty((1 + resamples, len(arms), len(curves.steps)))
    for index, arm in enumerate(arms):
        values = curves.values[[a == arm for a in curves.arms]]
        means[0, index] = values.mean(0)
        draws = rng.integers(len(values), size=(resamples, len(values)))
        means[1:, index] = values[draws].mean(1)
    return arms, means


def rank_agreement(curves: Curves, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """Per evaluation step: ``step, tau`` (Kendall tau-b between the arm means there and at the final
    step) and ``low, high`` (percentile-bootstrap interval over seeds; NaN when every arm has one seed)."""
    arms, means = _arm_means(curves, resamples, seed)
    taus = kendall_tau_b(np.moveaxis(means, 1, -1), means[:, :, -1][:, None, :])  # draws x steps
    one_seed = all(curves.arms.count(a) < 2 for a in arms)
    tail = (1 - confidence) / 2
    low, high = (np.full(len(curves.steps), np.nan),) * 2 if one_seed else \
        np.nanquantile(taus[1:], [tail, 1 - tail], axis=0)
    return pd.DataFrame({"step": curves.steps, "tau": taus[0], "low": low, "high": high})


# ----------------------------------------------------------------------------------- ASHA replay
def asha_rungs(max_t: int, grace_period: int, reduction_factor: int) -> list[int]:
    """Ray's rung milestones (in evaluations) below ``max_t``, ascending: a rung at ``max_t`` itself
    stops nothing that would have gone on."""
    if grace_period >= max_t:
        return []
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [m for m in (grace_period * reduction_factor ** k for k in range(count)) if m < max_t]


@dataclass(frozen=True)
class AshaReplay:
    """ASHA replayed on the curves. ``stopped_at[i]``: the evaluation (1-based) after which trial i
    stops (``max_t`` when it runs to the end)."""

    grace_period: int
    reduction_factor: int
    rungs: list[int]
    rung_steps: list[int]
    alive_at_rung: list[int]  # trials that reached each rung
    stopped_at: np.ndarray
    steps_spent: int
    grid_steps: int
    winner: str  # the arm with the best mean final value over its seeds
    winner_trials: int  # trials (seeds) of the winner
    winner_kept: int  # of them, those that ran to the end
    pick: str  # ASHA's result: the arm of the best final value among the trials that ran to the end
    pick_regret: float  # the pick's mean final value relative to the winner's, signed worse > 0

    @property
    def winner_survives(self) -> bool:
        return self.winner_kept > 0

    @property
    def fraction(self) -> float:
        return self.steps_spent / self.grid_steps


def replay_asha(curves: Curves, mode: Mode = "min", grace_period: int = GRACE_PERIOD,
                reduction_factor: int = REDUCTION_FACTOR) -> AshaReplay:
    """Ray's ASHA rule (module docstring) on ``curves``, every trial judged at a rung once all reached it."""
    if grace_period < 1 or reduction_factor < 2:
        raise ValueError(f"grace period must be >= 1 and reduction factor >= 2, got {grace_period} and "
                         f"{reduction_factor}")
    sign = -1.0 if mode == "min" else 1.0  # Ray's metric_op: higher is better
    max_t = len(curves.steps)
    rungs = asha_rungs(max_t, grace_period, reduction_factor)
    stopped_at = np.full(len(curves.trials), max_t)
    alive = np.ones(len(curves.trials), bool)
    alive_at_rung = []
    for milestone in rungs:
        alive_at_rung.append(int(alive.sum()))
        reward = sign * curves.values[:, milestone - 1]
        cutoff = np.nanpercentile(reward[alive], (1 - 1 / reduction_factor) * 100)
        stop = alive & (reward < cutoff)
        stopped_at[stop] = milestone
        alive &= ~stop
    steps = curves.steps
    arms = np.array(curves.arms)
    final = pd.Series(curves.values[:, -1]).groupby(arms).mean()
    winner = final.idxmin() if mode == "min" else final.idxmax()
    survivors = stopped_at == max_t
    best = np.argmin(sign * -curves.values[:, -1] + np.where(survivors, 0, np.inf))
    pick = str(arms[best])
    regret = sign * (final[winner] - final[pick]) / abs(final[winner]) if final[winner] else np.nan
    return AshaReplay(grace_period, reduction_factor, rungs, [int(steps[m - 1]) for m in rungs],
                      alive_at_rung, stopped_at, int(steps[stopped_at - 1].sum()),
                      int(steps[-1]) * len(curves.trials), str(winner), int((arms == winner).sum()),
                      int(survivors[arms == winner].sum()), pick, float(regret))


def smallest_safe_grace(curves: Curves, mode: Mode = "min",
                        reduction_factor: int = REDUCTION_FACTOR) -> AshaReplay:
    """The replay at the smallest grace period whose ASHA keeps the final winner (a trial of it; at a
    grace period of ``max_t`` there is no rung: the whole grid)."""
    for grace in range(1, len(curves.steps) + 1):
        replay = replay_asha(curves, mode, grace, reduction_factor)
        if replay.winner_survives:
            return replay
    raise AssertionError("unreachable: with no rung every trial survives")


# --------------------------------------------------------------------------------- figure, table
def plot_rank_agreement(agreement: pd.DataFrame, replay: AshaReplay, metric: str,
                        sweep_name: str) -> Figure:
    """Kendall tau against step, with its interval and ASHA's rungs as vertical lines."""
    from ablate.figures.plots import figure_style

    with figure_style():
        fig = Figure(figsize=(6.4, 3.8), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(agreement["step"], agreement["tau"], marker="o", color="C0",
                label="arm means over seeds")
        if agreement["low"].notna().any():
            ax.fill_between(agreement["step"], agreement["low"], agreement["high"], alpha=0.25,
                            color="C0", label="95% bootstrap interval over seeds")
        for index, step in enumerate(replay.rung_steps):
            ax.axvline(step, color="0.4", linestyle="--", linewidth=1,
                       label=f"ASHA rungs (grace {replay.grace_period}, rf {replay.reduction_factor})"
                       if index == 0 else None)
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(label("step"))
        ax.set_ylabel(f"Kendall tau vs final ranking\n({metric})")
        ax.legend(loc="lower right", fontsize="small")
        fig.suptitle(f"{sweep_name}: does early {metric} rank the arms like the final one?")
    return fig


def _num(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.2f}"


def audit_markdown(agreement: pd.DataFrame, replay: AshaReplay, safe: AshaReplay, curves: Curves,
                   mode: Mode) -> list[str]:
    """The audit's table and findings as Markdown lines."""
    rung_of = dict(zip(replay.rung_steps, zip(replay.rungs, replay.alive_at_rung)))
    lines = ["| step | Kendall tau vs final | 95% interval | ASHA rung (trials reaching it) |",
             "|---|---|---|---|"]
    for row in agreement.itertuples():
        interval = "-" if not np.isfinite(row.low) else f"[{row.low:.2f}, {row.high:.2f}]"
        rung = f"{rung_of[row.step][0]} ({rung_of[row.step][1]})" if row.step in rung_of else ""
        lines.append(f"| {row.step} | {_num(row.tau)} | {interval} | {rung} |")
    final = "the last evaluation every trial has reached" if curves.partial else "the final evaluation"
    verdict = (f"survives ({replay.winner_kept} of its {replay.winner_trials} trials run to the end)"
               if replay.winner_survives else "**is stopped**")
    lines += ["", f"Final ranking: arm means of {curves.metric} ({mode}) at step {curves.steps[-1]} "
              f"({final}); {len(set(curves.arms))} arms, {len(curves.trials)} trials.", "",
              f"ASHA (grace period {replay.grace_period}, reduction factor {replay.reduction_factor}, "
              f"{len(curves.steps)} evaluations per trial; rungs at steps "
              f"{', '.join(map(str, replay.rung_steps)) or 'none'}) replayed on these curves spends "
              f"{replay.steps_spent} of the grid's {replay.grid_steps} trial-steps "
              f"(**{replay.fraction:.0%}**); the final winner `{replay.winner}` {verdict}"
              + ("." if replay.winner_survives else
                 f", and ASHA's pick `{replay.pick}` is {replay.pick_regret:.1%} worse than it "
                 "in the grid's own numbers."), ""]
    if safe.rungs:
        lines += [f"Smallest grace period at which the winner survives (reduction factor "
                  f"{safe.reduction_factor}): **{safe.grace_period}** evaluation(s) (step "
                  f"{curves.steps[safe.grace_period - 1]}), spending {safe.fraction:.0%} of the grid's "
                  "steps.", ""]
    else:
        lines += [f"No grace period short of the whole run keeps the winner (reduction factor "
                  f"{safe.reduction_factor}): on this metric early stopping would have lost it.", ""]
    return lines


def audit_section(df: pd.DataFrame, metric: str, mode: Mode, grace_period: int,
                  reduction_factor: int) -> tuple[list[str], Figure | None, AshaReplay | None]:
    """``report.md`` lines, the figure and the replay; only an explanatory line when the sweep cannot
    be audited."""
    try:
        curves = evaluation_curves(df, metric)
    except AuditUnavailable as why:
        return [f"Not available: {why}.", ""], None, None
    agreement = rank_agreement(curves)
    replay = replay_asha(curves, mode, grace_period, reduction_factor)
    safe = smallest_safe_grace(curves, mode, reduction_factor)
    lines = audit_markdown(agreement, replay, safe, curves, mode)
    return lines, plot_rank_agreement(agreement, replay, metric, str(df["sweep"].iloc[0])
                                      if "sweep" in df else "sweep"), replay


__all__ = ["AshaReplay", "AuditUnavailable", "Curves", "GRACE_PERIOD", "REDUCTION_FACTOR",
           "asha_rungs", "audit_markdown", "audit_section", "evaluation_curves", "kendall_tau_b",
           "plot_rank_agreement", "rank_agreement", "replay_asha", "smallest_safe_grace"]
