"""Time input: c(t) = scale ln t (EDM's c_noise = ln(sigma) / 4, Karras et al. 2022 Table 1, which
sony/vct's networks use; iCT's 250 ln t is ``kernel`` on VE/LI)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import PRECONDITIONERS


class LogTimeInput(Strict):
    """c(t) = scale ln t: 0.25 is EDM's c_noise (Table 1) and VCT's code's; 250 is iCT's."""

    name: Literal["log"] = "log"
    scale: float = Field(0.25, gt=0.0)


@PRECONDITIONERS.register(LogTimeInput)
def log_time_input(cfg: LogTimeInput, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = scale ln t; every kernel's times are positive (``kernel.sigma_min`` > 0)."""
    return cfg.scale * torch.log(t)
