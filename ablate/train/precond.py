"""Time preconditioning c(t): the time input the network sees."""
from __future__ import annotations

from torch import Tensor

from .kernels import Kernel
from .registry import Registry

PRECONDITIONERS: Registry = Registry("time preconditioning")


@PRECONDITIONERS.register("kernel")
def kernel_time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    """The kernel's own c_noise (250 log t for VE/LI/bridge, 1000 t for FM)."""
    return kernel.c_noise(t)


def time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    return PRECONDITIONERS.get(cfg.name)(cfg, t, kernel)
