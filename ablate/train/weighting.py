"""Loss weightings w(t, r) of the consistency loss, per sample."""
from __future__ import annotations

import torch
from torch import Tensor

from .kernels import Kernel
from .registry import Registry

WEIGHTINGS: Registry = Registry("weighting")


@WEIGHTINGS.register("inv_dt")
def inv_dt(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    """lambda(t_i) = 1 / (t_{i+1} - t_i) (iCT; VCT eq. 60)."""
    return 1.0 / (t - r)


@WEIGHTINGS.register("edm")
def edm(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    """EDM's lambda(t) = 1/t^2 + 1/sigma_data^2 (VCT Sec. 6.2)."""
    return 1.0 / t ** 2 + 1.0 / kernel.sigma_data ** 2


@WEIGHTINGS.register("uniform")
def uniform(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    return torch.ones_like(t)


def weight(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    return WEIGHTINGS.get(cfg.name)(cfg, t, r, kernel)
