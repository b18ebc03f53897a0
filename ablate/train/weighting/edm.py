"""EDM's weighting."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..registry import Strict
from .base import WEIGHTINGS, Weighting


class EDMWeighting(Strict):
    name: Literal["edm"] = "edm"


@WEIGHTINGS.register(EDMWeighting)
class Edm(Weighting):
    """EDM's lambda(t) = 1/t^2 + 1/sigma_data^2 (VCT Sec. 6.2)."""

    def __call__(self, t: Tensor, r: Tensor) -> Tensor:
        return 1.0 / t ** 2 + 1.0 / self.kernel.sigma_data ** 2
