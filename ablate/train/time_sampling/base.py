"""Distributions of the training time t.

Each sampler draws continuous times on [lo, hi] and gives the probability mass of grid intervals
(``interval_probs``), so the same choice serves continuous discretizations (ECT, the Guide's h(t)) and
grid ones (iCT): the discrete lognormal of VCT eq. 59 *is* the lognormal's mass between grid points.
All draws use the global torch RNG so trainer checkpoints capture them. ``lo`` may be a per-sample
tensor (the upper limit s of the Guide's VU models: t on [s, tT], Sec. 3.4).
"""
from __future__ import annotations


import torch
from torch import Tensor

from ..registry import Registry

TIME_SAMPLERS: Registry[type["TimeSampler"]] = Registry("time sampling")


class TimeSampler:
    """Base: ``cfg`` is the choice's options."""

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
