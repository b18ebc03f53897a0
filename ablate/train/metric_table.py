"""The one table of reported numbers: each metric's column name, its label with unit, which way is
better, and which runs report it.

Read by the trainer's columns (:mod:`.columns`), the diagnostics, the start-up check of ``tune.metric``
(:func:`ablate.train.checks.reported_metrics`) and the figures and tables (``ablate.figures``), so a
metric is named in one place. Plain data: no torch, no pandas (the figures import it too).

``applies_to``: ``images`` / ``points`` (evaluation metrics, measured after each number of sampling
steps K in ``eval.steps``: the column is ``{name}_{K}step``), ``trainer`` (every row), ``evaluation``
(rows with an evaluation), ``diagnostics`` (with ``log.diag_every`` > 0) or ``coupling`` (logged by
the couplings that list it in their ``logs``); ``progress``: the x axes of a run. ``curve``: the
report draws its learning curve when present. The first metric of a data kind is its headline (the
papers' tables: FID for images, W2 for points).
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

Direction = Optional[Literal["min", "max"]]


class Metric(NamedTuple):
    name: str
    label: str  # axis label with unit; ``{k}`` stands for the sampling steps of per-step metrics
    direction: Direction  # which way is better (None: neither)
    applies_to: str
    curve: bool = False  # the report draws its learning curve


METRICS: tuple[Metric, ...] = (
    Metric("fid", "FID, {k} (lower is better)", "min", "images"),
    Metric("w2", "W2 distance, {k} (lower is better)", "min", "points"),
    Metric("frechet", "Fréchet distance, {k} (lower is better)", "min", "points"),
    Metric("loss", "training loss", "min", "trainer", curve=True),
    Metric("lr", "learning rate", None, "trainer"),
    Metric("transport_cost", "transport cost E|x0 - x1|^2", None, "trainer", curve=True),
    Metric("kl", "KL(q(x1|x0) || N(0, I)) (nats)", None, "coupling", curve=True),
    Metric("eval_s", "evaluation time (s)", "min", "evaluation"),
    Metric("grad_var", "gradient variance (mean over parameters)", "min", "diagnostics"),
    Metric("grad_norm", "gradient norm (L2)", None, "diagnostics", curve=True),
    Metric("grad_var_pooled", "pooled gradient variance", "min", "diagnostics"),
    Metric("diag_s", "diagnostics time (s)", "min", "diagnostics"),
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


def headline(kind: str) -> str:
    """The headline metric family of a data kind (its first metric)."""
    return metrics_of(kind)[0]


#: the paper tables' columns, per data kind: the headline after 1 and 2 sampling steps
TABLE_METRICS = tuple((f"{headline(kind)}_1step", f"{headline(kind)}_2step") for kind in DATA_KINDS)
#: the headline metric of a report, first present wins: 1-step headlines, 2-step headlines, the loss
MAIN_METRICS = tuple(pair[0] for pair in TABLE_METRICS) + tuple(pair[1] for pair in TABLE_METRICS) + ("loss",)
#: metrics whose learning curves a report draws beside the headline's
SIDE_METRICS = tuple(pair[1] for pair in TABLE_METRICS) + tuple(m.name for m in METRICS if m.curve)


def is_metric(column: str) -> bool:
    """A column the table lists as a metric (any per-step column of an evaluation metric; not the x axes)."""
    metric = BY_NAME.get(column)
    return split_step_column(column) is not None or (metric is not None and metric.applies_to != "progress")


def table_order(columns) -> list[str]:
    """The metric columns among ``columns`` in the table's order (per-step ones by their step count)."""
    order = {m.name: i for i, m in enumerate(METRICS)}

    def key(column: str) -> tuple[int, int]:
        split = split_step_column(column)
        return (order[split[0].name], split[1]) if split else (order[column], 0)

    return sorted((c for c in columns if is_metric(c)), key=key)


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
