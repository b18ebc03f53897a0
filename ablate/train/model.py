"""The consistency function f(x_t, t, s) = c_skip x_t + c_out F(c_in x_t, c(t)) around a backbone."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .kernels import Kernel, expand_as
from .precond import time_input


class ConsistencyFunction(nn.Module):
    """Wraps a backbone F with the kernel's boundary-respecting scalings and the time preconditioning.

    Only the backbone has parameters, so EMA and target copies are copies of this module.
    """

    def __init__(self, backbone: nn.Module, kernel: Kernel, precond_cfg, dual_time: bool = False):
        super().__init__()
        self.backbone, self.kernel, self.precond_cfg, self.dual_time = backbone, kernel, precond_cfg, dual_time

    def velocity(self, x_t: Tensor, t: Tensor, s: Tensor | None = None,
                 class_labels: Tensor | None = None) -> Tensor:
        """The backbone output F(c_in x_t, c(t)[, c(s)]): for the ``fm`` kernel the Guide's
        f_theta(x_t, t, s), the average velocity from t to s (Guide eqs. 3-4)."""
        k = self.kernel
        c_noise = time_input(self.precond_cfg, t, k)
        s_noise = time_input(self.precond_cfg, s, k) if self.dual_time else None
        return self.backbone(expand_as(k.c_in(t), x_t) * x_t, c_noise, s_noise, class_labels)

    def forward(self, x_t: Tensor, t: Tensor, s: Tensor | None = None,
                class_labels: Tensor | None = None) -> Tensor:
        """f(x_t, t, s); in training mode with ``kernel.unshifted_in_training`` the c_skip, c_out are
        EDM's unshifted ones (ECT's code), in eval mode (sampling) always the shifted boundary form.
        At t = 0 (ECT's code's r = 0) f is the identity: x_0 is the clean data, and the backbone is not
        evaluated there (its time input log t would be -inf)."""
        k = self.kernel
        shifted = not (self.training and k.unshifted_in_training)
        at_zero = t <= 0
        t = torch.where(at_zero, k.t_min, t)
        out = self.velocity(x_t, t, s, class_labels)
        f = expand_as(k.c_skip(t, s, shifted), x_t) * x_t + expand_as(k.c_out(t, s, shifted), x_t) * out
        return torch.where(expand_as(at_zero, x_t), x_t, f)
