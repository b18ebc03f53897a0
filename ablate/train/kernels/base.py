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

from ..registry import Registry

KERNELS: Registry[type["Kernel"]] = Registry("kernel")


class Kernel:
    """Base: time range [t_min, t_max], data std ``sigma_data``; subclasses give the formulas."""

    #: t may exceed t_max during training (VE: the lognormal tail is harmless; VCT App. C.2)
    unbounded_above = False
    #: the network predicts a velocity and f(x_t, t, s) can target any s (Guide eq. 3)
    supports_upper_limit = False
    #: [sigma_min, sigma_max] when the config leaves them out
    default_range: tuple[float, float] = (0.002, 80.0)
    #: the kernel runs on t in (0, 1] (sigma_max <= 1)
    unit_time = False
    #: EDM's unshifted c_skip, c_out exist (``kernel.train_scalings: unshifted``)
    has_unshifted = False

    def __init__(self, cfg):
        """``cfg``: a :class:`ablate.train.kernels.KernelConfig`."""
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
