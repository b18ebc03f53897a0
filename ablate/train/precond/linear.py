"""Time input: c(t) = scale * t (IMM's 1000 t, Guide Table 7c)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import PRECONDITIONERS


class LinearTimeInput(Strict):
    """c(t) = scale * t (IMM's 1000 t, Guide Table 7c)."""

    name: Literal["linear"] = "linear"
    scale: float = Field(1000.0, gt=0.0)


@PRECONDITIONERS.register(LinearTimeInput)
def linear_time_input(cfg: LinearTimeInput, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = scale t (IMM's 1000 t; Guide Table 7c)."""
    return cfg.scale * t
