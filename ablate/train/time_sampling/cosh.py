"""The Guide's cosh time density (Guide eq. 16)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import model_validator

from ..registry import Strict
from .base import TIME_SAMPLERS, UnitIntervalSampler


class CoshSampling(Strict):
    """p_cosh(t; a, b) on the unit interval, scaled to [lo, hi] (Guide eq. 16, sampled by eq. 42;
    a = 1.5, b = 0 in Table 7g). ``divide_by_pdf`` as for ``sine``."""

    name: Literal["cosh"] = "cosh"
    a: float = 1.5
    b: float = 0.0
    divide_by_pdf: bool = True

    @model_validator(mode="after")
    def _shape(self) -> "CoshSampling":
        if self.a == self.b:
            raise ValueError(f"cosh needs a != b, got a = b = {self.a}")
        return self


@TIME_SAMPLERS.register(CoshSampling)
class CoshSampler(UnitIntervalSampler):
    """p_cosh(u; a, b) = (a - b) / (sinh a - sinh b) cosh(a u + b (1 - u)) (Guide eq. 16); inverse CDF
    u = [arcsinh(sinh b + v (sinh a - sinh b)) - b] / (a - b) (eq. 42)."""

    def unit_pdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        return (a - b) / (math.sinh(a) - math.sinh(b)) * torch.cosh(a * u + b * (1.0 - u))

    def unit_cdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        return (torch.sinh((a - b) * u + b) - math.sinh(b)) / (math.sinh(a) - math.sinh(b))

    def unit_inverse_cdf(self, v):
        a, b = self.cfg.a, self.cfg.b
        return (torch.asinh(math.sinh(b) + v * (math.sinh(a) - math.sinh(b))) - b) / (a - b)
