"""Papers' claims tested by sweeps: the claims file, paired comparisons over seeds, and verdicts.

A claims file (``benchmarks/repro_claims.yaml``) lists per claim the paper's statement, the sweep
that tests it and its *comparisons*: an arm against a baseline arm on one metric, with the direction
the paper claims for arm minus baseline. Each comparison is read from a sweep's results DataFrame:

- the value of each trial: its last value (``read: final``) or the mean of its reports with
  a T <= step <= b T (``read: [a, b]``; T the trial's last step, step 0 left out), optionally as
  log10 (``log: true``: the paired difference is then a log-ratio);
- the paired differences arm - baseline over the seeds both arms finished, their mean and 95%
  percentile-bootstrap interval (:func:`ablate.figures.plots.paired_differences`);
- the verdict (:data:`VERDICT_RULE`).

Errored and diverged trials are left out (:func:`ablate.figures.frame.final_values`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ablate.figures.frame import (FAILED_STATUSES, bootstrap_mean_ci, final_values, numeric,
                                  trial_outcomes)
from ablate.figures.plots import paired_differences

REPRODUCES, FAILS, INCONCLUSIVE = "reproduces", "does not reproduce", "inconclusive at this budget"
REFERENCE, PENDING = "reference (no claim)", "pending the runs"
Z_95 = 1.959964  # two-sided 95% normal quantile, for the seeds-needed estimate
VERDICT_RULE = (
    "Each comparison is decided by the 95% percentile-bootstrap interval of the mean paired "
    "difference (arm minus baseline, seed by seed): an interval wholly on the claimed side of 0 "
    "*reproduces*, wholly on the other side *does not reproduce*, an interval containing 0 is "
    "*inconclusive at this budget*. A claim reproduces when all its claimed comparisons do, does "
    "not reproduce when any of them does not, and is inconclusive otherwise. With 3 seeds the "
    "bootstrap interval is about the range of the 3 differences: a verdict then needs every seed "
    "to agree on the direction. For an inconclusive comparison the report gives the seeds that "
    "would decide it at the observed effect and spread (normal approximation: 1.96 sd / sqrt(n) "
    "below the mean difference).")


class ClaimsError(ValueError):
    """A bad claims file: ``FILE: KEY: MESSAGE``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Strict):
    metric: str
    arm: str
    baseline: str
    claim: Literal["lower", "higher", "none"]
    read: Union[Literal["final"], tuple[float, float]] = "final"
    log: bool = False
    file: Optional[str] = None

    @model_validator(mode="after")
    def _window(self) -> "Comparison":
        if self.read != "final" and not 0.0 <= self.read[0] <= self.read[1] <= 1.0:
            raise ValueError(f"read: a window [a, b] needs 0 <= a <= b <= 1, got {list(self.read)}")
        if self.arm == self.baseline:
            raise ValueError(f"arm and baseline are the same arm ({self.arm!r})")
        return self

    @property
    def name(self) -> str:
        """The compared quantity in words, e.g. ``log10 grad_var, mean over 50-100% of training``."""
        where = "" if self.read == "final" else (
            f", at {self.read[0]:.0%} of training" if self.read[0] == self.read[1] else
            f", mean over {self.read[0]:.0%}-{self.read[1]:.0%} of training")
        return f"{'log10 ' if self.log else ''}{self.metric}{where}"


class Claim(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    paper: str
    where: str
    statement: str
    paper_numbers: str
    file: str
    setting: str
    findings: str = ""
    comparisons: list[Comparison] = Field(min_length=1)

    def files(self) -> list[str]:
        """The sweeps this claim reads, its own first."""
        return list(dict.fromkeys([self.file, *(c.file for c in self.comparisons if c.file)]))


class FileInfo(_Strict):
    expected_min: Optional[float] = Field(None, gt=0)
    labels: dict[str, str] = {}


class ClaimsFile(_Strict):
    files: dict[str, FileInfo]
    claims: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> "ClaimsFile":
        ids = [c.id for c in self.claims]
        if len(ids) != len(set(ids)):
            raise ValueError(f"claim ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        for claim in self.claims:
            unknown = [f for f in claim.files() if f not in self.files]
            if unknown:
                raise ValueError(f"claim {claim.id}: file(s) {unknown} are not under files "
                                 f"({', '.join(self.files)})")
        return self

    def label(self, file: str, arm: str) -> str:
        """The readable name of an arm of a file's sweep (the arm label itself when none is given)."""
        return self.files[file].labels.get(arm, arm)


def load_claims(path: str | Path) -> ClaimsFile:
    """Read and validate a claims file; raise :class:`ClaimsError` naming the file and key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return ClaimsFile.model_validate(raw)
    except FileNotFoundError:
        raise ClaimsError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ClaimsError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                             for e in err.errors())
        raise ClaimsError(f"{path}: {problems}") from None


# --------------------------------------------------------------------------------------- reading
def trial_values(df: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """One row per completed trial of the comparison's two arms: ``trial_id, arm, seed, status,
    step, value`` with the value read as the comparison says (module docstring). Running trials
    are left out (a verdict rests on finished trials only), and so are failed ones."""
    if comparison.metric not in df.columns:
        return pd.DataFrame(columns=["trial_id", "arm", "seed", "status", "step", "value"])
    rows = df[df["arm"].isin([comparison.arm, comparison.baseline])]
    if comparison.read == "final":
        values = final_values(rows, comparison.metric)
    else:
        values = _window_means(rows, comparison.metric, *comparison.read)
    if comparison.log:
        values = values.assign(value=np.log10(values["value"].where(values["value"] > 0)))
    values = values[values["status"] == "completed"]
    return values.dropna(subset=["value"]).reset_index(drop=True)


def _window_means(df: pd.DataFrame, metric: str, start: float, end: float) -> pd.DataFrame:
    """Per trial the mean of ``metric`` over its reports with start T <= step <= end T (step 0 left
    out); a window holding no report (narrower than the report spacing) takes the first report at
    or after start T."""
    last_step = df.groupby("trial_id")["step"].transform("max")  # int even over no rows
    rows = df.assign(value=numeric(df[metric]), low=start * last_step, high=end * last_step)
    rows = rows[(rows["step"] > 0) & rows["value"].notna()]
    after = rows[rows["step"] >= rows["low"]]
    inside = after[after["step"] <= after["high"]]
    first = after.sort_values("step").groupby("trial_id").head(1)
    chosen = pd.concat([inside, first[~first["trial_id"].isin(inside["trial_id"])]])
    means = chosen.groupby("trial_id").agg(step=("step", "max"), value=("value", "mean"))
    outcomes = trial_outcomes(df)
    out = means.join(outcomes[["arm", "seed", "status"]], how="inner").reset_index()
    return out[["trial_id", "arm", "seed", "status", "step", "value"]]


# ------------------------------------------------------------------------------------ deciding
@dataclass
class ComparisonResult:
    """A comparison's numbers: per-arm means over seeds, the paired differences and the verdict."""

    comparison: Comparison
    arm: tuple[float, float, float, int]  # mean, low, high, seeds
    baseline: tuple[float, float, float, int]
    difference: tuple[float, float, float, int]  # mean, low, high, pairs
    per_seed: dict[int, float] = field(default_factory=dict)  # seed -> arm minus baseline
    verdict: str = PENDING
    seeds_needed: Optional[int] = None
    notes: list[str] = field(default_factory=list)  # per arm: failed trials left out, missing values


def verdict(claim: str, low: float, high: float) -> str:
    """The rule of :data:`VERDICT_RULE` for one interval of arm minus baseline."""
    if claim == "none":
        return REFERENCE
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if (high < 0) if claim == "lower" else (low > 0):
        return REPRODUCES
    if (low > 0) if claim == "lower" else (high < 0):
        return FAILS
    return INCONCLUSIVE


def seeds_needed(differences: list[float]) -> Optional[int]:
    """Paired seeds at which 1.96 sd / sqrt(n) falls below |mean difference| (normal approximation,
    at least one more than now); None with fewer than two differences or no effect at all."""
    values = np.asarray(differences, dtype=float)
    if values.size < 2 or values.mean() == 0:
        return None
    spread = values.std(ddof=1)
    return max(values.size + 1, math.ceil((Z_95 * spread / abs(values.mean())) ** 2))


def compare(df: Optional[pd.DataFrame], comparison: Comparison) -> ComparisonResult:
    """Read, pair and decide one comparison. No sweep, or an arm without values whose trials are
    running or not started: *pending*; an arm whose trials all ended without values (failed, or no
    such metric): *inconclusive*, with a note."""
    empty = (math.nan, math.nan, math.nan, 0)
    result = ComparisonResult(comparison, empty, empty, empty)
    if df is None:
        return result
    values = trial_values(df, comparison)
    outcomes = trial_outcomes(df)
    for role, arm in (("arm", comparison.arm), ("baseline", comparison.baseline)):
        seeds = values.loc[values["arm"] == arm, "value"]
        setattr(result, role, (*bootstrap_mean_ci(seeds), len(seeds)))
        statuses = outcomes.loc[outcomes["arm"] == arm, "status"]
        failed = statuses[statuses.isin(FAILED_STATUSES)].value_counts()
        if len(failed):
            result.notes.append(f"{arm}: " + ", ".join(f"{n} {s}" for s, n in failed.items()))
        if seeds.empty and (statuses == "completed").any():
            result.notes.append(f"{arm}: no {comparison.metric} values")
        if seeds.empty and len(statuses) and not (statuses == "running").any():
            result.verdict = INCONCLUSIVE if comparison.claim != "none" else REFERENCE
    if result.arm[3] == 0 or result.baseline[3] == 0:
        return result
    table = paired_differences(values.rename(columns={"value": comparison.name}), comparison.name,
                               comparison.baseline)
    row = table[table["arm"] == comparison.arm].iloc[0]
    result.difference = (row["mean"], row["low"], row["high"], int(row["pairs"]))
    by_seed = values.pivot_table(index="seed", columns="arm", values="value", aggfunc="mean")
    result.per_seed = (by_seed[comparison.arm] - by_seed[comparison.baseline]).dropna().to_dict()
    result.verdict = verdict(comparison.claim, row["low"], row["high"])
    if result.verdict == INCONCLUSIVE:
        result.seeds_needed = seeds_needed(list(result.per_seed.values()))
    return result


def claim_verdict(results: list[ComparisonResult]) -> str:
    """All claimed comparisons reproduce: reproduces; any does not: does not reproduce; a pending
    one: pending; else inconclusive (:data:`VERDICT_RULE`)."""
    verdicts = [r.verdict for r in results if r.comparison.claim != "none"]
    if not verdicts or PENDING in verdicts:
        return PENDING
    if FAILS in verdicts:
        return FAILS
    return REPRODUCES if all(v == REPRODUCES for v in verdicts) else INCONCLUSIVE
