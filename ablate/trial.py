"""One trial end to end: dataset, evaluator, trainer, results rows and checkpoints.

``ablate train`` and every Ray Tune trial call :func:`run_trial`; the sweep layer only adds how rows
and checkpoints reach Ray. Order on each report: the row is appended to the store first, then the
checkpoint is written, so a crash between the two leaves rows past the last checkpoint, which the
store's dedup drops when the trial resumes from that checkpoint (a new attempt).
"""
from __future__ import annotations

import json
import logging
import socket
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pyarrow.fs as pafs
import torch

from .data import describe_dataset, load_dataset
from .evaluation import Evaluator
from .results import TrialWriter
from .train.checks import check_runnable
from .train.columns import ColumnTypes, merge_columns, row_columns
from .train.config import Config, flatten
from .train.trainer import Trainer, resolve_device

log = logging.getLogger(__name__)

#: ``on_report(row, trainer, checkpoint_due)``: called after the row is stored.
ReportHook = Callable[[dict[str, Any], Trainer, bool], None]


@dataclass
class TrialSetup:
    """A trial whose inputs are all validated: building it raises before anything is written."""

    cfg: Config
    trainer: Trainer
    columns: dict[str, Any] = field(default_factory=dict)  # the values every row of the trial shares
    schema: ColumnTypes = field(default_factory=dict)  # every column a row has, with its type


def prepare_trial(cfg: Config, out_dir: Optional[str], columns: Optional[dict[str, Any]] = None,
                  device: Optional[torch.device] = None, pictures_under: str = "samples",
                  source: str = "config", schema: Optional[ColumnTypes] = None) -> TrialSetup:
    """Load the data and build the trainer and evaluator (config errors surface here).

    The start-up rules (:mod:`ablate.train.checks`, the ones ``ablate validate`` applies) run on the
    dataset's description before any data is read, and again in the Trainer on the data read (an
    image folder's labels), before the evaluator trains or loads a feature extractor. Sample pictures
    go to ``out_dir/pictures_under/`` (a path or URI; ``out_dir`` None: none). ``source`` names the
    config in errors (its file). ``schema``: the columns of every
    trial of a sweep (:func:`row_columns` over its points), so that all its files share one schema."""
    check_runnable(cfg, describe_dataset(cfg.data), source)
    device = device or resolve_device(cfg.train.device)
    data = load_dataset(cfg.data, seed=cfg.train.seed)
    trainer = Trainer(cfg, data, device=device)
    trainer.evaluator = Evaluator(cfg.eval, data, out_dir, device, pictures_under)
    base = {"seed": cfg.train.seed, "node": socket.gethostname(), "device": str(device)}
    base.update({k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(cfg).items()})
    base.update(columns or {})
    own = row_columns(cfg, data.kind, out_dir is not None, columns)
    return TrialSetup(cfg, trainer, base, merge_columns(schema, own) if schema else own)


def run_trial(setup: TrialSetup, store_root: str, trial_id: str, *,
              resume_from: Optional[str] = None, on_report: Optional[ReportHook] = None,
              filesystem: Optional[pafs.FileSystem] = None,
              summary_metric: Optional[tuple[str, str]] = None) -> dict[str, Any]:
    """Train ``setup`` to the end, appending one row per report to the store at ``store_root``.

    ``resume_from``: a checkpoint file to continue from (a new attempt in the store). Returns the
    last row. Exceptions mark the trial ``errored`` in the store (with the error's last line) and are
    re-raised; divergence ends the run with status ``diverged`` (no exception). A checkpoint of a
    finished trial (a driver killed after its last report) starts no attempt and writes nothing.
    ``summary_metric``: (metric, mode) whose last and best value the trial's store summary keeps (what
    ``ablate status`` shows). However the run ends, the attempt's rows are compacted into one file.
    """
    trainer = setup.trainer
    if resume_from is not None:
        trainer.load(resume_from)
        if trainer.status != "running":
            log.info("trial %s: its checkpoint at step %d is %s already", trial_id, trainer.step, trainer.status)
            return {**setup.columns, "step": trainer.step, "status": trainer.status}
        log.info("trial %s: resumed from step %d", trial_id, trainer.step)
    metric, mode = summary_metric or (None, "min")
    writer = TrialWriter(store_root, trial_id, filesystem=filesystem, columns=setup.schema, metric=metric, mode=mode)
    writer.begin_attempt(trainer.step if resume_from is not None else None)
    writer.set_status("running", step=trainer.step)  # a retry is running again, not still `errored`
    every = setup.cfg.log.checkpoint_every
    reports = 0

    def store(row: dict[str, Any], tr: Trainer) -> None:
        nonlocal reports
        full = {**setup.columns, **row}
        writer.append([full])
        reports += 1
        done = row["status"] != "running"
        if done:
            writer.set_status(row["status"], step=row["step"])
        if on_report is not None:
            on_report(full, tr, (reports % every == 0 or done) and row["status"] != "diverged")

    try:
        last = trainer.run(store)
    except Exception as err:  # record, then re-raise; SystemExit (Ray stopping the trial) and
        # KeyboardInterrupt are not errors of the trial: its outcome is decided by whoever stopped it
        message = "".join(traceback.format_exception_only(type(err), err)).strip()
        writer.set_status("errored", step=trainer.step, error=message)
        raise
    finally:  # also when Ray stops the trial (SystemExit)
        writer.close()
    return {**setup.columns, **last}
