"""The one table of reported numbers: each metric's column name, its label with unit, which way is
better, and which runs report it.

Read by the trainer's columns (:mod:`.columns`), the diagnostics, the start-up check of ``tune.metric``
(:func:`ablate.train.checks.reported_metrics`) and the figures and tables (``ablate.figures``), so a
metric is named in one place. Plain data: no torch, no pandas (the figures import it too).

``applies_to``: ``images`` / ``points`` (evaluation metrics, measured after each number of sampling
steps K in ``eval.steps``: the column is ``{name}_{K}step``), ``trainer`` (every row), ``evaluation``
(rows with an evaluation), ``diagnostics`` (with ``log.diag_every`` > 0) or ``coupling`` (logged by
the couplings that list it in their ``logs``); ``progress``: the x axes of a run.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

Direction = Optional[Literal["min", "max"]]


class Metric(NamedTuple):
    name: str
    label: str  # axis label with unit; ``{k}`` stands for the sampling steps of per-step metrics
    direction: Direction  # which way is better (None: neither)
    applies_to: str


METRICS: tuple[Metric, ...] = (
    Metric("fid", "FID, {k} (lower is better)", "min", "images"),
    Metric("w2", "W2 distance, {k} (lower is better)", "min", "points"),
    Metric("frechet", "Fréchet distance, {k} (lower is better)", "min", "points"),
    Metric("loss", "training loss", "min", "trainer"),
    Metric("lr", "learning rate", None, "trainer"),
    Metric("transport_cost", "transport cost E|x0 - x1|^2", None, "trainer"),
    Metric("eval_s", "evaluation time (s)", "min", "evaluation"),
    Metric("grad_var", "gradient variance (mean over parameters)", "min", "diagnostics"),
    Metric("grad_norm", "gradient norm (L2)", None, "diagnostics"),
    Metric("grad_var_pooled", "pooled gradient variance", "min", "diagnostics"),
    Metric("diag_s", "diagnostics time (s)", "min", "diagnostics"),
    Metric("kl", "KL(q(x1|x0) || N(0, I)) (nats)", None, "coupling"),
    Metric("step", "training step (iterations)", None, "progress"),
    Metric("images_seen", "training images seen", None, "progress"),
    Metric("wall_s", "wall-clock time (s)", None, "progress"),
)
BY_NAME = {m.name: m for m in METRICS}
#: the data kinds with per-step evaluation metrics
DATA_KINDS = ("images", "points")


def metrics_of(applies_to: str) -> tuple[str, ...]:
    """The names of the metrics reported by ``applies_to`` (a data kind, or ``trainer``, ...)."""
    return tuple(m.name for m in METRICS if m.applies_to == applies_to)


def step_column(family: str, steps: int) -> str:
    """The column of a per-step evaluation metric after ``steps`` sampling steps: ``fid_1step``."""
    return f"{family}_{steps}step"


def split_step_column(column: str) -> Optional[tuple[Metric, int]]:
    """(metric, K) of a per-step column ``{family}_{K}step``, None for any other column."""
    family, _, steps = column.rpartition("_")
    metric = BY_NAME.get(family)
    if metric is None or metric.applies_to not in DATA_KINDS or not steps.endswith("step") \
            or not steps[:-4].isdigit():
        return None
    return metric, int(steps[:-4])


def label(column: str) -> str:
    """Axis label with units for a column (the column name itself when the table has no entry)."""
    split = split_step_column(column)
    if split:
        metric, k = split
        return metric.label.format(k=f"{k} step" + ("s" if k > 1 else ""))
    metric = BY_NAME.get(column)
    return metric.label if metric else column


def direction(column: str) -> Direction:
    """``min`` / ``max``: which way the column is better; None when neither (or unknown)."""
    split = split_step_column(column)
    metric = split[0] if split else BY_NAME.get(column)
    return metric.direction if metric else None
