"""The results store: crash-safe Parquet appends, compaction, dedup on resume, per-trial summaries,
collect (design.md section 5).

Layout under a root (a sweep directory or the ``--out`` of ``ablate train``)::

    <root>/metrics/<trial_id>/a<attempt:03d>-<seq:08d>.parquet        one small file per append
    <root>/metrics/<trial_id>/a<attempt:03d>-upto-<seq:08d>.parquet   the attempt's appends 0..seq-1
    <root>/metrics/<trial_id>/_attempt-<attempt:03d>.json   {"attempt", "resumed_from_step", "started"}
    <root>/metrics/<trial_id>/_status.json                  {"status", "attempt", "step", "error", "updated"}
    <root>/metrics/<trial_id>/_summary.json                 the trial's deduplicated rows in brief
                                                             (:func:`trial_summaries`), after every append

Every file is written whole (``ablate.storage.put``): a writer killed at any instant leaves either
nothing or a hidden temporary file, which readers ignore.

Compaction: every :data:`COMPACT_EVERY` appends and when an attempt ends (:meth:`TrialWriter.close`) the
writer writes all rows of its attempt so far as one file ``a<A>-upto-<S>`` (appends ``0..S-1``), then
deletes the append files and the older compacted file it covers. Readers
take, per attempt, its newest compacted file and the appends numbered ``>= S``: an append file that a
compacted file covers (a writer killed before its deletes) is ignored, so a crash at any instant loses
no row and counts none twice. Stores written before compaction existed (append files only) read the
same way. The cost of a read therefore grows with trials and attempts, not with rows.

Dedup rule: a row of attempt ``a`` at step ``s`` is stale when a later attempt ``a' > a`` of the same
trial began from ``resumed_from_step`` ``R' < s`` (``R'`` null: started from scratch). Stale rows are
dropped; of the remaining rows of a (trial_id, step) the one of the highest attempt is kept.
"""

from __future__ import annotations

import json
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Union

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
#: appends between two compactions of an attempt's rows into one file
COMPACT_EVERY = 32

_ROWS_FILE = re.compile(r"a(\d{3,})-(\d{8,})\.parquet")
_COMPACTED_FILE = re.compile(r"a(\d{3,})-upto-(\d{8,})\.parquet")
_ATTEMPT_FILE = re.compile(r"_attempt-(\d{3,})\.json")
_STATUS_FILE, _SUMMARY_FILE = "_status.json", "_summary.json"
_KEYS = ["trial_id", "attempt", "step"]
_SUMMARY_KEYS = ("n_rows", "last_step", "last_status", "arm", "last", "best")
_READ_THREADS = 16
_READ_RETRIES = 5  # listings of a trial whose running writer compacts while it is read
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
        for declared in list(schema)[2:]:
            try:
                arrays.append(pa.array([row.get(declared.name) for row in rows], type=declared.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise ValueError(f"column {declared.name!r} of trial {trial_id} is declared {declared.type}: "
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


# ------------------------------------------------------------------------------------------- writing
class TrialWriter:
    """Appends one trial's reports to the store; one writer per trial at a time.

    Call :meth:`begin_attempt` once per process (fresh start or resume from a checkpoint), then
    :meth:`append` for each report and :meth:`set_status` when the trial's status changes, and
    :meth:`close` when the attempt ends (its rows are then one file).
    """

    def __init__(self, root: str, trial_id: str, filesystem: pafs.FileSystem | None = None,
                 columns: dict[str, type] | None = None, metric: str | None = None, mode: str = "min") -> None:
        """``columns``: the trial's declared columns and types (``ablate.train.columns``); every file
        then carries all of them. None: each file has the columns its rows have. ``metric``, ``mode``:
        the metric whose last and best value the trial's summary keeps (the sweep's tune metric)."""
        _check_trial_id(trial_id)
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is not one of min, max")
        self.trial_id, self.metric, self.mode = trial_id, metric, mode
        self.schema = arrow_schema(columns) if columns is not None else None
        self._fs, root_path = resolve(root, filesystem)
        self._metrics = f"{root_path}/metrics"
        self._directory = f"{self._metrics}/{trial_id}"
        self._fs.create_dir(self._directory, recursive=True)
        self.attempt: int | None = None
        self._sequence = 0  # appends of this attempt so far
        self._compacted = 0  # appends of this attempt in its newest compacted file
        self._rows: list[pa.Table] = []  # every row of this attempt
        self._earlier = pd.DataFrame()  # the summary columns of the earlier attempts' current rows
        self._summary: dict = {}  # the trial's current rows in brief (_summarize), kept up to date

    def _files(self) -> _TrialFiles:
        return _list_trial(self._fs, self._directory, self.trial_id)

    def begin_attempt(self, resumed_from_step: int | None) -> int:
        """Record a new attempt (``None``: from scratch) and return its 1-based number. An attempt this
        writer had begun is closed first."""
        valid = resumed_from_step is None or (
            isinstance(resumed_from_step, int) and not isinstance(resumed_from_step, bool) and resumed_from_step >= 0
        )
        if not valid:
            raise ValueError(f"resumed_from_step must be None or an int >= 0, got {resumed_from_step!r}")
        self.close()
        files = self._files()
        attempt = files.latest_attempt() + 1
        record = {"attempt": attempt, "resumed_from_step": resumed_from_step, "started": _now()}
        put(self._fs, f"{self._directory}/_attempt-{attempt:03d}.json", json.dumps(record).encode())
        self.attempt, self._sequence, self._compacted, self._rows = attempt, 0, 0, []
        # what the earlier attempts leave current, for the summary (nothing of a fresh start)
        self._earlier = pd.DataFrame() if resumed_from_step is None else _current_rows(
            self._fs, [files], _summary_columns(self.metric), self._directory,
            extra_attempts=[(self.trial_id, record)]).to_pandas()
        self._summary = _summarize(self._earlier, self.metric, self.mode)
        self._write_summary()
        logger.debug("trial %s: attempt %d (resumed from step %s)", self.trial_id, attempt, resumed_from_step)
        return attempt

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (flat dicts of scalars, each with an int ``step``) as one new file; every
        :data:`COMPACT_EVERY` appends, compact the attempt's rows into one file."""
        if self.attempt is None:
            raise RuntimeError(f"trial {self.trial_id}: call begin_attempt() before append()")
        if not rows:
            return
        table = _rows_to_table(rows, self.trial_id, self.attempt, self.schema)
        put(self._fs, self._append_path(self._sequence), _parquet_bytes(table))
        self._rows.append(table)
        self._sequence += 1
        folded = _fold(self._summary, rows, self.metric, self.mode)
        if folded is None:  # a step reported again: recount from the rows
            own = _concat(self._rows, self._directory)
            own = own.select([name for name in ["step", *_summary_columns(self.metric)] if name in own.column_names])
            both = pd.concat([self._earlier, own.to_pandas()], ignore_index=True)
            folded = _summarize(both.drop_duplicates("step", keep="last").sort_values("step", kind="stable"),
                                self.metric, self.mode)
        self._summary = folded
        self._write_summary()
        if self._sequence - self._compacted >= COMPACT_EVERY:
            self._compact()

    def _write_summary(self) -> None:
        """``_summary.json``: the trial's current rows in brief as of this attempt's first ``appends``."""
        summary = {"attempt": self.attempt, "appends": self._sequence, "metric": self.metric, "mode": self.mode,
                   **self._summary}
        put(self._fs, f"{self._directory}/{_SUMMARY_FILE}", json.dumps(summary).encode())

    def close(self) -> None:
        """End the attempt: its rows not yet compacted go into its compacted file."""
        if self.attempt is not None and self._sequence > self._compacted:
            self._compact()

    def _append_path(self, sequence: int) -> str:
        return f"{self._directory}/a{self.attempt:03d}-{sequence:08d}.parquet"

    def _compacted_path(self, upto: int) -> str:
        return f"{self._directory}/a{self.attempt:03d}-upto-{upto:08d}.parquet"

    def _compact(self) -> None:
        """Write the attempt's rows as one file, then delete the files it replaces: a crash in between
        leaves covered files, which readers skip (module docstring)."""
        table = _concat(self._rows, self._directory)  # declared columns (one schema per sweep) stay as declared
        put(self._fs, self._compacted_path(self._sequence), _parquet_bytes(table))
        replaced = [self._append_path(sequence) for sequence in range(self._compacted, self._sequence)]
        if self._compacted:
            replaced.append(self._compacted_path(self._compacted))
        for path in replaced:
            try:
                self._fs.delete_file(path)
            except FileNotFoundError:
                pass
        self._rows, self._compacted = [table], self._sequence

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
    writer.attempt = max(writer._files().attempts, default=1)
    writer.set_status(status, step=step, error=error)


def current_status(root: str, trial_id: str, filesystem: pafs.FileSystem | None = None) -> str | None:
    """The status in the trial's ``_status.json`` (None before it has one)."""
    fs, root_path = resolve(root, filesystem)
    try:
        with fs.open_input_stream(f"{root_path}/metrics/{trial_id}/{_STATUS_FILE}") as source:
            return json.loads(source.read())["status"]
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------------------- reading
@dataclass
class _TrialFiles:
    """What one listing shows of a trial's directory."""

    trial_id: str
    directory: str
    attempts: dict[int, str] = field(default_factory=dict)  # attempt -> its _attempt json
    compacted: dict[int, tuple[int, str]] = field(default_factory=dict)  # attempt -> newest (upto, path)
    appended: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # attempt -> [(seq, path)]
    status: str | None = None
    summary: str | None = None

    def add(self, name: str, path: str) -> None:
        if match := _ROWS_FILE.fullmatch(name):
            self.appended.setdefault(int(match.group(1)), []).append((int(match.group(2)), path))
        elif match := _COMPACTED_FILE.fullmatch(name):
            attempt, upto = int(match.group(1)), int(match.group(2))
            if upto > self.compacted.get(attempt, (-1, ""))[0]:
                self.compacted[attempt] = (upto, path)
        elif match := _ATTEMPT_FILE.fullmatch(name):
            self.attempts[int(match.group(1))] = path
        elif name == _STATUS_FILE:
            self.status = path
        elif name == _SUMMARY_FILE:
            self.summary = path

    def latest_attempt(self) -> int:
        return max([*self.attempts, *self.compacted, *self.appended], default=0)

    def tail(self, attempt: int) -> list[str]:
        """The append files of ``attempt`` that its newest compacted file does not cover, in order."""
        upto = self.compacted.get(attempt, (0, ""))[0]
        return [path for seq, path in sorted(self.appended.get(attempt, [])) if seq >= upto]

    def rows_paths(self) -> list[str]:
        """Every file holding a current copy of the trial's rows: per attempt, its newest compacted file
        and the appends after it."""
        paths = []
        for attempt in sorted({*self.compacted, *self.appended}):
            if attempt in self.compacted:
                paths.append(self.compacted[attempt][1])
            paths += self.tail(attempt)
        return paths


def _list_trials(fs: pafs.FileSystem, metrics: str, root: str) -> dict[str, _TrialFiles]:
    """Every trial under ``metrics`` from one recursive listing (a LIST per 1000 keys on object stores)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(metrics, recursive=True))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"no results store at {root}: {metrics} does not exist") from error
    trials: dict[str, _TrialFiles] = {}
    for info in infos:
        parts = info.path[len(metrics) + 1 :].split("/")
        if parts[0][:1] in ("_", ".") or len(parts) > 2:
            continue
        files = trials.setdefault(parts[0], _TrialFiles(parts[0], f"{metrics}/{parts[0]}"))
        if len(parts) == 2 and info.type == pafs.FileType.File:
            files.add(parts[1], info.path)
    return trials


def _list_trial(fs: pafs.FileSystem, directory: str, trial_id: str) -> _TrialFiles:
    files = _TrialFiles(trial_id, directory)
    for info in fs.get_file_info(pafs.FileSelector(directory)):
        files.add(info.base_name, info.path)
    return files


def _nulls_as_null(table: pa.Table) -> pa.Table:
    """All-null columns retyped as null, so that they unify with any type."""
    for index, column in enumerate(table.columns):
        if len(table) and column.null_count == len(table) and column.type != pa.null():
            table = table.set_column(index, table.field(index).name, pa.nulls(len(table)))
    return table


#: which columns to read: names (those a file has), or a test of a column's name
Columns = Union[Iterable[str], Callable[[str], bool], None]


def _as_test(columns: Columns) -> Callable[[str], bool] | None:
    """``columns`` as a test of a column's name; None: every column."""
    if columns is None or callable(columns):
        return columns
    return set(columns).__contains__


def _column_test(columns: Columns) -> Callable[[str], bool] | None:
    """:func:`_as_test` that also keeps the key columns."""
    wanted = _as_test(columns)
    return None if wanted is None else (lambda name: name in _KEYS or wanted(name))


def _read_rows_file(fs: pafs.FileSystem, path: str, columns: Columns = None) -> pa.Table:
    """One rows file (append or compacted), only ``columns`` (those of them it has) when given."""
    with fs.open_input_file(path) as source:
        parquet = pq.ParquetFile(source)
        wanted = _as_test(columns)
        if wanted is not None:
            columns = [name for name in parquet.schema_arrow.names if wanted(name)]
        return parquet.read(columns=columns)


def _read_json(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_stream(path, compression=None) as source:
        text = source.read().decode()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _concat(tables: list[pa.Table], where: str) -> pa.Table:
    """One table of ``tables``: as they are when they share one schema (a sweep's declared columns),
    else with all-null columns retyped as null and the types unified."""
    if all(table.schema.equals(tables[0].schema) for table in tables[1:]):
        return pa.concat_tables(tables)
    try:
        return pa.concat_tables([_nulls_as_null(table) for table in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"rows under {where} have incompatible column types: {error}") from error


def _attempts_frame(records: list[tuple[str, dict]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(trial, record["attempt"], record["resumed_from_step"]) for trial, record in records],
        columns=["trial_id", "attempt", "resumed_from_step"],
    ).astype({"trial_id": str, "attempt": "int64", "resumed_from_step": float})


def _read_trials_rows(fs: pafs.FileSystem, trials: list[_TrialFiles], columns: Columns) -> list[pa.Table]:
    """The rows files of ``trials``. A file listed but gone when read was compacted meanwhile by a running
    writer: that trial is listed and read again (its newer compacted file holds the rows)."""
    pending = {files.trial_id: files for files in trials}
    tables: list[pa.Table] = []

    def read(job: tuple[str, str]) -> tuple[str, pa.Table | None]:
        try:
            return job[0], _read_rows_file(fs, job[1], columns)
        except FileNotFoundError:
            return job[0], None

    for _ in range(_READ_RETRIES):
        jobs = [(trial_id, path) for trial_id, files in pending.items() for path in files.rows_paths()]
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            done = list(pool.map(read, jobs))
        gone = {trial_id for trial_id, table in done if table is None}
        tables += [table for trial_id, table in done if trial_id not in gone]
        if not gone:
            return tables
        pending = {trial_id: _list_trial(fs, pending[trial_id].directory, trial_id) for trial_id in gone}
    raise FileNotFoundError(f"trials {sorted(pending)}: their files kept vanishing while read "
                            f"({_READ_RETRIES} listings)")


def _current_rows(fs: pafs.FileSystem, trials: Iterable[_TrialFiles], columns: Columns,
                  where: str, extra_attempts: list[tuple[str, dict]] = ()) -> pa.Table:
    """The deduplicated rows of ``trials`` (only ``columns`` and the key columns when given), sorted by
    trial and step; ``extra_attempts``: attempt records not in the listing yet."""
    trials = list(trials)
    tables = _read_trials_rows(fs, trials, _column_test(columns))
    attempt_paths = [(files.trial_id, path) for files in trials for path in files.attempts.values()]
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        records = list(pool.map(lambda item: (item[0], _read_json(fs, item[1])), attempt_paths))
    if not tables:
        return pa.table({"trial_id": pa.array([], pa.string()), "attempt": pa.array([], pa.int64()),
                         "step": pa.array([], pa.int64())})
    table = _concat(tables, where)
    keys = table.select(_KEYS).to_pandas().astype({"trial_id": str, "attempt": "int64", "step": "int64"})
    kept = _deduplicate(keys.assign(_row=np.arange(len(keys))), _attempts_frame([*records, *extra_attempts]))
    return table.take(pa.array(kept["_row"].to_numpy()))


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


def _statuses(fs: pafs.FileSystem, trials: Iterable[_TrialFiles]) -> pd.DataFrame:
    items = [(files.trial_id, files.status) for files in trials if files.status]
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        records = list(pool.map(lambda item: (item[0], _read_json(fs, item[1])), items))
    return pd.DataFrame(
        [(trial, record["status"], record["attempt"], record["error"]) for trial, record in records],
        columns=["trial_id", "status", "status_attempt", "error"],
    ).astype({"trial_id": str})


def _rows_table(root: str, filesystem: pafs.FileSystem | None, columns: Columns) -> pa.Table:
    """:func:`read_rows` as an Arrow table."""
    fs, root_path = resolve(root, filesystem)
    trials = _list_trials(fs, f"{root_path}/metrics", root).values()
    wanted = _column_test(columns)
    table = _current_rows(fs, trials, wanted, f"{root_path}/metrics")
    if wanted is not None and not wanted("status"):
        return table
    keys = table.select([name for name in ("trial_id", "attempt", "status") if name in table.column_names])
    applied = _apply_final_status(keys.to_pandas(), _statuses(fs, trials))
    if "status" not in applied:
        return table
    status = pa.array(applied["status"].to_numpy(object), pa.string())
    if "status" in table.column_names:
        return table.set_column(table.column_names.index("status"), "status", status)
    return table.append_column("status", status)


def read_rows(root: str, filesystem: pafs.FileSystem | None = None, columns: Columns = None) -> pd.DataFrame:
    """All trials' rows, one per (trial_id, step), sorted by trial_id and step.

    ``columns``: read only these (those the store has), or those whose name passes this test, besides
    ``trial_id``, ``attempt`` and ``step``.
    Schemas are unified (nulls where a column is absent, int+float -> float); stale rows of discarded
    attempts are dropped and each trial's last row carries its final status (module docstring) when
    ``status`` is read.
    """
    rows = _rows_table(root, filesystem, columns).to_pandas()
    return rows.astype({"trial_id": str, "attempt": "int64", "step": "int64"})


def last_row(root: str, trial_id: str, filesystem: pafs.FileSystem | None = None) -> dict | None:
    """The last row (highest step) of one trial's current rows, with the trial's final status, or None
    when it has none."""
    fs, root_path = resolve(root, filesystem)
    metrics = f"{root_path}/metrics"
    files = _list_trial(fs, f"{metrics}/{trial_id}", trial_id)
    rows = _current_rows(fs, [files], None, metrics)
    if not rows.num_rows:
        return None
    row = rows.slice(rows.num_rows - 1).to_pylist()[0]  # sorted by step
    status = _read_json(fs, files.status).get("status") if files.status else None
    return {**row, "status": status or row.get("status")}


# ------------------------------------------------------------------------------------- summaries
def _better(mode: str):
    return min if mode == "min" else max


def _summarize(rows: pd.DataFrame, metric: str | None, mode: str) -> dict:
    """One trial's deduplicated rows (sorted by step) in brief: how many, the last one's step, status
    and arm, and the last and best value of ``metric`` (NaN values skipped, as before any evaluation)."""
    return _fold({"n_rows": 0, "last_step": None, "last_status": None, "arm": None, "last": None, "best": None},
                 rows.to_dict("records"), metric, mode)


def _fold(summary: dict, rows: list[dict], metric: str | None, mode: str) -> dict | None:
    """``summary`` (:func:`_summarize`) with ``rows``, later reports of the trial in step order, added;
    None when a row reports a step at or before the summary's last (its rows must then be recounted)."""
    summary = dict(summary)
    for row in rows:
        step = int(row["step"])
        if summary["last_step"] is not None and step <= summary["last_step"]:
            return None
        status, arm, value = row.get("status"), row.get("arm"), row.get(metric) if metric else None
        summary.update(n_rows=summary["n_rows"] + 1, last_step=step,
                       last_status=status if isinstance(status, str) else None,
                       arm=arm if isinstance(arm, str) else None)
        if value is not None and not math.isnan(value):
            summary["last"] = float(value)
            summary["best"] = float(value) if summary["best"] is None else _better(mode)(summary["best"], float(value))
    return summary


def _summary_columns(metric: str | None) -> list[str]:
    return ["status", "arm", *([metric] if metric else [])]


def _trial_summary(fs: pafs.FileSystem, files: _TrialFiles, metric: str | None, mode: str, where: str) -> dict:
    """:func:`trial_summaries` of one trial: from its ``_summary.json`` (rewritten after every append) and
    any append it does not cover yet (a writer between the two writes, or killed there), or, without a
    usable summary (a store from before summaries, a zombie attempt's summary, another metric), from the
    columns it needs of the trial's rows."""
    status = _read_json(fs, files.status) if files.status else {}
    base = {"trial_id": files.trial_id, "status": status.get("status"), "error": status.get("error"),
            "attempts": len(files.attempts)}
    latest = files.latest_attempt()
    summary = _read_json(fs, files.summary) if files.summary else None
    if (summary is not None and summary["attempt"] == latest
            and (metric is None or (summary["metric"] == metric and summary["mode"] == mode))):
        upto = files.compacted.get(latest, (0, ""))[0]
        tail = [path for seq, path in sorted(files.appended.get(latest, [])) if seq >= max(upto, summary["appends"])]
        rows = [] if not tail else _concat([_read_rows_file(fs, path, ["step", *_summary_columns(metric)])
                                            for path in tail], where).to_pylist()
        folded = _fold({key: summary[key] for key in _SUMMARY_KEYS}, rows, metric, mode)
        if folded is not None:
            return {**base, **folded}
    rows = _current_rows(fs, [files], _summary_columns(metric), where).to_pandas()
    return {**base, **_summarize(rows, metric, mode)}


def trial_summaries(root: str, filesystem: pafs.FileSystem | None = None, metric: str | None = None,
                    mode: str = "min") -> pd.DataFrame:
    """One row per trial, read from the trials' summaries (no rows but the appends since each trial's
    last compaction): trial_id, status (``_status.json``), attempts, last_step, error (its last line),
    n_rows, and of the last row its status (``last_status``) and ``arm``, and the ``last`` and ``best``
    (by ``mode``) value of ``metric``."""
    fs, root_path = resolve(root, filesystem)
    metrics = f"{root_path}/metrics"
    trials = _list_trials(fs, metrics, root)

    def summarize(files: _TrialFiles) -> dict:
        for _ in range(_READ_RETRIES - 1):
            try:
                return _trial_summary(fs, files, metric, mode, metrics)
            except FileNotFoundError:  # its writer compacted the appends listed: list them again
                files = _list_trial(fs, files.directory, files.trial_id)
        return _trial_summary(fs, files, metric, mode, metrics)

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        records = list(pool.map(summarize, [trials[trial_id] for trial_id in sorted(trials)]))
    columns = ["trial_id", "status", "attempts", "last_step", "error", "n_rows", "last_status", "arm",
               "last", "best"]
    frame = pd.DataFrame(records, columns=columns).astype(
        {"trial_id": str, "attempts": "Int64", "last_step": "Int64", "n_rows": "Int64", "last": float,
         "best": float})
    return frame


def trial_status(root: str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """One row per trial: trial_id, status, attempts, last_step, error (last line), n_rows."""
    return trial_summaries(root, filesystem)[["trial_id", "status", "attempts", "last_step", "error", "n_rows"]]


def mark_interrupted(root: str, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Record what a sweep's driver stopped on a signal leaves: every trial still ``running`` (or with no
    status yet) becomes ``interrupted``, at its last step, and the ids are returned. Call it once the trial
    processes have stopped writing. A trial whose last row already carries its outcome (it finished, then
    stopped before replacing its status) gets that outcome instead: a finished trial stays finished."""
    try:
        summaries = trial_summaries(root, filesystem)
    except FileNotFoundError:  # no trial has started
        return []
    interrupted = []
    for trial in summaries.to_dict("records"):
        if (trial["status"] or "running") != "running":
            continue
        step = None if pd.isna(trial["last_step"]) else int(trial["last_step"])
        outcome = trial["last_status"]
        if outcome not in STATUSES or outcome == "running":
            outcome = "interrupted"
            interrupted.append(trial["trial_id"])
        mark_status(root, trial["trial_id"], outcome, step=step, filesystem=filesystem)
    return interrupted


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

    ``out`` is a path in ``filesystem`` when one is given, else a local path or URI of its own. The rows
    stay Arrow from the store's files to this one (no pandas frame of the whole sweep).
    """
    table = _rows_table(root, filesystem, None)
    out = out or f"{root.rstrip('/')}/results.parquet"
    write_file(out, _parquet_bytes(table), filesystem)
    logger.info("collected %d rows of %d trials into %s", len(table), len(table.column("trial_id").unique()), out)
    return out
