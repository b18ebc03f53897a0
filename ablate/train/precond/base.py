"""The time-preconditioning registry: options -> c(t), the time input the network sees, as a function
``(cfg, t, kernel) -> Tensor``."""
from __future__ import annotations

from ..registry import Registry

PRECONDITIONERS: Registry = Registry("time preconditioning")
