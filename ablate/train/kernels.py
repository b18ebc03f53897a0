"""Forward kernels x_t = a_t x0 + b_t x1 and their consistency-model parametrisations.

Each kernel gives a_t, b_t and the boundary-respecting scalings of the consistency function

    f(x_t, t, s) = c_skip(t, s) x_t + c_out(t, s) F(c_in(t) x_t, c_noise(t))

with f(x, t_min) = x, i.e. c_skip(t_min) = 1 and c_out(t_min) = 0: the *shifted* form, with t - t_min
where EDM has t. ``s`` is the upper limit of the Guide's variable-upper-limit models; the x-predicting
kernels (``ve``, ``li``, ``bridge``) map to s = t_min only. ``ve`` and ``li`` also give EDM's
*unshifted* form (``shifted=False``), with which ECT's and VCT's ECM code train
(``kernel.train_scalings``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .config import KernelConfig
from .registry import Registry

KERNELS: Registry[type["Kernel"]] = Registry("kernel")


class Kernel:
    """Base: time range [t_min, t_max], data std ``sigma_data``; subclasses give the formulas."""

    #: t may exceed t_max during training (VE: the lognormal tail is harmless; VCT App. C.2)
    unbounded_above = False
    #: the network predicts a velocity and f(x_t, t, s) can target any s (Guide eq. 3)
    supports_upper_limit = False

    def __init__(self, cfg: KernelConfig):
        self.t_min, self.t_max, self.sigma_data = cfg.sigma_min, cfg.sigma_max, cfg.sigma_data
        #: training forwards use the unshifted c_skip, c_out (ECT's code); sampling the shifted ones
        self.unshifted_in_training = cfg.train_scalings == "unshifted"

    def a(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def b(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def c_in(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def c_skip(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        """``shifted=False`` (EDM's form) only for kernels that have one (``ve``, ``li``; the config
        allows it for those only)."""
        raise NotImplementedError

    def c_out(self, t: Tensor, s: Tensor | None = None, shifted: bool = True) -> Tensor:
        raise NotImplementedError

    def origin(self, shifted: bool) -> float:
        """Where c_skip = 1 and c_out = 0: t_min in the shifted (boundary) form, 0 in EDM's."""
        return self.t_min if shifted else 0.0

    def c_noise(self, t: Tensor) -> Tensor:
        """iCT's time input 1000 * 0.25 log t (the CM codebase's rescaled EDM c_noise)."""
        return 250.0 * torch.log(t)

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """x_t = a_t x0 + b_t x1 with t broadcast over the non-batch dimensions."""
        t = expand_as(t, x0)
        return self.a(t) * x0 + self.b(t) * x1

    def prior_sample(self, x1: Tensor) -> Tensor:
        """A sample at t_max from noise x1: x_T = a_T E[x0] + b_T x1 with E[x0] taken as 0."""
        return self.b(torch.tensor(self.t_max, device=x1.device, dtype=x1.dtype)) * x1


def expand_as(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample (B,) tensor to broadcast against x of shape (B, ...)."""
    return t.reshape(-1, *([1] * (x.dim() - 1)))


@KERNELS.register("ve")
class VEKernel(Kernel):
    """Variance exploding: x_t = x0 + t x1 (EDM, iCT). c_skip, c_out in the CM boundary form
    (Song et al. 2023, App. C): c_skip = sd^2 / ((t - t_min)^2 + sd^2), c_out = (t - t_min) sd /
    sqrt(sd^2 + t^2); c_in = 1 / sqrt(sd^2 + t^2). Unshifted (EDM; ECT's ECMPrecond in training):
    t in place of t - t_min."""

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


@KERNELS.register("fm")
class FMKernel(Kernel):
    """Flow-matching interpolation x_t = (1 - t) x0 + t x1 on [t0, tT] (Guide Sec. 2) with the velocity
    parametrisation f(x_t, t, s) = x_t + (s - t) F(x_t, t, s) (Guide eq. 3): c_in = c_skip = 1,
    c_out = s - t with s = t0 for classic CMs, so f(x, t0, t0) = x. Time input c_noise = 1000 t (the
    DDPM convention; the time-preconditioning axis may replace it)."""

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


def build_kernel(cfg: KernelConfig) -> Kernel:
    return KERNELS.get(cfg.name)(cfg)

