"""The Guide's discretization: r = t - h(t) with a step-size function h of t alone (Guide Sec. 3.2).

The shapes are those the Guide compares in Table 7b (App. C.2-C.3, eqs. 26-36); each is a plain
function ``h(t, eps, mu)`` of a tensor t in [0, 1]. ``normalized_eps`` solves for the eps that gives a
shape the integral over [0, 1] of the quadratic-decrease baseline 0.005 (1 - t)^2 (App. C.3).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

from pydantic import Field

import torch
from torch import Tensor

from ..kernels import Kernel
from ..registry import Registry, Strict
from ..time_sampling import TimeSampler
from .base import DISCRETIZATIONS, Discretization

StepSize = Callable[[Tensor, float, float], Tensor]
STEP_SIZES: Registry[StepSize] = Registry("step size h(t)")

#: the Guide's baseline h(t) = 0.005 (1 - t)^2 (App. C.2-C.3), whose integral the normalisation matches
BASELINE_EPS = 0.005
EDM_SIGMA_DATA, EDM_RHO = 0.5, 7.0


@STEP_SIZES.register("constant")
def h_constant(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps (eq. 26)."""
    return torch.full_like(t, eps)


@STEP_SIZES.register("linear")
def h_linear(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps (1 - t) (eq. 30)."""
    return eps * (1.0 - t)


@STEP_SIZES.register("quadratic")
def h_quadratic(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps (1 - t)^2 (eq. 31; the Guide's baseline, the eps -> 0 limit of IMM's)."""
    return eps * (1.0 - t) ** 2


@STEP_SIZES.register("cubic")
def h_cubic(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps (1 - t)^3 (eq. 32)."""
    return eps * (1.0 - t) ** 3


@STEP_SIZES.register("quadratic_increase")
def h_quadratic_increase(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps t^2 (eq. 33)."""
    return eps * t ** 2


@STEP_SIZES.register("concave")
def h_concave(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps t (1 - t) (eq. 34)."""
    return eps * t * (1.0 - t)


@STEP_SIZES.register("convex")
def h_convex(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps (0.5 - t)^2 (eq. 35)."""
    return eps * (0.5 - t) ** 2


@STEP_SIZES.register("exponential")
def h_exponential(t: Tensor, eps: float, mu: float) -> Tensor:
    """h = eps e^{-mu t} (eq. 36 with mu = 3.5; eq. 8)."""
    return eps * torch.exp(-mu * t)


@STEP_SIZES.register("imm")
def h_imm(t: Tensor, eps: float, mu: float) -> Tensor:
    """Constant decrement of eta = t / (1 - t): h = eps (1 - t)^2 / (1 - eps (1 - t)) (eq. 29)."""
    return eps * (1.0 - t) ** 2 / (1.0 - eps * (1.0 - t))


@STEP_SIZES.register("edm")
def h_edm(t: Tensor, eps: float, mu: float) -> Tensor:
    """EDM's bell: h = 2/pi arctan((sigma(t)^{1/7} - A)^7 / 0.5) - t, sigma(t) = 0.5 tan(pi t / 2),
    with A = -eps (eq. 27; the Guide adjusts A < 0)."""
    sigma = EDM_SIGMA_DATA * torch.tan(0.5 * math.pi * t)
    sigma_next = (sigma ** (1.0 / EDM_RHO) + eps) ** EDM_RHO
    return 2.0 / math.pi * torch.atan(sigma_next / EDM_SIGMA_DATA) - t


@STEP_SIZES.register("ect")
def h_ect(t: Tensor, eps: float, mu: float) -> Tensor:
    """ECT's mapping in t: h = t - 2/pi arctan(tan(pi t/2)(1 - eps(1 + 8/(1 + e^{0.5 tan(pi t/2)}))))
    (eq. 28)."""
    tan = torch.tan(0.5 * math.pi * t)
    shrink = 1.0 - eps * (1.0 + 8.0 / (1.0 + torch.exp(EDM_SIGMA_DATA * tan)))
    return t - 2.0 / math.pi * torch.atan(tan * shrink)


def step_size(shape: str, t: Tensor, eps: float, mu: float) -> Tensor:
    return STEP_SIZES.get(shape)(t, eps, mu)


def integral_over_unit(shape: str, eps: float, mu: float, points: int = 20000) -> float:
    """int_0^1 h(t) dt by the midpoint rule in float64 (avoids tan(pi/2) at t = 1)."""
    t = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    return float(step_size(shape, t, eps, mu).mean())


def normalized_eps(shape: str, mu: float) -> float:
    """The eps whose h has the baseline's integral int_0^1 0.005 (1 - t)^2 dt = 0.005 / 3 (App. C.3);
    bisection in log eps (every shape grows with eps)."""
    target = BASELINE_EPS / 3.0
    lo, hi = 1e-8, 0.5
    for _ in range(50):
        mid = math.sqrt(lo * hi)
        if integral_over_unit(shape, mid, mu) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


#: the step-size shapes, in the order the Guide lists them (Table 7b)
GUIDE_STEP_SIZES = tuple(e.name for e in STEP_SIZES.entries())


class GuideOptions(Strict):
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


@DISCRETIZATIONS.register(GuideOptions)
class GuideStepDiscretization(Discretization):
    """t from the time sampler on [lo, tT] (lo = t0, or the upper limit s for VU), r = max(t - h(t), lo)
    (Guide Sec. 3.2); the optional curriculum starts eps at ``curriculum_start`` and halves it every
    ``curriculum_every`` steps, never below eps (Guide G.1)."""

    def __init__(self, cfg, kernel: Kernel, iterations: int):
        super().__init__(cfg, kernel, iterations)
        if kernel.t_max > 1.0:
            raise ValueError(f"discretization 'guide' is defined on t in [0, 1]; kernel range ends at "
                             f"{kernel.t_max} (use kernel.name 'fm')")
        self.eps = normalized_eps(cfg.h, cfg.mu) if cfg.normalize else cfg.eps

    def eps_at(self, step: int) -> float:
        if not self.cfg.curriculum_every:
            return self.eps
        return max(self.cfg.curriculum_start * 0.5 ** (step // self.cfg.curriculum_every), self.eps)

    def sample_pair(self, n, step, sampler: TimeSampler, device, lower: Tensor | None = None):
        lo = self.kernel.t_min if lower is None else lower
        t = sampler.sample(n, lo, self.kernel.t_max, device)
        r = t - step_size(self.cfg.h, t, self.eps_at(step), self.cfg.mu)
        r = torch.maximum(r, lo if lower is not None else torch.full_like(t, lo))
        # a t on the lower boundary has no r below it: lift it just above (measure zero)
        return torch.maximum(t, r + 1e-6), r

    def last_gap(self, step: int) -> float:
        t = torch.tensor([self.kernel.t_max], dtype=torch.float64)
        return float(step_size(self.cfg.h, t, self.eps_at(step), self.cfg.mu))

    def stage(self, step: int) -> int:
        return step // self.cfg.curriculum_every if self.cfg.curriculum_every else 0
