"""The Guide's sine time density (Guide eq. 15)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import model_validator

from ..registry import Strict
from .base import TIME_SAMPLERS, UnitIntervalSampler


class SineSampling(Strict):
    """p_sine(t; a, b) on the unit interval, scaled to [lo, hi] (Guide eq. 15, sampled by eq. 41;
    a = 1, b = 0.01 is the Guide's default, Table 7g). ``divide_by_pdf`` divides the loss weight by
    the density so that the effective weight w(t) is kept (Guide Sec. 3.3)."""

    name: Literal["sine"] = "sine"
    a: float = 1.0
    b: float = 0.01
    divide_by_pdf: bool = True

    @model_validator(mode="after")
    def _shape(self) -> "SineSampling":
        if self.a == self.b or not (0.0 <= min(self.a, self.b) and max(self.a, self.b) <= 2.0):
            raise ValueError(f"sine needs a != b, both in [0, 2] (positive density), got a={self.a}, b={self.b}")
        return self


@TIME_SAMPLERS.register(SineSampling)
class SineSampler(UnitIntervalSampler):
    """p_sine(u; a, b) = pi (a - b) / (2 (cos(pi b/2) - cos(pi a/2))) sin(pi/2 (a u + b (1 - u)))
    (Guide eq. 15); inverse CDF u = 2/(pi (a - b)) [arccos(cos(pi b/2) - v (cos(pi b/2) -
    cos(pi a/2))) - pi b/2] (eq. 41)."""

    def _cos(self) -> tuple[float, float]:
        return math.cos(0.5 * math.pi * self.cfg.b), math.cos(0.5 * math.pi * self.cfg.a)

    def unit_pdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        return math.pi * (a - b) / (2.0 * (cos_b - cos_a)) * torch.sin(0.5 * math.pi * (a * u + b * (1.0 - u)))

    def unit_cdf(self, u):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        return (cos_b - torch.cos(0.5 * math.pi * ((a - b) * u + b))) / (cos_b - cos_a)

    def unit_inverse_cdf(self, v):
        a, b = self.cfg.a, self.cfg.b
        cos_b, cos_a = self._cos()
        inner = (cos_b - v * (cos_b - cos_a)).clamp(-1.0, 1.0)
        return 2.0 / (math.pi * (a - b)) * (torch.arccos(inner) - 0.5 * math.pi * b)
