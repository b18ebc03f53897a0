"""The results store: crash-safe Parquet appends, dedup on resume, collect (design.md section 5).

Layout under a root (a sweep directory or the ``--out`` of ``ablate train``)::

    <root>/metrics/<trial_id>/a<attempt:03d>-<seq:08d>.parquet   one small file per append
    <root>/metrics/<trial_id>/_attempt-<attempt:03d>.json       {"attempt", "resumed_from_step",
                                                                 "started"}
    <root>/metrics/<trial_id>/_status.json                      {"status", "attempt", "step",
                                                                 "error", "updated"}

Every file is written whole (``ablate.storage.put``): a writer killed at any instant leaves either
nothing or a hidden temporary file, which readers ignore.

Dedup rule: a row of attempt ``a`` at step ``s`` is stale when a later attempt ``a' > a`` of the same
trial began from ``resumed_from_step`` ``R' < s`` (``R'`` null: started from scratch). Stale rows are
dropped; of the remaining rows of a (trial_id, step) the one of the highest attempt is kept.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .storage import put, resolve, write_file

logger = logging.getLogger(__name__)

#: ``interrupted``: the sweep's driver stopped on SIGINT/SIGTERM while the trial ran (ablate.sweep); the
#: next attempt (``ablate resume``) records ``running`` again
STATUSES = ("running", "completed", "stopped_early", "diverged", "errored", "interrupted")
WRITER_COLUMNS = ("trial_id", "attempt")

_ROWS_FILE = re.compile(r"a(\d{3,})-(\d{8,})\.parquet")
_ATTEMPT_FILE = re.compile(r"_attempt-(\d{3,})\.json")
_STATUS_FILE = "_status.json"
_READ_THREADS = 16
_SCALAR_TYPES = (str, int, float, bool, np.generic)


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _last_line(text: str | None) -> str | None:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _check_trial_id(trial_id: str) -> None:
    if not trial_id or "/" in trial_id or trial_id[0] in "_.":
        raise ValueError(
            f"trial_id {trial_id!r} is not allowed: it must be non-empty, contain no '/' "
            "and not start with '_' or '.'"
        )


#: Parquet type of each column type a trial declares (``ablate.train.columns``)
ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def arrow_schema(columns: dict[str, type]) -> pa.Schema:
    """The store's schema for declared columns: the writer's own columns first, then ``columns``."""
    fields = [pa.field("trial_id", pa.string()), pa.field("attempt", pa.int64())]
    return pa.schema(fields + [pa.field(name, ARROW_TYPES[kind]) for name, kind in columns.items()])


def _rows_to_table(rows: list[dict], trial_id: str, attempt: int, schema: pa.Schema | None = None) -> pa.Table:
    """One Arrow table from flat rows; keys missing from a row are null.

    With a ``schema`` (the trial's declared columns) every file has exactly those columns and types, so
    any Parquet reader, which takes its schema from one file, sees them all; a key the schema does not
    declare is an error. Without one, a column that is null in every row of this append is typed
    float64 (metrics are null between evaluations).
    """
    for index, row in enumerate(rows):
        for key, value in row.items():
            if key in WRITER_COLUMNS:
                raise ValueError(f"row {index} of trial {trial_id}: {key!r} is added by the writer")
            if value is not None and not isinstance(value, _SCALAR_TYPES):
                raise ValueError(
                    f"row {index} of trial {trial_id}: {key!r} is a {type(value).__name__}; "
                    "allowed values are str, int, float, bool or None"
                )
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"row {index} of trial {trial_id}: 'step' must be an int >= 0, got {step!r}")
    if schema is not None:
        undeclared = [key for key in dict.fromkeys(k for row in rows for k in row) if schema.get_field_index(key) < 0]
        if undeclared:
            raise ValueError(f"trial {trial_id}: row keys {undeclared} are not among the trial's declared "
                             "columns (ablate.train.columns)")
        arrays = [pa.array([trial_id] * len(rows), pa.string()), pa.array([attempt] * len(rows), pa.int64())]
        for field in list(schema)[2:]:
            try:
                arrays.append(pa.array([row.get(field.name) for row in rows], type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise ValueError(f"column {field.name!r} of trial {trial_id} is declared {field.type}: "
                                 f"{error}") from error
        return pa.Table.from_arrays(arrays, schema=schema)
    columns = {"trial_id": pa.array([trial_id] * len(rows)), "attempt": pa.array([attempt] * len(rows))}
    for key in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(key) for row in rows]
        all_null = all(value is None for value in values)
        try:
            columns[key] = pa.array(values, type=pa.float64() if all_null else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"column {key!r} of trial {trial_id} mixes types: {error}") from error
    return pa.table(columns)


class TrialWriter:
    """Appends one trial's reports to the store; one writer per trial at a time.

    Call :meth:`begin_attempt` once per process (fresh start or resume from a checkpoint), then
    :meth:`append` for each report and :meth:`set_status` when the trial's status changes.
    """

    def __init__(self, root: str, trial_id: str, filesystem: pafs.FileSystem | None = None,
                 columns: dict[str, type] | None = None) -> None:
        """``columns``: the trial's declared columns and types (``ablate.train.columns``); every file
        then carries all of them. None: each file has the columns its rows have."""
        _check_trial_id(trial_id)
        self.trial_id = trial_id
        self.schema = arrow_schema(columns) if columns is not None else None
        self._fs, root_path = resolve(root, filesystem)
        self._directory = f"{root_path}/metrics/{trial_id}"
        self._fs.create_dir(self._directory, recursive=True)
        self.attempt: int | None = None
        self._sequence = 0

    def begin_attempt(self, resumed_from_step: int | None) -> int:
        """Record a new attempt (``None``: from scratch) and return its 1-based number."""
        valid = resumed_from_step is None or (
            isinstance(resumed_from_step, int) and not isinstance(resumed_from_step, bool) and resumed_from_step >= 0
        )
        if not valid:
            raise ValueError(f"resumed_from_step must be None or an int >= 0, got {resumed_from_step!r}")
        names = [info.base_name for info in self._fs.get_file_info(pafs.FileSelector(self._directory))]
        matches = [_ATTEMPT_FILE.fullmatch(name) or _ROWS_FILE.fullmatch(name) for name in names]
        previous = [int(match.group(1)) for match in matches if match]
        attempt = max(previous, default=0) + 1
        record = {"attempt": attempt, "resumed_from_step": resumed_from_step, "started": _now()}
        put(self._fs, f"{self._directory}/_attempt-{attempt:03d}.json", json.dumps(record).encode())
        self.attempt, self._sequence = attempt, 0
        logger.debug("trial %s: attempt %d (resumed from step %s)", self.trial_id, attempt, resumed_from_step)
        return attempt

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (flat dicts of scalars, each with an int ``step``) as one new file."""
        if self.attempt is None:
            raise RuntimeError(f"trial {self.trial_id}: call begin_attempt() before append()")
        if not rows:
            return
        table = _rows_to_table(rows, self.trial_id, self.attempt, self.schema)
        name = f"a{self.attempt:03d}-{self._sequence:08d}.parquet"
        put(self._fs, f"{self._directory}/{name}", _parquet_bytes(table))
        self._sequence += 1

    def set_status(self, status: str, step: int | None = None, error: str | None = None) -> None:
        """Replace ``_status.json``; ``error`` keeps only its last non-empty line."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if self.attempt is None:
            raise RuntimeError(f"trial {self.trial_id}: call begin_attempt() before set_status()")
        record = {
            "status": status, "attempt": self.attempt, "step": step, "error": _last_line(error), "updated": _now()
        }
        put(self._fs, f"{self._directory}/{_STATUS_FILE}", json.dumps(record).encode())


def mark_status(root: str, trial_id: str, status: str, step: int | None = None, error: str | None = None,
                filesystem: pafs.FileSystem | None = None) -> None:
    """Record an outcome decided outside the trial's process (the sweep driver): stopped early by the
    scheduler, errored after its last retry, interrupted. Attributed to the trial's latest attempt."""
    writer = TrialWriter(root, trial_id, filesystem=filesystem)
    names = [info.base_name for info in writer._fs.get_file_info(pafs.FileSelector(writer._directory))]
    attempts = [int(m.group(1)) for m in map(_ATTEMPT_FILE.fullmatch, names) if m]
    writer.attempt = max(attempts, default=1)
    writer.set_status(status, step=step, error=error)


def mark_interrupted(root: str, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Record what a sweep's driver stopped on a signal leaves: every trial still ``running`` (or with no
    status yet) becomes ``interrupted``, at its last step, and the ids are returned. Call it once the trial
    processes have stopped writing. A trial whose last row already carries its outcome (it finished, then
    stopped before replacing its status) gets that outcome instead: a finished trial stays finished."""
    try:
        store = _Store(root, filesystem)
    except FileNotFoundError:  # no trial has started
        return []
    rows = _deduplicate(store.raw_rows, store.attempts)
    last = rows.drop_duplicates("trial_id", keep="last").set_index("trial_id")
    recorded = store.statuses.set_index("trial_id")["status"]
    interrupted = []
    for trial_id in sorted(store.trial_ids):
        if recorded.get(trial_id, "running") != "running":
            continue
        step = int(last.at[trial_id, "step"]) if trial_id in last.index else None
        outcome = last.at[trial_id, "status"] if trial_id in last.index and "status" in last else None
        if outcome not in STATUSES or outcome == "running":
            outcome = "interrupted"
            interrupted.append(trial_id)
        mark_status(root, trial_id, outcome, step=step, filesystem=filesystem)
    return interrupted


def current_status(root: str, trial_id: str, filesystem: pafs.FileSystem | None = None) -> str | None:
    """The status in the trial's ``_status.json`` (None before it has one)."""
    fs, root_path = resolve(root, filesystem)
    try:
        with fs.open_input_stream(f"{root_path}/metrics/{trial_id}/{_STATUS_FILE}") as source:
            return json.loads(source.read())["status"]
    except FileNotFoundError:
        return None


def _read_rows_file(fs: pafs.FileSystem, path: str) -> pa.Table:
    """One append file, with all-null columns retyped as null so that they unify with any type."""
    with fs.open_input_file(path) as source:
        table = pq.read_table(source)
    for index, column in enumerate(table.columns):
        if len(table) and column.null_count == len(table) and column.type != pa.null():
            table = table.set_column(index, table.field(index).name, pa.nulls(len(table)))
    return table


def _read_json(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_stream(path, compression=None) as source:
        text = source.read().decode()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


class _Store:
    """Everything under ``<root>/metrics``, read once."""

    def __init__(self, root: str, filesystem: pafs.FileSystem | None) -> None:
        fs, root_path = resolve(root, filesystem)
        metrics = f"{root_path}/metrics"
        try:
            infos = fs.get_file_info(pafs.FileSelector(metrics, recursive=True))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"no results store at {root}: {metrics} does not exist") from error
        self.trial_ids: set[str] = set()
        rows_paths, attempt_paths, status_paths = [], [], []
        for info in infos:
            parts = info.path[len(metrics) + 1 :].split("/")
            if parts[0][:1] in ("_", ".") or len(parts) > 2:
                continue
            self.trial_ids.add(parts[0])
            if info.type != pafs.FileType.File:
                continue
            if _ROWS_FILE.fullmatch(parts[1]):
                rows_paths.append(info.path)
            elif _ATTEMPT_FILE.fullmatch(parts[1]):
                attempt_paths.append((parts[0], info.path))
            elif parts[1] == _STATUS_FILE:
                status_paths.append((parts[0], info.path))
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            tables = list(pool.map(lambda path: _read_rows_file(fs, path), sorted(rows_paths)))
            attempts = list(pool.map(lambda item: (item[0], _read_json(fs, item[1])), attempt_paths))
            statuses = list(pool.map(lambda item: (item[0], _read_json(fs, item[1])), status_paths))
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if tables else None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"rows under {metrics} have incompatible column types: {error}") from error
        raw_rows = table.to_pandas() if table is not None else pd.DataFrame(columns=["trial_id", "attempt", "step"])
        self.raw_rows = raw_rows.astype({"trial_id": str, "attempt": "int64", "step": "int64"})
        self.attempts = pd.DataFrame(
            [(trial, record["attempt"], record["resumed_from_step"]) for trial, record in attempts],
            columns=["trial_id", "attempt", "resumed_from_step"],
        ).astype({"trial_id": str, "attempt": "int64", "resumed_from_step": float})
        self.statuses = pd.DataFrame(
            [(trial, record["status"], record["attempt"], record["error"]) for trial, record in statuses],
            columns=["trial_id", "status", "status_attempt", "error"],
        ).astype({"trial_id": str})


def _stale_cutoffs(row_attempts: pd.DataFrame, attempts: pd.DataFrame) -> pd.Series:
    """For each (trial_id, attempt) of ``row_attempts``: the last step not made stale by a later attempt.

    That is min over later attempts a' > a of resumed_from_step(a') (-inf for a fresh start, +inf
    when no later attempt exists), computed as a reverse cumulative minimum per trial.
    """
    later = attempts.assign(resume=attempts["resumed_from_step"].fillna(-np.inf))
    later = later.sort_values(["trial_id", "attempt"], ascending=[True, False])
    later["cutoff"] = later.groupby("trial_id")["resume"].cummin()
    merged = pd.merge_asof(
        row_attempts.sort_values("attempt"),
        later[["trial_id", "attempt", "cutoff"]].sort_values("attempt"),
        on="attempt",
        by="trial_id",
        direction="forward",
        allow_exact_matches=False,
    )
    return merged.set_index(["trial_id", "attempt"])["cutoff"].fillna(np.inf)


def _deduplicate(rows: pd.DataFrame, attempts: pd.DataFrame) -> pd.DataFrame:
    """Drop stale rows, then keep the highest attempt of each (trial_id, step); sorted by trial, step."""
    if rows.empty:
        return rows.reset_index(drop=True)
    cutoffs = _stale_cutoffs(rows[["trial_id", "attempt"]].drop_duplicates(), attempts)
    row_cutoff = cutoffs.reindex(pd.MultiIndex.from_frame(rows[["trial_id", "attempt"]])).to_numpy()
    current = rows[rows["step"].to_numpy() <= row_cutoff]
    current = current.sort_values(["trial_id", "step", "attempt"], kind="stable")
    return current.drop_duplicates(["trial_id", "step"], keep="last").reset_index(drop=True)


def _apply_final_status(rows: pd.DataFrame, statuses: pd.DataFrame) -> pd.DataFrame:
    """Give each trial's last row its final status from ``_status.json`` when that status belongs to
    the attempt that wrote the row or a later one."""
    final = statuses[statuses["status"] != "running"].set_index("trial_id")
    if rows.empty or final.empty:
        return rows
    last = rows[~rows["trial_id"].duplicated(keep="last")]
    outcome = last["trial_id"].map(final["status"])
    applies = outcome.notna() & (last["trial_id"].map(final["status_attempt"]) >= last["attempt"])
    rows = rows.copy()
    if "status" not in rows.columns:
        rows["status"] = pd.Series(None, index=rows.index, dtype=object)
    rows.loc[applies[applies].index, "status"] = outcome[applies]
    return rows


def read_rows(root: str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """All trials' rows, one per (trial_id, step), sorted by trial_id and step.

    Schemas are unified (nulls where a column is absent, int+float -> float); stale rows of discarded
    attempts are dropped and each trial's last row carries its final status (module docstring).
    """
    store = _Store(root, filesystem)
    return _apply_final_status(_deduplicate(store.raw_rows, store.attempts), store.statuses)


def trial_status(root: str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """One row per trial: trial_id, status, attempts, last_step, error (last line), n_rows."""
    store = _Store(root, filesystem)
    rows = _deduplicate(store.raw_rows, store.attempts)
    per_trial = pd.DataFrame({"trial_id": sorted(store.trial_ids)}).astype({"trial_id": str})
    per_trial = per_trial.merge(store.statuses[["trial_id", "status", "error"]], on="trial_id", how="left")
    attempt_counts = store.attempts.groupby("trial_id").size().rename("attempts")
    row_counts = rows.groupby("trial_id")["step"].agg(last_step="max", n_rows="size")
    per_trial = per_trial.join(attempt_counts, on="trial_id").join(row_counts, on="trial_id")
    per_trial = per_trial.astype({"attempts": "Int64", "last_step": "Int64", "n_rows": "Int64"})
    per_trial = per_trial.fillna({"attempts": 0, "n_rows": 0})
    return per_trial[["trial_id", "status", "attempts", "last_step", "error", "n_rows"]]


def collected_is_current(root: str, filesystem: pafs.FileSystem | None = None) -> bool:
    """Whether ``<root>/results.parquet`` (:func:`collect`'s default) exists and is at least as new as
    every file of the store under ``root`` (nothing was written since it was collected), so that reading
    it gives what :func:`read_rows` would. True for a collected file without a store next to it."""
    fs, root_path = resolve(root, filesystem)
    written = fs.get_file_info(f"{root_path}/results.parquet")
    if written.type != pafs.FileType.File or written.mtime is None:
        return False
    try:
        infos = fs.get_file_info(pafs.FileSelector(f"{root_path}/metrics", recursive=True))
    except FileNotFoundError:
        return True
    changed = [info.mtime for info in infos if info.type == pafs.FileType.File]
    return all(mtime is not None and mtime <= written.mtime for mtime in changed)


def collect(root: str, out: str | None = None, filesystem: pafs.FileSystem | None = None) -> str:
    """Write :func:`read_rows` as one Parquet file (default ``<root>/results.parquet``); return its path/URI.

    ``out`` is a path in ``filesystem`` when one is given, else a local path or URI of its own.
    """
    rows = read_rows(root, filesystem)
    out = out or f"{root.rstrip('/')}/results.parquet"
    write_file(out, _parquet_bytes(pa.Table.from_pandas(rows, preserve_index=False)), filesystem)
    logger.info("collected %d rows of %d trials into %s", len(rows), rows["trial_id"].nunique(), out)
    return out
