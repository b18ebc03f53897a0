"""The classic upper limit s = t0 (Song et al. 2023)."""
from __future__ import annotations

from typing import Literal

from ..registry import Strict
from .base import UPPER_LIMITS, UpperLimit


class CUOptions(Strict):
    """CU: the consistency function maps to s = t0 (classic CM)."""

    name: Literal["cu"] = "cu"


@UPPER_LIMITS.register(CUOptions)
class ClassicUpperLimit(UpperLimit):
    """s = t0: the model is f(x_t, t) (Song et al. 2023)."""

    dual_time = False

    def draw(self, n, step, discretization, sampler, device):
        t, r = discretization.sample_pair(n, step, sampler, device)
        return t, r, None
