"""Distributions of the training time t.

Each sampler draws continuous times on [lo, hi] and gives the probability mass of grid intervals
(``interval_probs``), so the same choice serves continuous discretizations (ECT, the Guide's h(t)) and
grid ones (iCT): the discrete lognormal of VCT eq. 59 *is* the lognormal's mass between grid points.
All draws use the global torch RNG so trainer checkpoints capture them.
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

    def sample(self, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
        raise NotImplementedError

    def cdf(self, t: Tensor) -> Tensor:
        raise NotImplementedError

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
        return t.clamp(lo, hi)

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


def build_time_sampler(cfg) -> TimeSampler:
    return TIME_SAMPLERS.get(cfg.name)(cfg)
