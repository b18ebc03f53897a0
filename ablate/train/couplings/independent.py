"""The independent coupling q(x0) p(x1): the base :class:`.base.Coupling` as it is."""
from __future__ import annotations

from typing import Literal

from ..registry import Strict
from .base import COUPLINGS, Coupling


class IndependentOptions(Strict):
    """Data and noise drawn independently (iCT, ECT)."""

    name: Literal["independent"] = "independent"


COUPLINGS.register(IndependentOptions)(Coupling)
