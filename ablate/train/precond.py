"""Time preconditioning c(t): the time input the network sees."""
from __future__ import annotations

import torch
from torch import Tensor

from .kernels import Kernel
from .registry import Registry

PRECONDITIONERS: Registry = Registry("time preconditioning")


@PRECONDITIONERS.register("kernel")
def kernel_time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    """The kernel's own c_noise (250 log t for VE/LI/bridge, 1000 t for FM)."""
    return kernel.c_noise(t)


@PRECONDITIONERS.register("identity")
def identity_time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = t (Guide Table 7c baseline)."""
    return t


@PRECONDITIONERS.register("linear")
def linear_time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = scale t (IMM's 1000 t; Guide Table 7c)."""
    return cfg.scale * t


@PRECONDITIONERS.register("exponential")
def exponential_time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = (e^{mu t} - 1) / mu = K int dt / h(t) + C for h = eps e^{-mu t}, with K = eps and
    C = -1/mu so that c(t)/t -> 1 as t -> 0 (Guide eq. 9, App. C.4 eq. 37)."""
    return torch.expm1(cfg.mu * t) / cfg.mu


def time_input(cfg, t: Tensor, kernel: Kernel) -> Tensor:
    return PRECONDITIONERS.get(cfg.name)(cfg, t, kernel)
