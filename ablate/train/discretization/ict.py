"""iCT's discretization: adjacent points of a Karras grid that refines on a curriculum."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import DISCRETIZATIONS, Discretization


class ICTOptions(Strict):
    """Karras rho-grid (VCT eq. 57) with the iCT exponential curriculum N(k) from s0 to s1."""

    name: Literal["ict"] = "ict"
    s0: int = Field(10, ge=1)
    s1: int = Field(1280, ge=1)
    rho: float = Field(7.0, gt=0.0)

    @model_validator(mode="after")
    def _order(self) -> "ICTOptions":
        if self.s0 > self.s1:
            raise ValueError(f"s0 ({self.s0}) must not exceed s1 ({self.s1})")
        return self


def karras_grid(n_points: int, t_min: float, t_max: float, rho: float) -> Tensor:
    """sigma_i = (t_min^(1/rho) + (i-1)/(N-1) (t_max^(1/rho) - t_min^(1/rho)))^rho, i = 1..N (VCT eq. 57)."""
    i = torch.arange(n_points, dtype=torch.float64)
    lo, hi = t_min ** (1.0 / rho), t_max ** (1.0 / rho)
    return (lo + i / (n_points - 1) * (hi - lo)) ** rho


def ict_num_points(step: int, iterations: int, s0: int, s1: int) -> int:
    """iCT's exponential curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1,
    K' = floor(K / (log2 floor(s1/s0) + 1)) (Song & Dhariwal 2024; GC App. B; VCT eq. 58 lost symbols
    in extraction)."""
    k_prime = max(1, math.floor(iterations / (math.log2(math.floor(s1 / s0)) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


@DISCRETIZATIONS.register(ICTOptions)
class ICTDiscretization(Discretization):
    """Adjacent points of the Karras grid with N(k) points; the pair's interval is drawn with the time
    sampler's interval mass (the discrete lognormal of VCT eq. 59 for ``lognormal``)."""

    def __init__(self, cfg, kernel: Kernel, iterations: int):
        super().__init__(cfg, kernel, iterations)
        self._cache: dict[tuple[int, str], tuple[Tensor, Tensor | None]] = {}

    def num_points(self, step: int) -> int:
        return ict_num_points(step, self.iterations, self.cfg.s0, self.cfg.s1)

    def grid(self, step: int) -> Tensor:
        return karras_grid(self.num_points(step), self.kernel.t_min, self.kernel.t_max, self.cfg.rho)

    def _grid_and_probs(self, step: int, sampler: TimeSampler, device: torch.device):
        key = (self.num_points(step), str(device))
        if key not in self._cache:
            grid = self.grid(step)
            probs = sampler.interval_probs(grid)
            self._cache[key] = (grid.to(device, torch.float32), probs.to(device, torch.float32))
        return self._cache[key]

    def sample_pair(self, n, step, sampler, device, lower=None):
        if lower is not None:
            raise ValueError("discretization 'ict' draws from a fixed grid and cannot take a variable "
                             "upper limit s; use discretization.name 'ect' or 'guide' with it")
        grid, probs = self._grid_and_probs(step, sampler, device)
        i = torch.multinomial(probs, n, replacement=True)
        return grid[i + 1], grid[i]

    def last_gap(self, step: int) -> float:
        grid = self.grid(step)
        return float(grid[-1] - grid[-2])

    def stage(self, step: int) -> int:
        return self.num_points(step)
