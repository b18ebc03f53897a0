"""The uniform weighting."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..registry import Strict
from .base import WEIGHTINGS, Weighting


class UniformWeighting(Strict):
    name: Literal["uniform"] = "uniform"


@WEIGHTINGS.register(UniformWeighting)
class Uniform(Weighting):
    """w = 1."""

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        return torch.ones_like(t)
