"""The columns of a trial's report rows, known before the first step (design.md section 5).

Every row a trial writes carries its full column set from step 0 on, null where a value does not
exist yet (``kl`` before the first training step, ``fid_1step`` between evaluations), with the same
type in every file, so that any Parquet reader (pandas on a directory, pyarrow datasets, DuckDB),
which takes its schema from one file, sees every column. The columns come from what each part
declares: the trainer's own (:data:`TRAINER_COLUMNS`), the coupling's ``logs``, the gradient
diagnostics, and the evaluation's metrics per sampling step (:func:`evaluation_columns`, which
``ablate.evaluation`` produces and the start-up rules' metric check reads). Config fields become
columns by their dotted names (:func:`config_columns`), typed from their declarations.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel

from .config import Config
from .couplings import COUPLINGS
from .metric_table import DATA_KINDS, metrics_of, step_column

#: a column's type: one of these Python types (the store maps them to Parquet types)
ColumnTypes = dict[str, type]

#: the trainer's own columns (``Trainer._report_row``)
TRAINER_COLUMNS: ColumnTypes = {"step": int, "images_seen": int, "wall_s": float, "loss": float,
                                "lr": float, "stage": int, "status": str, "transport_cost": float}
#: evaluation metrics per data kind, one per sampling step count: ``{family}_{k}step``
STEP_METRICS = {kind: metrics_of(kind) for kind in DATA_KINDS}


def evaluation_columns(cfg: Config, kind: str, pictures: bool = True) -> ColumnTypes:
    """What an evaluation adds to a row (``ablate.evaluation.Evaluator``): the metrics after each
    step count of ``eval.steps``, the FID extractor's name on images, the seconds spent and, when
    pictures are saved, the picture's path relative to the store."""
    columns: ColumnTypes = {step_column(family, k): float for k in cfg.eval.steps
                            for family in STEP_METRICS[kind]}
    if kind == "images":
        columns["fid_extractor"] = str
    columns["eval_s"] = float
    if pictures and cfg.eval.grid:
        columns["samples_png"] = str
    return columns


def trainer_columns(cfg: Config) -> ColumnTypes:
    """The trainer's report columns for ``cfg``: its own, the coupling's logs, the diagnostics."""
    columns = dict(TRAINER_COLUMNS)
    columns.update(dict.fromkeys(COUPLINGS.get(cfg.coupling.name).logs, float))
    if cfg.log.diag_every:
        columns.update(dict.fromkeys(metrics_of("diagnostics"), float))
    return columns


def _python_type(annotation: Any) -> type:
    """The column type of a config field: lists and tuples are stored as JSON text, choices as text."""
    origin = typing.get_origin(annotation)
    if origin is Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _python_type(members[0]) if len(members) == 1 else str
    if origin is Literal:
        return type(typing.get_args(annotation)[0])
    if origin in (list, tuple) or annotation in (list, tuple):
        return str
    if annotation in (bool, int, float, str):
        return annotation
    return str


def config_columns(cfg: BaseModel, prefix: str = "") -> ColumnTypes:
    """Every config field by its dotted name (``coupling.beta``; nested blocks as :func:`.config.flatten`
    names them, ``train.distributed.workers``), typed from its declaration."""
    columns: ColumnTypes = {}
    for key, field in type(cfg).model_fields.items():
        value = getattr(cfg, key)
        if isinstance(value, BaseModel):
            columns.update(config_columns(value, f"{prefix}{key}."))
        elif prefix:  # the sections' fields; Config itself has nothing else
            columns[f"{prefix}{key}"] = _python_type(field.annotation)
    return columns


def merge_columns(*parts: ColumnTypes) -> ColumnTypes:
    """The union of column sets; a column typed int in one and float in another is float."""
    out: ColumnTypes = {}
    for part in parts:
        for name, kind in part.items():
            known: Optional[type] = out.get(name)
            if known is None or known == kind:
                out[name] = kind
            elif {known, kind} == {int, float}:
                out[name] = float
            else:
                raise ValueError(f"column {name!r} is {known.__name__} in one trial and {kind.__name__} "
                                 "in another")
    return out


#: columns every trial adds besides its config: the seed, the machine and device it ran on
TRIAL_COLUMNS: ColumnTypes = {"seed": int, "node": str, "device": str}


def _value_type(value: Any) -> type:
    return type(value) if isinstance(value, (bool, int, float)) else str


def row_columns(cfg: Config, kind: str, pictures: bool = True,
                extra: Optional[dict[str, Any]] = None) -> ColumnTypes:
    """Every column of a trial's rows with its type: the trainer's and the evaluation's, the trial's,
    ``extra`` (a sweep's: arm, variant...) and the config's. Rows carry all of them from step 0 on, null where a value does not exist yet."""
    return merge_columns(trainer_columns(cfg), evaluation_columns(cfg, kind, pictures), TRIAL_COLUMNS,
                         {key: _value_type(value) for key, value in (extra or {}).items()},
                         config_columns(cfg))
