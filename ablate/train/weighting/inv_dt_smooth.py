"""SCT's smoothed inverse-gap weighting."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import WEIGHTINGS, Weighting


class InvDtSmoothWeighting(Strict):
    """1 / (t - r + delta) (SCT Sec. 4.2); SCT gives no value for delta."""

    name: Literal["inv_dt_smooth"] = "inv_dt_smooth"
    delta: float = Field(1e-3, gt=0.0)


@WEIGHTINGS.register(InvDtSmoothWeighting)
class InvDtSmooth(Weighting):
    """1 / (t - r + delta) <= 1 / delta (SCT Sec. 4.2)."""

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        return 1.0 / (t - r + self.cfg.delta)
