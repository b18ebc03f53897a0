"""The Guide's Gamma weighting."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..registry import Strict
from .base import WEIGHTINGS, Weighting


class GammaWeighting(Strict):
    """t^gamma e^{-lambda t} (Guide eq. 14; gamma = 1, lambda = 6 on CIFAR-10)."""

    name: Literal["gamma"] = "gamma"
    gamma: float = 1.0
    lam: float = 6.0


@WEIGHTINGS.register(GammaWeighting)
class Gamma(Weighting):
    """The Guide's Gamma weight t^gamma e^{-lambda t} (Guide eq. 14)."""

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        return t ** self.cfg.gamma * torch.exp(-self.cfg.lam * t)
