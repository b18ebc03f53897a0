"""Ray Tune callbacks of a running sweep: the live progress table, the trial statuses it records, and
the filter on Tune's own notes when a signal stops it (a Ray module, beside :mod:`ablate.sweep`)."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from . import results
from .interrupt import StopSignals
from .progress import arm_label, render_table, table_view
from .sweep_trial import _point_of
from .spec import SweepSpec



# --------------------------------------------------------------------------------------- running
class ProgressTable(tune.Callback):
    """A live table: trial, swept values, step/total, last and best metric, status."""

    def __init__(self, spec: SweepSpec, every_s: float = 15.0, stream=sys.stdout):
        self.spec, self.every_s, self.stream = spec, every_s, stream
        self.total = table_view(spec)["iterations"]
        self.rows: dict[str, dict[str, Any]] = {}
        self._last = 0.0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self.rows.setdefault(trial.trial_id, {"best": math.nan})
        value = result.get(self.spec.tune.metric, math.nan)
        better = min if self.spec.tune.mode == "min" else max
        if isinstance(value, float) and math.isfinite(value):
            row["best"] = value if math.isnan(row["best"]) else better(row["best"], value)
        row.update(step=result.get("step"), last=value, status=result.get("status", "running"))
        self._maybe_print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._maybe_print(trials, force=True)

    def _maybe_print(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        print(render_table(self.spec.tune.metric, self.total, [self._line(t) for t in trials]), file=self.stream,
              flush=True)

    def _line(self, trial) -> dict[str, Any]:
        row = self.rows.get(trial.trial_id, {})
        point = _point_of(trial.config, self.spec)
        return {"trial": point.trial_name if "point" in trial.config else str(trial),
                "arm": arm_label(point), "step": row.get("step"), "last": row.get("last"),
                "best": row.get("best"), "status": row.get("status") or trial.status.lower()}


class StatusWriter(tune.Callback):
    """Driver-side outcomes the trial cannot write itself: stopped early by the scheduler, errored
    after its last retry."""

    def __init__(self, spec: SweepSpec, sweep_dir: str):
        self.spec, self.sweep_dir = spec, sweep_dir

    def _trial_id(self, trial) -> str:
        return (_point_of(trial.config, self.spec).trial_name if "point" in trial.config
                else str(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last, trial_id = trial.last_result or {}, self._trial_id(trial)
        # Tune's last result can be older than the trial: resumed from a stale experiment state, a
        # trial whose stored state had already finished ends without reporting; its own record decides
        if last.get("status") == "running" and results.current_status(self.sweep_dir, trial_id) == "running":
            results.mark_status(self.sweep_dir, trial_id, "stopped_early", step=last.get("step"))

    def on_trial_error(self, iteration, trials, trial, **info):
        error = None
        if trial.error_file and os.path.exists(trial.error_file):
            error = Path(trial.error_file).read_text()
        results.mark_status(self.sweep_dir, self._trial_id(trial), "errored",
                            step=(trial.last_result or {}).get("step"), error=error)


class _TuneStopNotes(logging.Filter):
    """Watches Ray Tune's log while it stops on a signal. Its notes on a stopped run (its Ctrl-C advice,
    ``Resume experiment with: Tuner.restore(...)``, the trials it left unfinished) name a Python API the
    user never called, so they are dropped (the CLI says how to continue: ``ablate resume DIR``); its note
    that the final save of its experiment state is over (or failed) tells ``signals`` that a second
    signal may end the process now."""

    HIDDEN = ("Stop signal received", "Experiment has been interrupted", "Trials did not complete")
    SAVED = ("Wrote the latest version of all result files and experiment state",
             "Experiment state snapshotting failed")

    def __init__(self, signals: StopSignals):
        super().__init__()
        self.signals = signals

    def filter(self, record: logging.LogRecord) -> bool:
        if self.signals.received is None:
            return True
        message = record.getMessage()
        if message.startswith(self.SAVED):
            self.signals.saved()
        return not message.startswith(self.HIDDEN)
