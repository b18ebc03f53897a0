"""The one typed, nested trainer config.

Every design axis is a sub-config whose ``name`` picks a registered choice. Each axis is a pydantic
*discriminated union* on ``name`` built from the axis's registry: each choice declares exactly its own
parameters (with the paper's defaults) in its own module, beside its code, so an unknown key, a wrong
type or an unknown choice name is a validation error that names the key and lists what is allowed. A search space varies any field by its
dotted name (``coupling.beta``, ``kernel.name``) through :func:`apply_overrides`.

These classes check each section on its own; the rules between sections (and between a config and its
dataset) are all in :mod:`ablate.train.checks`, which the trainer and search-space validation share.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .couplings import COUPLINGS
from .discretization import DISCRETIZATIONS
from .kernels import KernelConfig
from .networks import NETWORKS
from .objectives import OBJECTIVES
from .precond import PRECONDITIONERS
from .registry import Strict
from .time_sampling import TIME_SAMPLERS
from .upper_limit import UPPER_LIMITS
from .weighting import WEIGHTINGS


class ConfigError(ValueError):
    """Invalid trainer config: ``source`` is the file (or "--set"), each problem names its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------- data
class DataConfig(Strict):
    """Dataset; images are scaled to [-1, 1]. Toy sets are generated, ``digits`` ships with sklearn."""

    name: str = "gmm2"
    root: str = "~/.cache/ablate/data"  # torchvision datasets and image folders
    download: bool = True  # torchvision download where the machine has internet
    n_train: int = Field(10000, ge=16)  # toy sets: training points
    n_holdout: int = Field(2000, ge=16)  # toy sets: held-out points for W2
    noise: Optional[str] = None  # noise distribution p_z; None = the dataset's default (gaussian)
    xflip: bool = False
    class_conditional: bool = False
    image_size: Optional[int] = Field(None, ge=4)  # resize images (folder / torchvision sets)


# ------------------------------------------------------------------------------------- choice axes
#: the config section of each axis whose choices have their own options, and the axis's registry; each
#: union is built from its registry: a choice exists once, in its own module (options + code)
AXES = {"model": NETWORKS, "coupling": COUPLINGS, "discretization": DISCRETIZATIONS,
        "precond": PRECONDITIONERS, "weighting": WEIGHTINGS, "time_sampling": TIME_SAMPLERS,
        "upper_limit": UPPER_LIMITS, "distance": OBJECTIVES}
ModelConfig = NETWORKS.union()
CouplingConfig = COUPLINGS.union()
DiscretizationConfig = DISCRETIZATIONS.union()
PrecondConfig = PRECONDITIONERS.union()
WeightingConfig = WEIGHTINGS.union()
TimeSamplingConfig = TIME_SAMPLERS.union()
UpperLimitConfig = UPPER_LIMITS.union()
DistanceConfig = OBJECTIVES.union()


# ------------------------------------------------------------------------------------ target axis
class StopGradTarget(Strict):
    """iCT: the target network is a stop-gradient copy of the online network."""

    name: Literal["stopgrad"] = "stopgrad"


class EMATarget(Strict):
    """CM (2023): the target network is an EMA of the online network with its own rate."""

    name: Literal["ema"] = "ema"
    rate: float = Field(0.95, ge=0.0, lt=1.0)


TargetConfig = Annotated[Union[StopGradTarget, EMATarget], Field(discriminator="name")]


# ------------------------------------------------------------------------------------ optimisation
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class DistributedConfig(Strict):
    """Data-parallel workers per trial (``ablate.train.distributed``): ``train.batch_size`` is the global
    batch, split into equal slices, one per worker. ``workers: 1`` is the plain single-process trainer;
    more run under Ray Train, with the per-worker resources of ``tune.resources``. ``backend``: the
    torch.distributed backend, ``auto`` = NCCL on GPUs, gloo on CPUs."""

    workers: int = Field(1, ge=1)
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class TrainConfig(Strict):
    """Optimisation and loop settings."""

    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-4, gt=0.0)
    optimizer: Literal["adam", "radam", "lion"] = "radam"
    betas: tuple[Rate, Rate] = (0.9, 0.999)  # Adam / RAdam / Lion moment rates
    lr_schedule: Literal["constant", "inv_sqrt"] = "constant"
    lr_ref_steps: int = Field(2000, ge=1)  # i_ref of the inverse-sqrt decay (VCT eq. 63)
    ema: list[float] = [0.9999]  # EMA rates; the first is the one evaluated
    grad_clip: Optional[float] = Field(None, gt=0.0)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    #: micro-batches per optimizer step on each worker (gradient accumulation; ``ablate.train.distributed``)
    accumulate: int = Field(1, ge=1)
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="after")
    def _ema_rates(self) -> "TrainConfig":
        if not self.ema or any(not 0.0 <= r < 1.0 for r in self.ema):
            raise ValueError(f"ema rates must be a non-empty list in [0, 1), got {self.ema}")
        return self


#: FID feature extractors (``ablate.fid``): Inception-v3 as papers report, or the offline small CNN
FID_EXTRACTORS = ("inception-v3-compat", "ablate-cnn")


class EvalConfig(Strict):
    """Evaluation schedule and sampling (VCT App. C.2: sampling seed 32, 2-step time 0.821)."""

    every: int = Field(1000, ge=1)
    steps: list[int] = [1, 2]
    mid_times: list[float] = [0.821]  # intermediate times of multistep sampling, descending
    seed: int = 32
    samples: int = Field(2000, ge=2)  # generated samples for W2 (low-dim) / FID (images)
    extractor: str = "inception-v3-compat"  # FID feature extractor (images); see ablate.fid
    fid_weights: Optional[str] = None  # local Inception weights for clusters without internet
    cache_dir: str = "~/.cache/ablate"  # reference statistics, small extractors
    grid: bool = True  # save a PNG sample grid / 2-D scatter at each evaluation
    sampler: Literal["multistep", "pushforward"] = "multistep"  # restart (iCT/CU) or pushforward (VU)
    eta: float = Field(1.0, gt=0.0, le=1.0)  # edge-skipping factor of pushforward (SCT eq. 20)

    @field_validator("steps")
    @classmethod
    def _step_counts(cls, steps: list[int]) -> list[int]:
        if not steps or any(k < 1 for k in steps):
            raise ValueError(f"expected a non-empty list of sampling step counts >= 1, got {steps}")
        return steps


class LogConfig(Strict):
    report_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(1, ge=1)  # in reports
    diag_every: int = Field(0, ge=0)  # gradient-variance diagnostics every N steps (0: off)
    diag_microbatches: int = Field(8, ge=2)  # K microbatches of the gradient-variance estimate


class Config(Strict):
    """A full trainer config: every trial of a sweep starts from one of these."""

    data: DataConfig = DataConfig()
    model: ModelConfig = NETWORKS.entry("mlp").options()
    kernel: KernelConfig = KernelConfig()
    coupling: CouplingConfig = COUPLINGS.entry("independent").options()
    discretization: DiscretizationConfig = DISCRETIZATIONS.entry("ict").options()
    precond: PrecondConfig = PRECONDITIONERS.entry("kernel").options()
    weighting: WeightingConfig = WEIGHTINGS.entry("inv_dt").options()
    time_sampling: TimeSamplingConfig = TIME_SAMPLERS.entry("lognormal").options()
    upper_limit: UpperLimitConfig = UPPER_LIMITS.entry("cu").options()
    distance: DistanceConfig = OBJECTIVES.entry("pseudo_huber").options()
    target: TargetConfig = StopGradTarget()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_choice_names(cls, data: Any) -> Any:
        """A section given without ``name`` keeps the default choice (``discretization: {s0: 20}``)."""
        if isinstance(data, Mapping):
            data = dict(data)
            for section, field in cls.model_fields.items():
                value = data.get(section)
                if isinstance(value, Mapping) and "name" not in value and \
                        "name" in type(field.default).model_fields:
                    data[section] = {"name": field.default.name, **value}
        return data


# ------------------------------------------------------------------------------ loading, overrides
def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as YAML (numbers, lists, booleans)."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key ``overrides`` applied.

    Switching a choice (``coupling.name=independent``) drops the other parameters of that axis that
    came from ``raw`` (they belong to the old choice), unless the same overrides set them too.
    """
    out = _deep_copy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError("--set", [f"{key}: {part!r} is not a section"])
            node = child
        leaf = parts[-1]
        if leaf == "name" and node.get("name") != value:
            prefix = ".".join(parts[:-1]) + "."
            kept = {k[len(prefix):] for k in overrides if k.startswith(prefix)}
            for k in list(node):
                if k not in kept and k != "name":
                    del node[k]
        node[leaf] = value
    return out


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per pydantic error: ``key.path: what is wrong (what is allowed)``."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        loc = _drop_union_tags(loc)
        where = ".".join(([prefix] if prefix else []) + loc) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            msg = f"unknown choice {ctx.get('tag')!r}; valid: {ctx.get('expected_tags')}"
            where += ".name"
        lines.append(f"{where}: {msg}")
    return lines


def _union_tags() -> dict[str, set[str]]:
    """For each union-typed section of :class:`Config`, the set of its choice names."""
    from typing import get_args

    tags: dict[str, set[str]] = {}
    for section, field in Config.model_fields.items():
        members = [a for a in get_args(field.annotation) if isinstance(a, type)]
        if members:
            tags[section] = {m.model_fields["name"].default for m in members}
    return tags


UNION_TAGS = _union_tags()


def _drop_union_tags(loc: list[str]) -> list[str]:
    """pydantic puts the union tag in the location (``coupling.vc.beta``): drop it."""
    if len(loc) >= 2 and loc[1] in UNION_TAGS.get(loc[0], ()):
        return [loc[0]] + loc[2:]
    return loc


def build_config(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                 source: str = "<config>") -> Config:
    """Validate a raw dict (plus dotted overrides) into a :class:`Config`, or raise ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [f"<root>: expected a mapping of sections, got {type(raw).__name__}"])
    merged = apply_overrides(raw, overrides or {})
    try:
        return Config.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(source, format_errors(err)) from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load a YAML trainer config and apply dotted-key overrides."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"invalid YAML: {err}".replace("\n", " ")]) from None
    return build_config(raw, overrides, source=str(path))


#: Config fields that name a location on disk (or a URI): made absolute where a command receives them
PATH_FIELDS = (("data", "root"), ("eval", "cache_dir"), ("eval", "fid_weights"))


def with_paths(cfg: Config, resolve: Callable[[str], str]) -> Config:
    """``cfg`` with every path field (``PATH_FIELDS``) passed through ``resolve`` (None stays None)."""
    updates: dict[str, dict[str, Any]] = {}
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if value is not None and resolve(value) != value:
            updates.setdefault(section, {})[key] = resolve(value)
    if not updates:
        return cfg
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)
                                  for section, values in updates.items()})


def flatten(cfg: Config | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a config to ``{dotted.name: value}``; lists become tuples-free plain lists."""
    data = cfg.model_dump() if isinstance(cfg, BaseModel) else cfg
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out
