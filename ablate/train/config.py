"""The one typed, nested trainer config.

Every design axis is a sub-config whose ``name`` picks a registered choice. Axes whose choices take
different parameters are pydantic *discriminated unions* on ``name``: each choice declares exactly its
own parameters (with the paper's defaults), so an unknown key, a wrong type or an unknown choice name is
a validation error that names the key and lists what is allowed. A search space varies any field by its
dotted name (``coupling.beta``, ``kernel.name``) through :func:`apply_overrides`.

These classes check each section on its own; the rules between sections (and between a config and its
dataset) are all in :mod:`ablate.train.checks`, which the trainer and search-space validation share.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """Invalid trainer config: ``source`` is the file (or "--set"), each problem names its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: " + "; ".join(problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


# -------------------------------------------------------------------------------------------- model
class MLPConfig(Strict):
    """MLP with a sinusoidal time embedding (VCT App. E; GC App. B: depth 4, width 256, GELU)."""

    name: Literal["mlp"] = "mlp"
    hidden: int = Field(256, ge=1)
    depth: int = Field(4, ge=1)
    time_dim: int = Field(64, ge=2, multiple_of=2)  # cos and sin halves of the embedding
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class UNetConfig(Strict):
    """Compact DDPM++-style UNet (VCT Table 4: channels 64, mult [2,2,2], 4 res blocks, dropout 0.3)."""

    name: Literal["unet"] = "unet"
    channels: int = Field(64, ge=4)
    channel_mult: list[Annotated[int, Field(ge=1)]] = [2, 2, 2]
    num_res_blocks: int = Field(4, ge=1)
    attn_resolutions: list[int] = []
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


ModelConfig = Annotated[Union[MLPConfig, UNetConfig], Field(discriminator="name")]


# ------------------------------------------------------------------------------------------- kernel
KERNEL_DEFAULT_RANGE: dict[str, tuple[float, float]] = {
    "ve": (0.002, 80.0),  # EDM / iCT
    "li": (0.002, 80.0),  # VCT App. A
    "fm": (0.006, 0.994),  # Guide Sec. 3.1 / G.1: t in [t0, tT]
    "bridge": (0.001, 1.0),  # GC App. B (Gaussians)
}


class KernelConfig(Strict):
    """Forward kernel x_t = a_t x0 + b_t x1 on t in [sigma_min, sigma_max] (None = kernel default).

    ``train_scalings`` (``ve``, ``li``): ``shifted`` (default, the papers: c_skip, c_out in the boundary
    form with t - sigma_min, f(x, sigma_min) = x; Song et al. 2023 App. C, VCT eqs. 39-40) in training and
    sampling; ``unshifted`` trains with EDM's c_skip, c_out (t in place of t - sigma_min) and samples
    with the shifted ones, as ECT's and VCT's ECM code do (locuslab/ect training/networks.py ECMPrecond,
    sony/vct models/ecm.py with kernels/*.py ``get_scaling_factors``)."""

    name: Literal["ve", "li", "fm", "bridge"] = "ve"
    sigma_min: Optional[float] = Field(None, gt=0.0)
    sigma_max: Optional[float] = Field(None, gt=0.0)
    sigma_data: float = Field(0.5, gt=0.0)
    train_scalings: Literal["shifted", "unshifted"] = "shifted"

    @model_validator(mode="after")
    def _fill_range(self) -> "KernelConfig":
        lo, hi = KERNEL_DEFAULT_RANGE[self.name]
        if self.sigma_min is None:
            object.__setattr__(self, "sigma_min", lo)
        if self.sigma_max is None:
            object.__setattr__(self, "sigma_max", hi)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.name in ("fm", "bridge") and self.sigma_max > 1.0:
            raise ValueError(f"kernel {self.name!r} runs on t in (0, 1]: sigma_max must be <= 1")
        if self.train_scalings == "unshifted" and self.name not in ("ve", "li"):
            raise ValueError(f"train_scalings='unshifted' (EDM's c_skip, c_out, as ECT's code trains) exists "
                             f"for kernels 've' and 'li' only, got name={self.name!r}")
        return self


# ------------------------------------------------------------------------------------ coupling axis
class IndependentCoupling(Strict):
    name: Literal["independent"] = "independent"


class OTCoupling(Strict):
    """Exact minibatch OT (POT ``ot.emd``, squared Euclidean cost)."""

    name: Literal["ot"] = "ot"


class VCCoupling(Strict):
    """Variational coupling (VCT Alg. 1): a Gaussian encoder q(x1 | x0) with KL weight beta (VCT eq. 9);
    beta / dt_N when the loss weight is 1/dt and ``adaptive`` (VCT Sec. 6.2). Defaults: VCT Table 4.

    The paper does not say how the encoder sees x0 or makes its scale g_sigma > 0. ``encoder_input``:
    ``x0`` (default) or ``x0_over_sigma_data`` (sony/vct models/cm_base.py ``posterior_precond``);
    ``scale_activation``: ``exp`` of the output (default) or ``softplus`` (sony/vct, whose KL then uses
    g_sigma + 1e-8)."""

    name: Literal["vc"] = "vc"
    beta: float = Field(30.0, ge=0.0)
    adaptive: bool = True
    encoder_channels: int = Field(32, ge=4)  # image encoder: UNet channels (1 res block, mult [2,2,2])
    encoder_hidden: int = Field(128, ge=1)  # point encoder: MLP width
    ema: float = Field(0.9999, ge=0.0, lt=1.0)  # the encoder's own EMA (used for sampling)
    grad_clip: Optional[float] = Field(200.0, gt=0.0)  # VCT Sec. 7.1
    encoder_input: Literal["x0", "x0_over_sigma_data"] = "x0"
    scale_activation: Literal["exp", "softplus"] = "exp"


class GCCoupling(Strict):
    """Generator-induced coupling (GC Alg. 1) mixed with independent pairs at rate mu (GC Sec. 5.2);
    ``mu_end`` schedules mu linearly from ``mu`` to ``mu_end`` over training.

    ``induced_fraction``: ``mu`` (default, GC Sec. 5.2: "drawn from GC with probability mu") or
    ``one_minus_mu`` (the released code, train_consistency.py: ``rand > mu`` marks the induced pairs)."""

    name: Literal["gc"] = "gc"
    mu: float = Field(0.5, ge=0.0, le=1.0)
    mu_end: Optional[float] = Field(None, ge=0.0, le=1.0)
    generator: Literal["ema", "online"] = "ema"
    induced_fraction: Literal["mu", "one_minus_mu"] = "mu"


class VRCoupling(Strict):
    """Variance-reduced target (SCT eqs. 13-14): the conditional target averaged over a reference set
    of the batch plus ``buffer`` past data points, weights proportional to p(x_t | x0_j)."""

    name: Literal["vr"] = "vr"
    buffer: int = Field(0, ge=0)


CouplingConfig = Annotated[
    Union[IndependentCoupling, OTCoupling, VCCoupling, GCCoupling, VRCoupling], Field(discriminator="name")
]


# ------------------------------------------------------------------------------ discretization axis
class ICTDiscretization(Strict):
    """Karras rho-grid (VCT eq. 57) with the iCT exponential curriculum N(k) from s0 to s1."""

    name: Literal["ict"] = "ict"
    s0: int = Field(10, ge=1)
    s1: int = Field(1280, ge=1)
    rho: float = Field(7.0, gt=0.0)

    @model_validator(mode="after")
    def _order(self) -> "ICTDiscretization":
        if self.s0 > self.s1:
            raise ValueError(f"s0 ({self.s0}) must not exceed s1 ({self.s1})")
        return self


class ECTDiscretization(Strict):
    """ECT mapping r = t (1 - n(t) / q^a), n(t) = 1 + k_n sigmoid(-b t) (VCT eq. 62; SCT eq. 15), and
    r = ReLU(1 - n(t) / q^a) (t - s) + s below an upper limit s (SCT eq. 17).

    ``stage_exponent`` a at step k, d = ceil(iterations / stages): ``ceil`` = ceil(k/d) (default, VCT
    eq. 62), ``floor`` = floor(k/d) (SCT eqs. 15, 17), ``floor_plus_one`` = floor(k/d) + 1 (the code of
    ECT, locuslab/ect training/loss.py, and of VCT's ECM, sony/vct models/ecm.py).
    ``r_floor``: where 1 - n(t)/q^a < 0, r = ``sigma_min`` (default: the bottom of the kernel's time
    range, target f(x_{sigma_min}, sigma_min) = x_{sigma_min}) or ``zero`` (r = 0 with the clean data x0
    as target, as both codes do; SCT eq. 15's ReLU also gives r = 0)."""

    name: Literal["ect"] = "ect"
    q: float = Field(2.0, gt=1.0)
    k: float = Field(8.0, ge=0.0)
    b: float = 1.0
    stages: int = Field(8, ge=1)  # d = ceil(iterations / stages): "made smaller eight times"
    stage_exponent: Literal["ceil", "floor", "floor_plus_one"] = "ceil"
    r_floor: Literal["sigma_min", "zero"] = "sigma_min"


GUIDE_STEP_SIZES = ("constant", "linear", "quadratic", "cubic", "quadratic_increase", "concave",
                    "convex", "exponential", "imm", "edm", "ect")


class GuideDiscretization(Strict):
    """The Guide's step size r = t - h(t) (Guide Sec. 3.2, App. C.2-C.3); ``h`` names the shape, ``eps``
    its scale (0.005, Guide G.1), ``mu`` the exponential rate (3.5, eq. 36). ``normalize`` rescales eps
    so that the integral of h over [0, 1] equals the quadratic-decrease baseline's (Table 7b);
    ``curriculum_every`` > 0 starts eps at ``curriculum_start`` and halves it every K steps down to eps
    (Guide G.1)."""

    name: Literal["guide"] = "guide"
    h: Literal[GUIDE_STEP_SIZES] = "exponential"
    eps: float = Field(0.005, gt=0.0)
    mu: float = Field(3.5, gt=0.0)
    normalize: bool = False
    curriculum_every: int = Field(0, ge=0)
    curriculum_start: float = Field(0.5, gt=0.0)


DiscretizationConfig = Annotated[
    Union[ICTDiscretization, ECTDiscretization, GuideDiscretization], Field(discriminator="name")
]


# --------------------------------------------------------------------------- time preconditioning
class KernelTimeInput(Strict):
    """The kernel's own c_noise (EDM: 0.25 log sigma) as the network's time input."""

    name: Literal["kernel"] = "kernel"


class IdentityTimeInput(Strict):
    """c(t) = t (the Guide's naive baseline, Table 7c)."""

    name: Literal["identity"] = "identity"


class LinearTimeInput(Strict):
    """c(t) = scale * t (IMM's 1000 t, Guide Table 7c)."""

    name: Literal["linear"] = "linear"
    scale: float = Field(1000.0, gt=0.0)


class ExponentialTimeInput(Strict):
    """c(t) = (e^{mu t} - 1) / mu (Guide eq. 9, App. C.4), uniform resolution for h = eps e^{-mu t}."""

    name: Literal["exponential"] = "exponential"
    mu: float = Field(3.5, gt=0.0)


PrecondConfig = Annotated[
    Union[KernelTimeInput, IdentityTimeInput, LinearTimeInput, ExponentialTimeInput],
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------------- weighting axis
class InvDtWeighting(Strict):
    name: Literal["inv_dt"] = "inv_dt"


class EDMWeighting(Strict):
    name: Literal["edm"] = "edm"


class UniformWeighting(Strict):
    name: Literal["uniform"] = "uniform"


class InvDtSmoothWeighting(Strict):
    """1 / (t - r + delta) (SCT Sec. 4.2); SCT gives no value for delta."""

    name: Literal["inv_dt_smooth"] = "inv_dt_smooth"
    delta: float = Field(1e-3, gt=0.0)


class GammaWeighting(Strict):
    """t^gamma e^{-lambda t} (Guide eq. 14; gamma = 1, lambda = 6 on CIFAR-10)."""

    name: Literal["gamma"] = "gamma"
    gamma: float = 1.0
    lam: float = 6.0


WeightingConfig = Annotated[
    Union[InvDtWeighting, EDMWeighting, UniformWeighting, InvDtSmoothWeighting, GammaWeighting],
    Field(discriminator="name"),
]


# ----------------------------------------------------------------------------- time sampling axis
class LognormalSampling(Strict):
    """log t ~ N(p_mean, p_std^2); discrete over the grid for ``ict`` (VCT eq. 59)."""

    name: Literal["lognormal"] = "lognormal"
    p_mean: float = -1.1
    p_std: float = Field(2.0, gt=0.0)


class UniformSampling(Strict):
    name: Literal["uniform"] = "uniform"


class SineSampling(Strict):
    """p_sine(t; a, b) on the unit interval, scaled to [lo, hi] (Guide eq. 15, sampled by eq. 41;
    a = 1, b = 0.01 is the Guide's default, Table 7g). ``divide_by_pdf`` divides the loss weight by
    the density so that the effective weight w(t) is kept (Guide Sec. 3.3)."""

    name: Literal["sine"] = "sine"
    a: float = 1.0
    b: float = 0.01
    divide_by_pdf: bool = True

    @model_validator(mode="after")
    def _shape(self) -> "SineSampling":
        if self.a == self.b or not (0.0 <= min(self.a, self.b) and max(self.a, self.b) <= 2.0):
            raise ValueError(f"sine needs a != b, both in [0, 2] (positive density), got a={self.a}, b={self.b}")
        return self


class CoshSampling(Strict):
    """p_cosh(t; a, b) on the unit interval, scaled to [lo, hi] (Guide eq. 16, sampled by eq. 42;
    a = 1.5, b = 0 in Table 7g). ``divide_by_pdf`` as for ``sine``."""

    name: Literal["cosh"] = "cosh"
    a: float = 1.5
    b: float = 0.0
    divide_by_pdf: bool = True

    @model_validator(mode="after")
    def _shape(self) -> "CoshSampling":
        if self.a == self.b:
            raise ValueError(f"cosh needs a != b, got a = b = {self.a}")
        return self


TimeSamplingConfig = Annotated[
    Union[LognormalSampling, UniformSampling, SineSampling, CoshSampling], Field(discriminator="name")
]


# ------------------------------------------------------------------------------- upper limit axis
class ClassicUpperLimit(Strict):
    """CU: the consistency function maps to s = t0 (classic CM)."""

    name: Literal["cu"] = "cu"


class VariableUpperLimit(Strict):
    """VU: s ~ uniform-power(nu) on [t0, tT] (Guide eq. 17, sampled as in App. E.2), then t on [s, tT];
    the model takes (x_t, t, s). nu = 4 is the Guide's best trade-off (Fig. 7f). Needs kernel ``fm``."""

    name: Literal["vu"] = "vu"
    nu: float = Field(4.0, gt=0.0)


class PhasedUpperLimit(Strict):
    """Phased (multistep) training: [t0, tT] cut into ``segments`` equal segments, s = the segment edge
    below t (SCT Sec. 4.3, eq. 17). Needs kernel ``fm``."""

    name: Literal["phased"] = "phased"
    segments: int = Field(2, ge=1)


UpperLimitConfig = Annotated[
    Union[ClassicUpperLimit, VariableUpperLimit, PhasedUpperLimit], Field(discriminator="name")
]


# ---------------------------------------------------------------------------------- distance axis
class PseudoHuberDistance(Strict):
    """sqrt(||x - y||^2 + c^2) - c (VCT eq. 61, iCT); c = None means iCT's 0.00054 sqrt(d).

    ``per_element``: false (default, the papers' vector norm) or true, sum_j sqrt((x_j - y_j)^2 + c^2) - c
    (sony/vct models/ict.py ``pseudo_huber_loss``, summed over dimensions)."""

    name: Literal["pseudo_huber"] = "pseudo_huber"
    c: Optional[float] = Field(None, gt=0.0)
    per_element: bool = False


class L2Distance(Strict):
    name: Literal["l2"] = "l2"


class SquaredL2Distance(Strict):
    name: Literal["l2_squared"] = "l2_squared"


class ParticleL2Distance(Strict):
    """The Guide's particle loss: w/(t - s) ||g_theta(x_t, t, s) - g_target(x_r, r, s)|| (Guide eq. 5),
    computed in the equal-gradient form of eq. 39 (Guide G.1). Needs kernel ``fm``."""

    name: Literal["particle_l2"] = "particle_l2"


class TimeAwareMMDDistance(Strict):
    """Time-aware MMD over groups of ``group_size`` samples with the kernel
    -||x1 - x2|| exp(-(|t1 - t2| + |s1 - s2|) / sigma) (Guide App. F, eqs. 44-46); ``share_time`` draws
    one (t, r, s) per group instead (IMM's form, Guide Table 7i). Needs kernel ``fm``."""

    name: Literal["time_aware_mmd"] = "time_aware_mmd"
    group_size: int = Field(2, ge=1)
    sigma: float = Field(0.1, gt=0.0)
    share_time: bool = False


DistanceConfig = Annotated[
    Union[PseudoHuberDistance, L2Distance, SquaredL2Distance, ParticleL2Distance, TimeAwareMMDDistance],
    Field(discriminator="name"),
]


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
    model: ModelConfig = MLPConfig()
    kernel: KernelConfig = KernelConfig()
    coupling: CouplingConfig = IndependentCoupling()
    discretization: DiscretizationConfig = ICTDiscretization()
    precond: PrecondConfig = KernelTimeInput()
    weighting: WeightingConfig = InvDtWeighting()
    time_sampling: TimeSamplingConfig = LognormalSampling()
    upper_limit: UpperLimitConfig = ClassicUpperLimit()
    distance: DistanceConfig = PseudoHuberDistance()
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


def default_pseudo_huber_c(dim: int) -> float:
    """iCT's pseudo-Huber constant c = 0.00054 sqrt(d) for data of dimension d."""
    return 0.00054 * math.sqrt(dim)
