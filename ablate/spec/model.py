"""The validated search space (:class:`SweepSpec`) and its expansion into points: grid, random
draws and Optuna suggestions; the tune block's schedulers and searchers."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Protocol, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ablate.storage import absolute
from ablate.train.config import Config, apply_overrides, build_config, with_paths


TOP_KEYS = ("name", "description", "base", "space", "variants", "seeds", "tune", "profiles")
DISCRETE = ("grid", "choice", "int")
CONTINUOUS = ("uniform", "loguniform")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "int")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A bad search-space file: one ``FILE: KEY: MESSAGE`` line per problem."""

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file, self.problems = file, problems
        self.key, self.message = problems[0]
        super().__init__("\n".join(f"{file}: {key}: {msg}" for key, msg in problems))


# ------------------------------------------------------------------------------------- tune block
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FifoScheduler(_Strict):
    """Run every trial to the end."""

    name: Literal["fifo"] = "fifo"


class AshaScheduler(_Strict):
    """Asynchronous successive halving; times count evaluations after step 0."""

    name: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(4, ge=2)


class MedianScheduler(_Strict):
    """Median stopping rule; times count evaluations after step 0."""

    name: Literal["median"] = "median"
    grace_period: int = Field(1, ge=1)
    min_samples_required: int = Field(3, ge=1)


class GridSearcher(_Strict):
    name: Literal["grid"] = "grid"


class RandomSearcher(_Strict):
    name: Literal["random"] = "random"
    num_samples: int = Field(ge=1)
    seed: int = 0


class OptunaSearcher(_Strict):
    """``storage``: an Optuna storage URL for the sweep's study (any SQLAlchemy URL, such as
    ``postgresql://user@head/optuna``); None: ``sqlite:///<sweep dir>/optuna.db``."""

    name: Literal["optuna"] = "optuna"
    num_samples: int = Field(ge=1)
    sampler: Literal["tpe", "random", "cmaes", "qmc", "gp"] = "tpe"
    seed: Optional[int] = None
    storage: Optional[str] = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Resources(_Strict):
    """Per-trial resources; fractions share a device (Ray allows fractional GPUs below 1)."""

    cpu: float = Field(1.0, ge=0.0)
    gpu: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _sane(self) -> "Resources":
        if self.cpu == 0 and self.gpu == 0:
            raise ValueError("a trial needs some cpu or gpu (both are 0)")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number, got {self.gpu}")
        return self


def _named(value: Any) -> Any:
    """``scheduler: asha`` is shorthand for ``scheduler: {name: asha}``."""
    return {"name": value} if isinstance(value, str) else value


class TuneSpec(_Strict):
    """The ``tune`` block: what to optimise, how trials are stopped and proposed, and resources."""

    metric: str
    mode: Literal["min", "max"]
    scheduler: Annotated[Union[FifoScheduler, AshaScheduler, MedianScheduler],
                         Field(discriminator="name")] = FifoScheduler()
    searcher: Annotated[Union[GridSearcher, RandomSearcher, OptunaSearcher],
                        Field(discriminator="name")] = GridSearcher()
    max_concurrent: Optional[int] = Field(None, ge=1)  # None: as many as resources allow
    max_failures: int = Field(1, ge=0)  # retries of a failed trial from its last checkpoint
    resources: Resources = Resources()
    #: experiment trackers fed through Ray Tune's logger callbacks (ablate.trackers)
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = []

    _named_scheduler = field_validator("scheduler", "searcher", mode="before")(_named)


# ------------------------------------------------------------------------------- space and points
@dataclass(frozen=True)
class Param:
    """One swept key: ``kind`` in DISTRIBUTIONS; ``values`` for grid/choice, else low/high(/step)."""

    key: str
    kind: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    when: dict[str, list] = field(default_factory=dict)

    def grid_values(self) -> list:
        """Every value the grid searcher enumerates (grid, choice, and the int range by step)."""
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step))
        if self.kind in CONTINUOUS:
            raise ValueError(f"{self.key}: a {self.kind} distribution has no finite grid")
        return list(self.values)

    def probe_values(self) -> list:
        """Values that validation builds a config with: every grid value, or both bounds."""
        return list(self.values) if self.kind in ("grid", "choice") else [self.low, self.high]


@dataclass(frozen=True)
class Point:
    """One trial: active params (dotted keys), the variant, the seed and stable identifiers."""

    params: dict[str, Any]
    variant: str | None
    seed: int
    key: str  # stable id of (variant, params), shared by the seeds of a point
    trial_name: str  # stable and filesystem-safe: [variant_]key_sSEED


def point_key(params: Mapping[str, Any], variant: str | None) -> str:
    """A short stable hash of the variant and params (independent of key order)."""
    text = json.dumps({"variant": variant, "params": dict(params)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def make_point(params: Mapping[str, Any], variant: str | None, seed: int) -> Point:
    key = point_key(params, variant)
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", variant) + "_" if variant else ""
    return Point(dict(params), variant, seed, key, f"{prefix}{key}_s{seed}")


class Suggester(Protocol):
    """The part of ``optuna.Trial`` that :meth:`SweepSpec.suggest` uses."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...


class _RandomDraws:
    """A seeded :class:`Suggester` for the ``random`` searcher (uniform over each distribution)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return choices[int(self.rng.integers(len(choices)))]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        if log:
            return float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
        return float(self.rng.uniform(low, high))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return int(low + step * self.rng.integers((high - low) // step + 1))


@dataclass
class SweepSpec:
    """A validated search-space file with its profile and --set overrides applied."""

    name: str
    description: str
    source: str
    sha256: str  # of the file's text
    base: dict[str, Any]
    space: dict[str, Param]  # in dependency order: a ``when`` key comes before its dependents
    variants: dict[str, dict[str, Any]]
    seeds: list[int]
    tune: TuneSpec
    profiles: dict[str, dict[str, Any]]
    profile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # the --set items
    #: what relative paths in trainer configs (``data.root``...) are relative to: the working directory
    #: of the command that started the sweep (trials run in working directories of Ray's choosing)
    workdir: str = field(default_factory=os.getcwd)
    _variant_flat: dict[str | None, dict[str, Any]] = field(default_factory=dict, repr=False)

    # ---- conditionals
    def _context_value(self, key: str, params: Mapping[str, Any], variant: str | None) -> Any:
        if key in self.space:
            return params.get(key, _INACTIVE)
        return self._variant_flat[variant].get(key, _INACTIVE)

    def active(self, key: str, params: Mapping[str, Any], variant: str | None = None) -> bool:
        """Whether ``key`` is swept at this (partial) point: every ``when`` condition holds."""
        return all(self._context_value(k, params, variant) in allowed
                   for k, allowed in self.space[key].when.items())

    def swept_keys(self) -> list[str]:
        """The config keys whose value may differ between arms: the space's and those variants set."""
        return sorted({*self.space, *(key for overrides in self.variants.values() for key in overrides)})

    def _variant_names(self) -> list[str | None]:
        return list(self.variants) or [None]

    # ---- expansion
    def _expand(self, values_of: Callable[[Param], list], variant: str | None) -> list[dict]:
        """Cross product of ``values_of(param)`` over the params active at each partial point."""
        points: list[dict] = [{}]
        for key, param in self.space.items():
            grown = []
            for partial in points:
                if self.active(key, partial, variant):
                    grown.extend({**partial, key: v} for v in values_of(param))
                else:
                    grown.append(partial)
            points = grown
        return points

    def grid_points(self) -> list[Point]:
        """Grid searcher: space cross product (conditionals where active) x variants x seeds."""
        combos = [(p, v) for v in self._variant_names() for p in self._expand(Param.grid_values, v)]
        return [make_point(p, v, s) for s in self.seeds for p, v in combos]

    def random_points(self) -> list[Point]:
        """Random searcher: ``num_samples`` seeded draws, each x variants x seeds (paired).

        Each sample draws every key once; each variant keeps the keys active for it, so the arms
        of a sample share their values."""
        draws = _RandomDraws(np.random.default_rng(self.tune.searcher.seed))
        combos = []
        for _ in range(self.tune.searcher.num_samples):
            sample = {key: _draw(draws, param) for key, param in self.space.items()}
            for v in self._variant_names():
                params: dict[str, Any] = {}
                for key in self.space:
                    if self.active(key, params, v):
                        params[key] = sample[key]
                combos.append((params, v))
        return [make_point(p, v, s) for s in self.seeds for p, v in combos]

    def points(self) -> list[Point]:
        """The fixed design of a ``grid`` or ``random`` searcher (``optuna`` is adaptive)."""
        if self.tune.searcher.name == "grid":
            return self.grid_points()
        if self.tune.searcher.name == "random":
            return self.random_points()
        raise ValueError("the optuna searcher proposes points one at a time: use suggest()")

    def probe_points(self) -> list[tuple[dict[str, Any], str | None]]:
        """(params, variant) of every point validation builds: each point of the grid, or, for the
        random and optuna searchers, every categorical value and both bounds of each range. Every
        choice (and so every set of config keys) a trial of the sweep can have is among them."""
        values_of = Param.grid_values if self.tune.searcher.name == "grid" else Param.probe_values
        return [(params, variant) for variant in self._variant_names()
                for params in self._expand(values_of, variant)]

    def suggest(self, trial: Suggester, variant: str | None = None) -> dict[str, Any]:
        """Define-by-run draw (an ``optuna.Trial`` or a seeded sampler); inactive keys are skipped."""
        params: dict[str, Any] = {}
        for key, param in self.space.items():
            if self.active(key, params, variant):
                params[key] = _draw(trial, param)
        return params

    def config_for(self, params: Mapping[str, Any], variant: str | None, seed: int) -> Config:
        """The trial's config: base + variant + params, with ``train.seed = seed``."""
        raw = apply_overrides(self.base, self.variants[variant] if variant else {})
        cfg = build_config(raw, {**params, "train.seed": seed}, source=self.source)
        return with_paths(cfg, lambda location: absolute(location, self.workdir))

    def cautions(self) -> list[str]:
        """``key: message`` of every caution (:func:`ablate.train.checks.cautions`) a point of the
        sweep earns (the probe points: every grid point, or every choice and bound), once each."""
        from ablate.train.checks import cautions

        found: dict[str, None] = {}
        for params, variant in self.probe_points():
            for caution in cautions(self.config_for(params, variant, self.seeds[0])):
                found.setdefault(str(caution))
        return list(found)

    def describe(self) -> str:
        """One line for ``ablate validate``: what would run."""
        searcher = self.tune.searcher
        if searcher.name == "optuna":
            size = f"up to {searcher.num_samples} optuna ({searcher.sampler}) trials"
        else:
            size = f"{len(self.points())} trials ({searcher.name}: " \
                   f"{len(self.variants) or 1} variant(s) x {len(self.seeds)} seed(s))"
        profile = f", profile {self.profile}" if self.profile else ""
        return f"{self.name}: {size}, scheduler {self.tune.scheduler.name}, " \
               f"{self.tune.mode} {self.tune.metric}{profile}"


_INACTIVE = object()


def _draw(trial: Suggester, param: Param) -> Any:
    """One value of ``param`` from an ``optuna.Trial`` or a seeded sampler."""
    if param.kind in ("grid", "choice"):
        return _suggest_categorical(trial, param.key, list(param.values))
    if param.kind == "int":
        return trial.suggest_int(param.key, param.low, param.high, step=param.step)
    return trial.suggest_float(param.key, param.low, param.high, log=param.kind == "loguniform")


def _suggest_categorical(trial: Suggester, key: str, values: list) -> Any:
    """Optuna's categorical choices must be scalars: lists (``train.ema``) travel as JSON text."""
    if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
        return trial.suggest_categorical(key, values)
    return json.loads(trial.suggest_categorical(key, [json.dumps(v) for v in values]))
