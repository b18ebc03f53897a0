"""Lognormal time sampling (EDM, iCT, ECT)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import TIME_SAMPLERS, TimeSampler


class LognormalSampling(Strict):
    """log t ~ N(p_mean, p_std^2); discrete over the grid for ``ict`` (VCT eq. 59)."""

    name: Literal["lognormal"] = "lognormal"
    p_mean: float = -1.1
    p_std: float = Field(2.0, gt=0.0)


@TIME_SAMPLERS.register(LognormalSampling)
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
