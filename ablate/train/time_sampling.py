"""Distributions of the training time t.

Each sampler draws continuous times on [lo, hi] and gives the probability mass of grid intervals
(``interval_probs``), so the same choice serves continuous discretizations (ECT, the Guide's h(t)) and
grid ones (iCT): the discrete lognormal of VCT eq. 59 *is* the lognormal's mass between grid points.
All draws use the global torch RNG so trainer checkpoints capture them. ``lo`` may be a per-sample
tensor (the upper limit s of the Guide's VU models: t on [s, tT], Sec. 3.4).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .registry import Registry

TIME_SAMPLERS: Registry[type["TimeSampler"]] = Registry("time sampling")


class TimeSampler:
    def __init__(self, cfg):
        self.cfg = cfg

    def sample(self, n: int, lo: float | Tensor, hi: float, device: torch.device) -> Tensor:
        raise NotImplementedError

    def cdf(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def loss_scale(self, t: Tensor, lo: float | Tensor, hi: float) -> Tensor | None:
        """Factor on the loss weight for this sampler (None: 1); see ``UnitIntervalSampler``."""
        return None

    def interval_probs(self, edges: Tensor) -> Tensor:
        """P(edges[i] <= t < edges[i+1]) normalised over the intervals (VCT eq. 59 for lognormal)."""
        mass = self.cdf(edges[1:]) - self.cdf(edges[:-1])
        return mass / mass.sum()


@TIME_SAMPLERS.register("lognormal")
class LognormalSampler(TimeSampler):
    """log t ~ N(P_mean, P_std^2) (EDM; iCT/ECT P_mean = -1.1, P_std = 2.0), clipped to [lo, hi].

    Its interval mass is erf((log s_{i+1} - P_mean)/(sqrt 2 P_std)) - erf((log s_i - P_mean)/(sqrt 2 P_std))
    up to normalisation: VCT eq. 59.
    """

    def sample(self, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
        t = torch.exp(self.cfg.p_mean + self.cfg.p_std * torch.randn(n, device=device))
        return torch.maximum(t.clamp(max=hi), lo) if isinstance(lo, Tensor) else t.clamp(lo, hi)

    def cdf(self, t: Tensor) -> Tensor:
        z = (torch.log(t) - self.cfg.p_mean) / (math.sqrt(2.0) * self.cfg.p_std)
        return 0.5 * (1.0 + torch.erf(z))


@TIME_SAMPLERS.register("uniform")
class UniformSampler(TimeSampler):
    """t ~ U[lo, hi]; on a grid, interval mass proportional to interval length."""

    def sample(self, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, device=device)

    def cdf(self, t: Tensor) -> Tensor:
        return t

    def interval_probs(self, edges: Tensor) -> Tensor:
        width = edges[1:] - edges[:-1]
        return width / width.sum()


class UnitIntervalSampler(TimeSampler):
    """A density p(u) on [0, 1] sampled by inverse CDF, t = lo + (hi - lo) u (Guide App. E.1 assumes
    [0, 1]; we scale to the kernel's [t0, tT], or [s, tT] when s varies). With ``divide_by_pdf`` the
    loss weight is divided by p(u) so that the effective weight w(t) p(t) stays w(t) (Guide Sec. 3.3;
    we divide by the shape p(u), not by p(t | s) = p(u) / (tT - s), so VU adds no s-dependent factor).
    On a grid (``ict``) the interval mass uses the CDF at t itself (t in [0, 1])."""

    def unit_pdf(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def unit_cdf(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def unit_inverse_cdf(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, n, lo, hi, device):
        u = self.unit_inverse_cdf(torch.rand(n, device=device)).clamp(0.0, 1.0)
        return lo + (hi - lo) * u

    def cdf(self, t: Tensor) -> Tensor:
        return self.unit_cdf(t.clamp(0.0, 1.0))

    def loss_scale(self, t, lo, hi):
        if not self.cfg.divide_by_pdf:
            return None
        return 1.0 / self.unit_pdf(((t - lo) / (hi - lo)).clamp(0.0, 1.0))


@TIME_SAMPLERS.register("sine")
class SineSampler(UnitIntervalSampler):
    """p_sine(u; a, b) = pi (a - b) / (2 (cos(pi b/2) - cos(pi a/2))) sin(pi/2 (a u + b (1 - u)))
    (Guide eq. 15); inverse CDF u = 2/(pi (a - b)) [arccos(cos(pi b/2) - v (cos(pi b/2) -
    cos(pi a/2))) - pi b/2] (eq. 41)."""

    def _cos(self) -> tuple[float, float]:
        return math.cos(0.5 * math.pi * self.cfg.b), math.cos(0.5 * math.pi * self.cfg.a)

    def unit_pdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        return math.pi * (a - b) / (2.0 * (cos_b - cos_a)) * torch.sin(0.5 * math.pi * (a * u + b * (1.0 - u)))

    def unit_cdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        return (cos_b - torch.cos(0.5 * math.pi * ((a - b) * u + b))) / (cos_b - cos_a)

    def unit_inverse_cdf(self, v):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        inner = (cos_b - v * (cos_b - cos_a)).clamp(-1.0, 1.0)
        return 2.0 / (math.pi * (a - b)) * (torch.arccos(inner) - 0.5 * math.pi * b)


@TIME_SAMPLERS.register("cosh")
class CoshSampler(UnitIntervalSampler):
    """p_cosh(u; a, b) = (a - b) / (sinh a - sinh b) cosh(a u + b (1 - u)) (Guide eq. 16); inverse CDF
    u = [arcsinh(sinh b + v (sinh a - sinh b)) - b] / (a - b) (eq. 42)."""

    def unit_pdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        return (a - b) / (math.sinh(a) - math.sinh(b)) * torch.cosh(a * u + b * (1.0 - u))

    def unit_cdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        return (torch.sinh((a - b) * u + b) - math.sinh(b)) / (math.sinh(a) - math.sinh(b))

    def unit_inverse_cdf(self, v):
        a, b = self.cfg.a, self.cfg.b
        return (torch.asinh(math.sinh(b) + v * (math.sinh(a) - math.sinh(b))) - b) / (a - b)


def build_time_sampler(cfg) -> TimeSampler:
    return TIME_SAMPLERS.get(cfg.name)(cfg)
