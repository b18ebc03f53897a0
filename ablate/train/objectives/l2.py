"""The L2 consistency loss ||x - y||_2."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..registry import Strict
from .base import OBJECTIVES, ConsistencyObjective, row_norm


class L2Distance(Strict):
    """||f_theta - f_target||_2 per sample."""

    name: Literal["l2"] = "l2"


@OBJECTIVES.register(L2Distance)
class L2Objective(ConsistencyObjective):
    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """||x - y||_2 (the gradient at x = y is defined as 0)."""
        return row_norm(x - y)
