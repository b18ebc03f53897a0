"""Time input: c(t) = t (the Guide's naive baseline, Table 7c)."""
from __future__ import annotations

from typing import Literal

from torch import Tensor

from ..kernels import Kernel
from ..registry import Strict
from .base import PRECONDITIONERS


class IdentityTimeInput(Strict):
    """c(t) = t (the Guide's naive baseline, Table 7c)."""

    name: Literal["identity"] = "identity"


@PRECONDITIONERS.register(IdentityTimeInput)
def identity_time_input(cfg: IdentityTimeInput, t: Tensor, kernel: Kernel) -> Tensor:
    """c(t) = t (Guide Table 7c baseline)."""
    return t
