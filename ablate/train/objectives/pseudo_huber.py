"""The pseudo-Huber consistency loss (iCT; VCT eq. 61)."""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import OBJECTIVES, ConsistencyObjective, squared_norm


class PseudoHuberDistance(Strict):
    """sqrt(||x - y||^2 + c^2) - c (VCT eq. 61, iCT); c = None means iCT's 0.00054 sqrt(d).

    ``per_element``: false (default, the papers' vector norm) or true, sum_j sqrt((x_j - y_j)^2 + c^2) - c
    (sony/vct models/ict.py ``pseudo_huber_loss``, summed over dimensions)."""

    name: Literal["pseudo_huber"] = "pseudo_huber"
    c: Optional[float] = Field(None, gt=0.0)
    per_element: bool = False


def default_pseudo_huber_c(dim: int) -> float:
    """iCT's pseudo-Huber constant c = 0.00054 sqrt(d) for data of dimension d."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber(cfg: PseudoHuberDistance, x: Tensor, y: Tensor) -> Tensor:
    """sqrt(||x - y||^2 + c^2) - c (VCT eq. 61), c = 0.00054 sqrt(d) unless given (iCT); with
    ``per_element`` sum_j sqrt((x_j - y_j)^2 + c^2) - c, as sony/vct's code computes it."""
    c = cfg.c if cfg.c is not None else default_pseudo_huber_c(x[0].numel())
    if cfg.per_element:
        return (torch.sqrt((x - y).flatten(1).pow(2) + c * c) - c).sum(dim=1)
    return torch.sqrt(squared_norm(x, y) + c * c) - c


@OBJECTIVES.register(PseudoHuberDistance)
class PseudoHuberObjective(ConsistencyObjective):
    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        return pseudo_huber(self.cfg, x, y)
