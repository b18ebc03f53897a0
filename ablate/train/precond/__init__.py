"""Time preconditioning c(t): the time input the network sees. One module per choice (options and
function), registered in :data:`.base.PRECONDITIONERS`."""
from __future__ import annotations

from torch import Tensor

from ..kernels import Kernel
from .base import PRECONDITIONERS
from . import kernel, identity, linear, exponential, log  # noqa: F401  (register, in this order)


def time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    return PRECONDITIONERS.get(cfg.name)(cfg, t, kernel)


__all__ = ["PRECONDITIONERS", "time_input"]
