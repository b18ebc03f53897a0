"""Forward kernels: one module per kernel (its formulas and its facts: default time range, unit time,
unshifted scalings), registered in :data:`.base.KERNELS`. The kernels share one options class,
:class:`KernelConfig`, whose ``name`` values are the registered kernels."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from ..registry import Strict
from .base import KERNELS, Kernel, expand_as
from . import ve, li, fm, bridge  # noqa: F401  (register the kernels, in this order)


class KernelConfig(Strict):
    """Forward kernel x_t = a_t x0 + b_t x1 on t in [sigma_min, sigma_max] (None = the kernel's
    ``default_range``).

    ``train_scalings`` (``ve``, ``li``): ``shifted`` (default, the papers: c_skip, c_out in the boundary
    form with t - sigma_min, f(x, sigma_min) = x; Song et al. 2023 App. C, VCT eqs. 39-40) in training and
    sampling; ``unshifted`` trains with EDM's c_skip, c_out (t in place of t - sigma_min) and samples
    with the shifted ones, as ECT's and VCT's ECM code do (locuslab/ect training/networks.py ECMPrecond,
    sony/vct models/ecm.py with kernels/*.py ``get_scaling_factors``)."""

    name: Literal[tuple(e.name for e in KERNELS.entries())] = "ve"
    sigma_min: Optional[float] = Field(None, gt=0.0)
    sigma_max: Optional[float] = Field(None, gt=0.0)
    sigma_data: float = Field(0.5, gt=0.0)
    train_scalings: Literal["shifted", "unshifted"] = "shifted"

    @model_validator(mode="after")
    def _fill_range(self) -> "KernelConfig":
        kernel = KERNELS.get(self.name)
        lo, hi = kernel.default_range
        if self.sigma_min is None:
            object.__setattr__(self, "sigma_min", lo)
        if self.sigma_max is None:
            object.__setattr__(self, "sigma_max", hi)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if kernel.unit_time and self.sigma_max > 1.0:
            raise ValueError(f"kernel {self.name!r} runs on t in (0, 1]: sigma_max must be <= 1")
        if self.train_scalings == "unshifted" and not kernel.has_unshifted:
            with_unshifted = [e.name for e in KERNELS.entries() if e.impl.has_unshifted]
            raise ValueError(f"train_scalings='unshifted' (EDM's c_skip, c_out, as ECT's code trains) exists "
                             f"for kernels {' and '.join(map(repr, with_unshifted))} only, "
                             f"got name={self.name!r}")
        return self


def build_kernel(cfg: KernelConfig) -> Kernel:
    return KERNELS.get(cfg.name)(cfg)


__all__ = ["KERNELS", "Kernel", "KernelConfig", "build_kernel", "expand_as"]
