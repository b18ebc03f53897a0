"""GC's bridge kernel (GC Sec. 5.1)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import KERNELS, Kernel


@KERNELS.register("bridge")
class BridgeKernel(Kernel):
    """GC's bridge process x_i = (1 - alpha_i) x + alpha_i z (GC Sec. 5.1).

    Reading chosen: GC Sec. 5.1 writes (1 - alpha) x + alpha z, App. B writes alpha x + (1 - alpha) z
    with the same increasing alpha; we take Sec. 5.1's order, in which the schedule runs from data
    (i = 0) to noise (i = N), with alpha(t) = t / t_max (App. B's Gaussian setting: alpha_i = sigma_i on
    [0.001, 1]). The scalings follow VCT App. A's derivation with data scale (1 - alpha) and noise std
    alpha, in the boundary form (eqs. 39-40) so that c_skip(t_min) = 1, c_out(t_min) = 0. App. B's
    image variant alpha_i = sigma_i / sigma_{i+1} depends on the grid and is not offered.
    """

    default_range = (0.001, 1.0)  # GC App. B (Gaussians)
    unit_time = True

    def alpha(self, t: Tensor) -> Tensor:
        return t / self.t_max

    def a(self, t: Tensor) -> Tensor:
        return 1.0 - self.alpha(t)

    def b(self, t: Tensor) -> Tensor:
        return self.alpha(t)

    def c_in(self, t: Tensor) -> Tensor:
        return torch.rsqrt(self.sigma_data ** 2 * self.a(t) ** 2 + self.alpha(t) ** 2)

    def _shifted(self, t: Tensor) -> tuple[Tensor, Tensor]:
        noise = (t - self.t_min) / self.t_max
        return noise, 1.0 - (t - self.t_min) / (self.t_max - self.t_min)

    def c_skip(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        sd2 = self.sigma_data ** 2
        noise, alpha = self._shifted(t)
        return sd2 * alpha / (noise ** 2 + sd2 * alpha ** 2)

    def c_out(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        noise, _ = self._shifted(t)
        return noise * self.sigma_data * self.c_in(t)

    def c_noise(self, t: Tensor) -> Tensor:
        return 250.0 * torch.log(t * (80.0 / self.t_max))  # the VE/LI input range on [0.002, 80]
