"""Time input: The kernel's own c_noise (EDM: 0.25 log sigma) as the network's time input."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import PRECONDITIONERS


class KernelTimeInput(Strict):
    """The kernel's own c_noise (EDM: 0.25 log sigma) as the network's time input."""

    name: Literal["kernel"] = "kernel"


@PRECONDITIONERS.register(KernelTimeInput)
def kernel_time_input(cfg: KernelTimeInput, t: Tensor, kernel: Kernel) -> Tensor:
    """The kernel's own c_noise (250 log t for VE/LI/bridge, 1000 t for FM)."""
    return kernel.c_noise(t)
