"""Time input: c(t) = (e^{mu t} - 1) / mu (Guide eq. 9, App. C.4), uniform resolution for h = eps e^{-mu t}."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import PRECONDITIONERS


class ExponentialTimeInput(Strict):
    """c(t) = (e^{mu t} - 1) / mu (Guide eq. 9, App. C.4), uniform resolution for h = eps e^{-mu t}."""

    name: Literal["exponential"] = "exponential"
    mu: float = Field(3.5, gt=0.0)


@PRECONDITIONERS.register(ExponentialTimeInput)
def exponential_time_input(cfg: ExponentialTimeInput, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = (e^{mu t} - 1) / mu = K int dt / h(t) + C for h = eps e^{-mu t}, with K = eps and
    C = -1/mu so that c(t)/t -> 1 as t -> 0 (Guide eq. 9, App. C.4 eq. 37)."""
    return torch.expm1(cfg.mu * t) / cfg.mu
