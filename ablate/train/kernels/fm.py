"""The Guide's flow-matching kernel with the velocity parametrisation (Guide Sec. 2, eq. 3)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import KERNELS, Kernel


@KERNELS.register("fm")
class FMKernel(Kernel):
    """Flow-matching interpolation x_t = (1 - t) x0 + t x1 on [t0, tT] (Guide Sec. 2) with the velocity
    parametrisation f(x_t, t, s) = x_t + (s - t) F(x_t, t, s) (Guide eq. 3): c_in = c_skip = 1,
    c_out = s - t with s = t0 for classic CMs, so f(x, t0, t0) = x. Time input c_noise = 1000 t (the
    DDPM convention; the time-preconditioning axis may replace it)."""

    default_range = (0.006, 0.994)  # Guide Sec. 3.1 / G.1: t in [t0, tT]
    unit_time = True

    supports_upper_limit = True

    def a(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def b(self, t: Tensor) -> Tensor:
        return t

    def c_in(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def c_skip(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        return torch.ones_like(t)

    def c_out(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        return (self.t_min if s is None else s) - t

    def c_noise(self, t: Tensor) -> Tensor:
        return 1000.0 * t

    def prior_sample(self, x1: Tensor) -> Tensor:
        return x1  # t_max < 1: start from pure noise, as the Guide's samplers do
