"""The loss-weighting interface: w(t, r) per sample."""
from __future__ import annotations

from torch import Tensor

from ..kernels import Kernel
from ..registry import Registry

WEIGHTINGS: Registry[type["Weighting"]] = Registry("weighting")


class Weighting:
    """w(t, r) of the consistency loss; ``cfg`` is the choice's options."""

    #: w = 1 / (t - r): what VC's adaptive KL weight beta / dt_N assumes (VCT Sec. 6.2)
    is_inverse_dt = False

    def __init__(self, cfg, kernel: Kernel):
        self.cfg, self.kernel = cfg, kernel

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        raise NotImplementedError
