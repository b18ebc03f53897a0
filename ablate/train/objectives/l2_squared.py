"""The squared-L2 consistency loss ||x - y||^2 (Song et al. 2023)."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..registry import Strict
from .base import OBJECTIVES, ConsistencyObjective, squared_norm


class SquaredL2Distance(Strict):
    """||f_theta - f_target||^2 per sample."""

    name: Literal["l2_squared"] = "l2_squared"


@OBJECTIVES.register(SquaredL2Distance)
class SquaredL2Objective(ConsistencyObjective):
    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        return squared_norm(x, y)
