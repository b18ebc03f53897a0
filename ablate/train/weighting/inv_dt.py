"""The iCT weighting 1 / (t - r)."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..registry import Strict
from .base import WEIGHTINGS, Weighting


class InvDtWeighting(Strict):
    name: Literal["inv_dt"] = "inv_dt"


@WEIGHTINGS.register(InvDtWeighting)
class InvDt(Weighting):
    """lambda(t_i) = 1 / (t_{i+1} - t_i) (iCT; VCT eq. 60)."""

    is_inverse_dt = True

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        return 1.0 / (t - r)
