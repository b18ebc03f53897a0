"""The search-space file (design.md section 4): parse, validate, apply a profile and --set, expand.

A file names a ``base`` trainer config, a ``space`` of dotted keys with distributions, named
``variants`` (arms: sets of overrides, crossed with the space), ``seeds`` (replicates) and a ``tune``
block. Everything is validated before any trial starts, and every error names the file, the key path
and what is allowed. Every point the sweep can produce (every grid and choice value, both ends of each
numeric range, every variant, under every profile and without one) is built and checked against the
trainer's start-up rules (:mod:`ablate.train.checks`, which every trial applies too) and against the
metrics its trials report, so a file that validates does not fail at start-up. This module never
imports ray: it yields neutral descriptions (:class:`Point`, :class:`TuneSpec`,
:meth:`SweepSpec.suggest`) that ``ablate.sweep`` turns into Ray Tune objects.

Distributions: ``{grid: [..]}``, ``{choice: [..]}``, ``{uniform: [low, high]}``,
``{loguniform: [low, high]}``, ``{int: [low, high], step: s}``; any may carry
``when: {other.key: value or [values]}`` (active only where every listed key takes a listed value).

Searchers and replicates:

- ``grid``: the cross product of every ``grid``, ``choice`` and ``int`` parameter (conditional ones
  only where active) x variants x seeds. Continuous distributions are an error.
- ``random``: ``num_samples`` points drawn with ``searcher.seed`` (so a resumed sweep draws the same
  points; ``grid`` and ``choice`` are sampled like categorical choices), each run for every variant
  and every seed: arms and replicates stay paired on identical hyperparameters.
- ``optuna``: adaptive, one trial per proposed point (:meth:`SweepSpec.suggest`). Replicates and arms
  need a fixed design, so ``optuna`` takes a single seed and no variants: tune first, then compare
  arms with a ``grid`` sweep over the values found.

Overrides (``profiles.NAME`` and ``--set``, the latter applied after the profile) are dotted keys:
``seeds`` replaces the seeds, ``tune.KEY`` replaces that entry of the tune block, any other key
overrides ``base`` (through :func:`ablate.train.config.apply_overrides`). A swept key's value comes
from the space; precedence per trial is base < profile < --set < variant < space < seed.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Protocol, Union, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablate.storage import absolute
from ablate.train.config import Config, ConfigError, apply_overrides, build_config, flatten, with_paths

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


# ------------------------------------------------------------------------------------ loading
class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 needs ``1.0e-3``; YAML 1.2 does not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_set_args(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[1, 2]"]`` -> ``{"a.b": 3, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _is_dotted(key):
            raise SpecError("--set", [(item, "expected KEY=VALUE with a dotted key, e.g. "
                                             "train.lr=3e-4 or tune.resources={gpu: 0, cpu: 1}")])
        try:
            out[key] = _yaml(text) if text.strip() else ""
        except yaml.YAMLError as err:
            problem = f"value is not valid YAML: {_one_line(err)}"
            raise SpecError("--set", [(key, problem)]) from None
    return out


def load_spec(path: str | Path, profile: str | None = None,
              overrides: Mapping[str, Any] | None = None, workdir: str | None = None) -> SweepSpec:
    """Read, validate and expand-check a search-space file; raise :class:`SpecError` if anything is
    wrong (every grid point or distribution bound, every variant and the tune block are checked).
    Relative paths in trainer configs resolve against ``workdir`` (default: the working directory)."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise SpecError(file, [("<file>", "file not found")]) from None
    try:
        raw = _yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        raise SpecError(file, [(where, f"invalid YAML: {getattr(err, 'problem', None) or err}")]) \
            from None
    spec = _Builder(file, text).build(raw, profile, dict(overrides or {}))
    spec.workdir = os.path.abspath(workdir or os.getcwd())
    return spec


def _is_dotted(key: Any) -> bool:
    return isinstance(key, str) and all(part.isidentifier() for part in key.split("."))


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _did_you_mean(word: Any, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _section_choices(section: str) -> dict[str | None, type[BaseModel]]:
    """The model class of each choice of a Config section (``{None: cls}`` for a plain section)."""
    annotation = Config.model_fields[section].annotation
    members = [m for m in get_args(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if not members:
        return {None: annotation}
    return {m.model_fields["name"].default: m for m in members}


def _unknown_key_message(path: str, merged: Mapping[str, Any]) -> str:
    """Explain an unknown trainer-config key: which section/choice, and the keys it does have."""
    section, _, rest = path.partition(".")
    if section not in Config.model_fields:
        return f"not a trainer config section; sections: {', '.join(Config.model_fields)}"
    choices = _section_choices(section)
    if None in choices:
        return f"{section} has no key {rest!r}; its keys: {', '.join(choices[None].model_fields)}"
    raw_section = merged.get(section)
    choice = raw_section.get("name") if isinstance(raw_section, Mapping) else None
    choice = choice or Config.model_fields[section].default.name
    keys = ", ".join(choices[choice].model_fields) if choice in choices else "?"
    return f"{section} {choice!r} has no parameter {rest!r}; its keys: {keys}"


def _pydantic_problems(err: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """``(key.path, message)`` per error of a tune-block validation (union tags dropped)."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if len(loc) >= 2 and loc[0] in ("scheduler", "searcher"):
            loc = [loc[0]] + loc[2:]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown choice {e['ctx']['tag']!r}; valid: {e['ctx']['expected_tags']}"
            loc.append("name")
        out.append((".".join([prefix] + loc), msg))
    return out


def _split_problem(line: str) -> tuple[str, str]:
    path, _, msg = line.partition(": ")
    return path, msg.removeprefix("Value error, ")


Origin = tuple[str, str]  # (label for errors, dotted key) of an override, in application order


class _Builder:
    """Validates one file; collects every problem of a stage before raising."""

    def __init__(self, file: str, text: str):
        self.file, self.text = file, text
        self.problems: list[tuple[str, str]] = []
        self.reported: set[tuple[str, str]] = set()

    def add(self, key: str, msg: str) -> None:
        if (key, msg) not in self.problems:
            self.problems.append((key, msg))

    def check(self) -> None:
        if self.problems:
            raise SpecError(self.file, self.problems)

    # ---- top level
    def build(self, raw: Any, profile: str | None, set_items: dict[str, Any]) -> SweepSpec:
        if not isinstance(raw, Mapping):
            got = "an empty file" if raw is None else type(raw).__name__
            raise SpecError(self.file, [("<root>", f"expected a mapping with keys "
                                                   f"{', '.join(TOP_KEYS)}; got {got}")])
        for key in raw:
            if key not in TOP_KEYS:
                self.add(str(key), f"unknown key{_did_you_mean(key, TOP_KEYS)}; "
                                   f"allowed: {', '.join(TOP_KEYS)}")
        for key in ("base", "tune"):
            if key not in raw:
                self.add(key, "required")
            elif not isinstance(raw[key], Mapping):
                self.add(key, f"expected a mapping, got {type(raw[key]).__name__}")
        name = raw.get("name", Path(self.file).stem)
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            self.add("name", f"expected a name of letters, digits, '_', '.', '-', got {name!r}")
        description = raw.get("description") or ""
        if not isinstance(description, str):
            self.add("description", f"expected text, got {type(description).__name__}")
        profiles = self._mappings(raw.get("profiles"), "profiles")
        variants = self._mappings(raw.get("variants"), "variants")
        self.check()
        if profile is not None and profile not in profiles:
            valid = ", ".join(profiles) or "none (the file has no profiles)"
            raise SpecError(self.file, [("--profile", f"unknown profile {profile!r}; valid: {valid}")])

        for other in [None, *profiles]:  # every profile must run, chosen or not (and the file without)
            if other != profile:
                try:
                    _Builder(self.file, self.text)._sweep(raw, name, description, profiles, variants,
                                                          other, {})
                except SpecError as err:
                    for key, msg in err.problems:
                        self.add(key, msg)
        self.check()
        return self._sweep(raw, name, description, profiles, variants, profile, set_items)

    def _sweep(self, raw: Mapping[str, Any], name: str, description: str,
               profiles: dict[str, dict[str, Any]], variants: dict[str, dict[str, Any]],
               profile: str | None, set_items: dict[str, Any]) -> SweepSpec:
        """The spec under one profile (None: none) and --set, checked down to every point."""
        sources = [(f"profiles.{profile}", profiles[profile])] if profile is not None else []
        sources.append(("--set", set_items))
        base, base_cfg, tune, seeds = self._apply(raw, sources)
        self.check()

        space = self._space(raw.get("space"))
        self.check()
        spec = SweepSpec(name=name, description=description, source=self.file,
                         sha256=hashlib.sha256(self.text.encode()).hexdigest(), base=base,
                         space=space, variants=variants, seeds=seeds, tune=tune,
                         profiles=profiles, profile=profile, overrides=set_items)
        spec._variant_flat[None] = flatten(base_cfg)
        self._variants(spec)
        self.check()
        spec.space = self._order(spec)
        self._searcher_fits(spec)
        self.check()
        self._probe(spec)
        self.check()
        return spec

    def _mappings(self, value: Any, where: str) -> dict[str, dict[str, Any]]:
        """``profiles`` / ``variants``: named mappings of dotted keys (a null entry is empty)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(where, f"expected a mapping of names to overrides, got {type(value).__name__}")
            return {}
        out = {}
        for name, overrides in value.items():
            overrides = {} if overrides is None else overrides
            if not isinstance(name, str) or not SAFE_NAME.match(name):
                self.add(f"{where}.{name}", "names use letters, digits, '_', '.', '-'")
            elif not isinstance(overrides, Mapping):
                self.add(f"{where}.{name}", "expected a mapping of dotted keys to values, "
                                            f"got {type(overrides).__name__}")
            else:
                for key in overrides:
                    if not _is_dotted(key):
                        self.add(f"{where}.{name}.{key}", "expected a dotted key such as data.name")
                out[name] = dict(overrides)
        return out

    # ---- overrides: profile then --set
    def _apply(self, raw: Mapping[str, Any], sources: list[tuple[str, Mapping[str, Any]]]
               ) -> tuple[dict, Config | None, TuneSpec | None, list[int]]:
        """Route each override to base / tune / seeds, then validate base, tune and seeds."""
        base_overrides, tune_overrides, origins = {}, {}, []
        seeds_raw, seeds_label = raw.get("seeds"), "seeds"
        for label, overrides in sources:
            for key, value in overrides.items():
                where = f"{label} {key}" if label == "--set" else f"{label}.{key}"
                head = key.split(".")[0]
                if key == "seeds":
                    seeds_raw, seeds_label = value, where
                elif head == "tune" and key != "tune":
                    tune_overrides[key[len("tune."):]] = value
                elif head in TOP_KEYS:
                    self.add(where, "cannot be overridden; a profile or --set overrides trainer "
                                    "keys (data.name), tune.KEY or seeds")
                else:
                    base_overrides[key] = value
                origins.append((where, key))
        base = apply_overrides(raw["base"], {})
        base_cfg = self._build(base, base_overrides, origins, "base")
        base = apply_overrides(base, base_overrides)
        tune = self._tune(raw["tune"], tune_overrides, origins)
        seeds = self._seeds(seeds_raw, seeds_label, base_cfg)
        return base, base_cfg, tune, seeds

    def _attribute(self, path: str, origins: list[Origin], default: str) -> str:
        """The label of the last override that set ``path`` (or a parent/child of it)."""
        for label, key in reversed(origins):
            if key == path or key.startswith(path + "."):
                return label
            if path.startswith(key + "."):
                return label + path[len(key):]
        return f"{default}.{path}" if default else path

    def _build(self, raw: Mapping[str, Any], overrides: Mapping[str, Any], origins: list[Origin],
               default: str, context: str = "") -> Config | None:
        """build_config, with each problem attributed to the key that caused it."""
        try:
            merged = apply_overrides(raw, overrides)
            return build_config(merged, source=self.file)
        except ConfigError as err:
            for line in err.problems:
                path, msg = _split_problem(line)
                if msg == "unknown key":
                    msg = _unknown_key_message(path, merged)
                where = self._attribute(path, origins, default)
                if (where, msg) not in self.reported:  # once per key and cause, at its first point
                    self.reported.add((where, msg))
                    self.add(where, msg + context)
            return None

    def _tune(self, raw: Mapping[str, Any], overrides: Mapping[str, Any],
              origins: list[Origin]) -> TuneSpec | None:
        raw = {k: _named(v) if k in ("scheduler", "searcher") else v for k, v in raw.items()}
        try:
            merged = apply_overrides(raw, overrides)
            tune = TuneSpec.model_validate(merged)
        except ConfigError as err:
            for line in err.problems:
                path, msg = _split_problem(line)
                self.add(self._attribute(f"tune.{path}", origins, ""), msg)
            return None
        except ValidationError as err:
            for path, msg in _pydantic_problems(err, "tune"):
                self.add(self._attribute(path, origins, ""), msg)
            return None
        return tune  # its metric is checked against what the trials report, at every point

    def _seeds(self, value: Any, where: str, base_cfg: Config | None) -> list[int]:
        if value is None:
            return [base_cfg.train.seed] if base_cfg else []
        seeds = [value] if _is_number(value) else value
        if not isinstance(seeds, list) or not seeds or \
                not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            self.add(where, f"expected an integer or a non-empty list of integers, got {value!r}")
            return []
        if len(set(seeds)) != len(seeds):
            self.add(where, f"seeds repeat: {seeds}")
        return seeds

    # ---- space
    def _space(self, raw: Any) -> dict[str, Param]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.add("space", f"expected a mapping of dotted keys to distributions, "
                              f"got {type(raw).__name__}")
            return {}
        space = {}
        for key, body in raw.items():
            where = f"space.{key}"
            if not _is_dotted(key):
                self.add(where, "expected a dotted trainer-config key such as coupling.beta")
            elif key == "train.seed":
                self.add(where, "replicates are listed in `seeds`, not swept")
            elif not isinstance(body, Mapping):
                self.add(where, f"expected a mapping such as {{grid: [1, 2]}}; "
                                f"distributions: {', '.join(DISTRIBUTIONS)}")
            else:
                param = self._param(key, body)
                if param:
                    space[key] = param
        return space

    def _param(self, key: str, body: Mapping[str, Any]) -> Param | None:
        where = f"space.{key}"
        unknown = [k for k in body if k not in DISTRIBUTIONS + ("when", "step")]
        for extra in unknown:
            hint = _did_you_mean(extra, DISTRIBUTIONS)
            self.add(f"{where}.{extra}", f"unknown distribution{hint}; allowed: "
                                         f"{', '.join(DISTRIBUTIONS)}, when, step (int)")
        kinds = [k for k in body if k in DISTRIBUTIONS]
        if len(kinds) != 1:
            if not unknown:
                self.add(where, f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}; "
                                f"got {kinds or 'none'}")
            return None
        kind, value = kinds[0], body[kinds[0]]
        when = self._when(key, body.get("when"))
        if "step" in body and kind != "int":
            self.add(f"{where}.step", "step goes with an int distribution only")
        if kind in ("grid", "choice"):
            if not isinstance(value, list) or not value:
                self.add(f"{where}.{kind}", f"expected a non-empty list of values, got {value!r}")
                return None
            texts = [json.dumps(v, sort_keys=True, default=str) for v in value]
            if len(set(texts)) != len(texts):
                self.add(f"{where}.{kind}", f"values repeat: {value}")
            return Param(key, kind, values=tuple(value), when=when)
        number = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" \
            else _is_number
        if not isinstance(value, list) or len(value) != 2 or not all(number(v) for v in value):
            what = "integers" if kind == "int" else "numbers"
            self.add(f"{where}.{kind}", f"expected [low, high] of two {what}, got {value!r}")
            return None
        low, high = value
        if low >= high:
            self.add(f"{where}.{kind}", f"low ({low}) must be below high ({high})")
        if kind == "loguniform" and low <= 0:
            self.add(f"{where}.{kind}", f"loguniform needs low > 0, got {low}")
        step = body.get("step", 1) if kind == "int" else None
        if kind == "int":
            if not isinstance(step, int) or isinstance(step, bool) or step < 1:
                self.add(f"{where}.step", f"expected an integer >= 1, got {step!r}")
                return None
            if (high - low) % step:
                self.add(f"{where}.step", f"high - low ({high - low}) must be a multiple of step "
                                          f"({step})")
        return Param(key, kind, low=low, high=high, step=step, when=when)

    def _when(self, key: str, raw: Any) -> dict[str, list]:
        where = f"space.{key}.when"
        if raw is None:
            return {}
        if not isinstance(raw, Mapping) or not raw:
            self.add(where, "expected a mapping such as {coupling.name: vc} or "
                            "{coupling.name: [vc, gc]}")
            return {}
        when = {}
        for other, allowed in raw.items():
            if not _is_dotted(other) or other == key:
                self.add(f"{where}.{other}", "expected the dotted key of another parameter")
            when[other] = list(allowed) if isinstance(allowed, list) else [allowed]
        return when

    # ---- variants, conditions, searcher
    def _variants(self, spec: SweepSpec) -> None:
        origins = _override_origins(spec)
        for name, overrides in spec.variants.items():
            for key in overrides:
                if key in spec.space:
                    self.add(f"variants.{name}.{key}", "also swept in space (the space value "
                                                       "would always win); remove one")
            labels = origins + [(f"variants.{name}.{k}", k) for k in overrides]
            cfg = self._build(spec.base, overrides, labels, "base")
            if cfg is not None:
                spec._variant_flat[name] = flatten(cfg)

    def _order(self, spec: SweepSpec) -> dict[str, Param]:
        """Space keys in dependency order (a `when` key before its dependents); checks `when`."""
        known = set().union(*(flat for flat in spec._variant_flat.values()))
        for key, param in spec.space.items():
            for other in param.when:
                if other in spec.space:
                    if spec.space[other].kind in CONTINUOUS:
                        self.add(f"space.{key}.when.{other}", f"{other} is {spec.space[other].kind}"
                                 "; a condition can test only a grid, choice or int parameter")
                elif other not in known:
                    self.add(f"space.{key}.when.{other}", "not a key of the space or of the base "
                             "config (nor of any variant)")
        ordered: dict[str, Param] = {}
        pending = dict(spec.space)
        while pending:
            ready = [k for k, p in pending.items()
                     if all(o in ordered or o not in spec.space for o in p.when)]
            if not ready:
                for key in pending:
                    self.add(f"space.{key}.when", f"conditions form a cycle among {list(pending)}")
                return spec.space
            for key in ready:
                ordered[key] = pending.pop(key)
        return ordered

    def _searcher_fits(self, spec: SweepSpec) -> None:
        searcher = spec.tune.searcher
        if searcher.name == "grid":
            for key, param in spec.space.items():
                if param.kind in CONTINUOUS:
                    self.add(f"space.{key}.{param.kind}", "the grid searcher cannot enumerate a "
                             "continuous distribution; use tune.searcher random or optuna, or "
                             "list grid values")
        if searcher.name == "optuna":
            if len(spec.seeds) > 1:
                self.add("seeds", "the optuna searcher is adaptive and runs one trial per point: "
                         "give one seed (replicate the best points with a grid sweep)")
            if spec.variants:
                self.add("variants", "the optuna searcher is adaptive and runs one trial per "
                         "point: compare variants with the grid or random searcher")

    # ---- every point (or distribution bound) x variant builds a config that can start
    def _probe(self, spec: SweepSpec) -> None:
        """Build every point (grid values, or both bounds of a range) of every variant and apply the
        trainer's start-up rules (:func:`ablate.train.checks.problems`) with the tune metric to it."""
        from ablate.data import describe_dataset
        from ablate.train.checks import problems
        from ablate.train.registry import UnknownChoiceError

        seen: set[str] = set()
        for params, variant in spec.probe_points():
            origins = _override_origins(spec) + \
                [(f"variants.{variant}.{k}", k) for k in spec.variants.get(variant, {})]
            raw = apply_overrides(spec.base, spec.variants[variant] if variant else {})
            seen.update(params)
            context = ", ".join([f"profile {spec.profile}"] * bool(spec.profile) +
                                [f"variant {variant}"] * bool(variant) +
                                [f"{k}={v!r}" for k, v in params.items()])
            context = f" (at {context})" if context else ""
            labels = origins + [(f"space.{k}", k) for k in params]
            cfg = self._build(raw, params, labels, "base", context)
            if cfg is None:
                continue
            flat = flatten(cfg)
            for key, value in params.items():
                if spec.space[key].kind in CONTINUOUS and isinstance(flat[key], int):
                    self.add(f"space.{key}", f"{spec.space[key].kind} draws floats but {key} "
                                             "is an integer; use an int distribution")
            try:
                dataset = describe_dataset(cfg.data)
            except UnknownChoiceError as err:
                self._report(("data.name",), str(err), labels, context)
                dataset = None
            for problem in problems(cfg, dataset, spec.tune.metric):
                self._report(problem.keys, problem.message, labels, context)
        for key, param in spec.space.items():
            if key not in seen:
                self.add(f"space.{key}.when", f"never holds: {param.when} is not met at any point")

    def _report(self, keys: tuple[str, ...], message: str, origins: list[Origin], context: str) -> None:
        """A start-up problem, blamed on the most specific place that set one of its keys (the space
        over a variant over --set over a profile over base); once per place and cause."""
        where = self._blame(keys, origins)
        if (where, message) not in self.reported:
            self.reported.add((where, message))
            self.add(where, message + context)

    def _blame(self, keys: tuple[str, ...], origins: list[Origin]) -> str:
        """The label of the latest override that set any of ``keys`` (``base.KEY`` of the first key
        when none did; ``tune.*`` keys live outside base)."""
        latest, culprit = -1, keys[0]
        for key in keys:
            for index, (_, origin) in enumerate(origins):
                if index > latest and (origin == key or origin.startswith(key + ".")
                                       or key.startswith(origin + ".")):
                    latest, culprit = index, key
        return self._attribute(culprit, origins, "" if culprit.startswith("tune.") else "base")


def _override_origins(spec: SweepSpec) -> list[Origin]:
    """Where the profile's and --set's keys come from, in the order they are applied."""
    origins = [(f"profiles.{spec.profile}.{k}", k) for k in spec.profiles.get(spec.profile, {})]
    return origins + [(f"--set {k}", k) for k in spec.overrides]
