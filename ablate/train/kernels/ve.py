"""The variance-exploding kernel (EDM, iCT)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import KERNELS, Kernel


@KERNELS.register("ve")
class VEKernel(Kernel):
    """Variance exploding: x_t = x0 + t x1 (EDM, iCT). c_skip, c_out in the CM boundary form
    (Song et al. 2023, App. C): c_skip = sd^2 / ((t - t_min)^2 + sd^2), c_out = (t - t_min) sd /
    sqrt(sd^2 + t^2); c_in = 1 / sqrt(sd^2 + t^2). Unshifted (EDM; ECT's ECMPrecond in training):
    t in place of t - t_min."""

    default_range = (0.002, 80.0)  # EDM / iCT
    has_unshifted = True

    unbounded_above = True

    def a(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def b(self, t: Tensor) -> Tensor:
        return t

    def c_in(self, t: Tensor) -> Tensor:
        return torch.rsqrt(self.sigma_data ** 2 + t ** 2)

    def c_skip(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        sd2 = self.sigma_data ** 2
        return sd2 / ((t - self.origin(shifted)) ** 2 + sd2)

    def c_out(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        return (t - self.origin(shifted)) * self.sigma_data * torch.rsqrt(self.sigma_data ** 2 + t ** 2)
