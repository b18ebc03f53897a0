"""A sweep's record and its progress table, live (``ablate.sweep_callbacks.ProgressTable``) and from disk
(``ablate status``), without Ray: ``ablate status`` imports neither ray nor torch.

The table needs the sweep's metric, its mode, the trials' iterations and the arms of the fixed design;
``ablate run`` writes them into ``sweep.json`` (``table``), so that status reads that file and the
store's per-trial summaries (``ablate.results.trial_summaries``), never the rows or the search space.
Sweeps begun before ``sweep.json`` kept them are read by rebuilding the spec from its stored copy.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import results, storage

if TYPE_CHECKING:
    from .spec import Point, SweepSpec

SWEEP_FILE, SPEC_FILE = "sweep.json", "spec.yaml"


class SweepError(RuntimeError):
    """A sweep cannot start or resume (bad directory, changed file, impossible resources)."""


def arm_label(point: Point) -> str:
    """Readable label of a point without its seed: the variant and the swept values."""
    parts = [point.variant] if point.variant else []
    parts += [f"{k}={v}" for k, v in sorted(point.params.items())]
    return ",".join(parts) or "base"


def table_view(spec: SweepSpec) -> dict[str, Any]:
    """What the progress table needs of a sweep: ``metric``, ``mode``, ``iterations`` and the ``arms``
    of its trials known up front (none for Optuna, which proposes points one by one)."""
    total = spec.config_for({}, next(iter(spec.variants), None), spec.seeds[0]).train.iterations
    arms = {p.trial_name: arm_label(p) for p in spec.points()} if spec.tune.searcher.name != "optuna" else {}
    return {"metric": spec.tune.metric, "mode": spec.tune.mode, "iterations": total, "arms": arms}


def read_record(sweep_dir: str) -> dict[str, Any]:
    """The sweep's ``sweep.json``."""
    location = storage.join(sweep_dir, SWEEP_FILE)
    if not storage.exists(location):
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})")
    return json.loads(storage.read_bytes(location).decode())


def load_sweep(sweep_dir: str) -> tuple[dict[str, Any], SweepSpec]:
    """The sweep's record and its spec, rebuilt from the copy stored when it began."""
    from .spec import load_spec

    record = read_record(sweep_dir)
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, os.path.basename(record["source"]))
        Path(copy).write_text(storage.read_bytes(storage.join(sweep_dir, SPEC_FILE)).decode())
        spec = load_spec(copy, record["profile"], record["overrides"], record.get("workdir"))
    return record, spec


def render_table(metric: str, total: int, lines: list[dict[str, Any]]) -> str:
    def num(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (int, float)) and v is not None and not (
            isinstance(v, float) and math.isnan(v)) else "-"

    header = f"{'trial':<28} {'step':>13} {('last ' + metric):>16} {'best':>10}  {'status':<13} arm"
    out = [header, "-" * len(header)]
    for line in lines:
        step = f"{line['step'] if line['step'] is not None else '-'}/{total}"
        out.append(f"{line['trial'][:28]:<28} {step:>13} {num(line['last']):>16} {num(line['best']):>10}"
                   f"  {str(line['status'])[:13]:<13} {line['arm']}")
        if line.get("error"):
            out.append(f"{'':<28}   error: {line['error']}")
    return "\n".join(out)


def status_table(sweep_dir: str) -> str:
    """The progress table from disk, for a running or finished sweep: ``sweep.json`` and the store's
    per-trial summaries."""
    record = read_record(sweep_dir)
    view = record.get("table") or table_view(load_sweep(sweep_dir)[1])
    summaries = results.trial_summaries(sweep_dir, metric=view["metric"], mode=view["mode"])
    lines = []
    for trial in summaries.to_dict("records"):
        lines.append({
            "trial": trial["trial_id"], "arm": trial["arm"] if isinstance(trial["arm"], str) else view["arms"].get(trial["trial_id"], ""),
            # a trial without rows has no step, and one without an error no error (both null)
            "step": None if pd.isna(trial["last_step"]) else int(trial["last_step"]),
            "last": trial["last"], "best": trial["best"],
            "status": trial["status"] if isinstance(trial["status"], str) else "-", "error": trial["error"] if isinstance(trial["error"], str) else None})
    return render_table(view["metric"], view["iterations"], lines)
