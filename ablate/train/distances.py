"""Per-sample distances d(x, y) between the online and target outputs, shape (B,)."""
from __future__ import annotations

import torch
from torch import Tensor

from .config import default_pseudo_huber_c
from .registry import Registry

DISTANCES: Registry = Registry("distance")


def _sq_norm(x: Tensor, y: Tensor) -> Tensor:
    return (x - y).flatten(1).pow(2).sum(dim=1)


@DISTANCES.register("pseudo_huber")
def pseudo_huber(cfg, x: Tensor, y: Tensor) -> Tensor:
    """sqrt(||x - y||^2 + c^2) - c (VCT eq. 61), c = 0.00054 sqrt(d) unless given (iCT); with
    ``per_element`` sum_j sqrt((x_j - y_j)^2 + c^2) - c, as sony/vct's code computes it."""
    c = cfg.c if cfg.c is not None else default_pseudo_huber_c(x[0].numel())
    if cfg.per_element:
        return (torch.sqrt((x - y).flatten(1).pow(2) + c * c) - c).sum(dim=1)
    return torch.sqrt(_sq_norm(x, y) + c * c) - c


@DISTANCES.register("l2")
def l2(cfg, x: Tensor, y: Tensor) -> Tensor:
    """||x - y||_2 (the gradient at x = y is defined as 0)."""
    return torch.sqrt(_sq_norm(x, y) + torch.finfo(x.dtype).tiny)


@DISTANCES.register("l2_squared")
def l2_squared(cfg, x: Tensor, y: Tensor) -> Tensor:
    return _sq_norm(x, y)


def distance(cfg, x: Tensor, y: Tensor) -> Tensor:
    return DISTANCES.get(cfg.name)(cfg, x, y)
