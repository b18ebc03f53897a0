"""VCT's linear-interpolation kernel (VCT App. A)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import KERNELS, Kernel


@KERNELS.register("li")
class LIKernel(Kernel):
    """Linear interpolation with VE-compatible scale (VCT App. A):
    x_t = (1 - t/s_max) x0 + (t/s_max) x1 s_max (eq. 11), so a_t = 1 - t/s_max, b_t = t.

    c_in (eq. 12) = 1 / sqrt(sd^2 (1 - t/s_max)^2 + t^2);
    c_skip (eq. 13 = 39) = sd^2 alpha' / ((t - s_min)^2 + sd^2 alpha'^2), alpha' = 1 - (t - s_min)/(s_max - s_min);
    c_out (eq. 14 = 40) = (t - s_min) sd c_in(t).
    Unshifted (VCT App. A before the boundary shift; sony/vct ``get_scaling_factors``): s_min -> 0, so
    alpha' = 1 - t/s_max.
    """

    default_range = (0.002, 80.0)  # VCT App. A
    has_unshifted = True

    def a(self, t: Tensor) -> Tensor:
        return 1.0 - t / self.t_max

    def b(self, t: Tensor) -> Tensor:
        return t

    def c_in(self, t: Tensor) -> Tensor:
        return torch.rsqrt(self.sigma_data ** 2 * (1.0 - t / self.t_max) ** 2 + t ** 2)

    def c_skip(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        o, sd2 = self.origin(shifted), self.sigma_data ** 2
        alpha = 1.0 - (t - o) / (self.t_max - o)
        return sd2 * alpha / ((t - o) ** 2 + sd2 * alpha ** 2)

    def c_out(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        return (t - self.origin(shifted)) * self.sigma_data * self.c_in(t)
