"""Uniform time sampling."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..registry import Strict
from .base import TIME_SAMPLERS, TimeSampler


class UniformSampling(Strict):
    """t uniform on the kernel's time range."""

    name: Literal["uniform"] = "uniform"


@TIME_SAMPLERS.register(UniformSampling)
class UniformSampler(TimeSampler):
    """t ~ U[lo, hi]; on a grid, interval mass proportional to interval length."""

    def sample(self, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, device=device)

    def cdf(self, t: Tensor) -> Tensor:
        return t

    def interval_probs(self, edges: Tensor) -> Tensor:
        width = edges[1:] - edges[:-1]
        return width / width.sum()
