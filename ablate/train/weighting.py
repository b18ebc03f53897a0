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


@WEIGHTINGS.register("inv_dt_smooth")
def inv_dt_smooth(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    """1 / (t - r + delta) <= 1 / delta (SCT Sec. 4.2)."""
    return 1.0 / (t - r + cfg.delta)


@WEIGHTINGS.register("gamma")
def gamma(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    """The Guide's Gamma weight t^gamma e^{-lambda t} (Guide eq. 14)."""
    return t ** cfg.gamma * torch.exp(-cfg.lam * t)


def weight(cfg, t: Tensor, r: Tensor, kernel: Kernel) -> Tensor:
    return WEIGHTINGS.get(cfg.name)(cfg, t, r, kernel)
