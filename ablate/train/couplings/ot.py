"""Exact minibatch optimal-transport coupling (Pooladian et al. 2023; the OT baseline of VCT and GC)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..registry import Strict
from .base import COUPLINGS, Coupling, CouplingContext, Pair


def ot_permutation(x0: Tensor, x1: Tensor) -> Tensor:
    """Indices j(i) pairing x0[i] with x1[j(i)] by an exact OT plan between the two uniform batches,
    squared Euclidean cost (POT ``ot.emd``). With equal batch sizes the plan is a permutation."""
    import ot  # POT (and the scipy it loads) only where OT pairs are drawn, not for every config check
    cost = torch.cdist(x0.flatten(1).double(), x1.flatten(1).double()).pow(2).cpu().numpy()
    n = cost.shape[0]
    weights = np.full(n, 1.0 / n)
    plan = ot.emd(weights, weights, cost)
    return torch.from_numpy(plan.argmax(axis=1)).to(x1.device)


class OTOptions(Strict):
    """Exact minibatch OT (POT ``ot.emd``, squared Euclidean cost)."""

    name: Literal["ot"] = "ot"


@COUPLINGS.register(OTOptions)
class OTCoupling(Coupling):
    """Re-pairs the batch's noise with its data by exact minibatch OT before building (x_t, x_r)."""

    def pair(self, x0: Tensor, x1: Tensor, ctx: CouplingContext) -> Pair:
        return Pair(x0, x1[ot_permutation(x0, x1)])
