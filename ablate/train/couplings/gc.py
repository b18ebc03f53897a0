"""Generator-induced coupling (GC Alg. 1, Sec. 5.2): noise paired with the model's own endpoint prediction."""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor

from ..registry import Strict
from .base import COUPLINGS, Coupling, CouplingContext, Pair


class GCOptions(Strict):
    """Generator-induced coupling (GC Alg. 1) mixed with independent pairs at rate mu (GC Sec. 5.2);
    ``mu_end`` schedules mu linearly from ``mu`` to ``mu_end`` over training.

    ``induced_fraction``: ``mu`` (default, GC Sec. 5.2: "drawn from GC with probability mu") or
    ``one_minus_mu`` (the released code, train_consistency.py: ``rand > mu`` marks the induced pairs)."""

    name: Literal["gc"] = "gc"
    mu: float = Field(0.5, ge=0.0, le=1.0)
    mu_end: Optional[float] = Field(None, ge=0.0, le=1.0)
    generator: Literal["ema", "online"] = "ema"
    induced_fraction: Literal["mu", "one_minus_mu"] = "mu"


@COUPLINGS.register(GCOptions)
class GeneratorCoupling(Coupling):
    """GC Alg. 1 mixed with independent pairs (GC Sec. 5.2).

    Per sample, with probability p, the data endpoint is replaced by x_hat = sg(f(x_r, r)), the
    prediction of the EMA (default, GC Sec. 5.2) or online model at the *lower* time of the pair
    (Alg. 1 lines 5-6: x_i = x + sigma_i z), and both training points are rebuilt from (x_hat, z) with
    the same kernel (line 7). p = mu (``induced_fraction`` ``mu``: GC Sec. 5.2's text, "training pairs
    are drawn from GC with probability mu") or p = 1 - mu (``one_minus_mu``: the released code,
    train_consistency.py, marks the induced pairs with ``rand > mu``). mu is constant, or linear from
    ``mu`` to ``mu_end`` over training. With p = 0 at a step nothing is drawn, so GC(p = 0) is
    bit-identical to the independent coupling. Logs ``gc_fraction``, the realised fraction of
    generator-induced pairs.
    """

    logs = ("gc_fraction",)

    def mu_at(self, step: int) -> float:
        start, end = self.cfg.mu, self.cfg.mu_end
        if end is None:
            return start
        return start + (end - start) * min(step / max(self.iterations, 1), 1.0)

    def induced_probability(self, step: int) -> float:
        """p: the probability that a pair is generator-induced at step k."""
        mu = self.mu_at(step)
        return mu if self.cfg.induced_fraction == "mu" else 1.0 - mu

    def pair(self, x0: Tensor, x1: Tensor, ctx: CouplingContext) -> Pair:
        p = self.induced_probability(ctx.step)
        if p == 0.0:
            return Pair(x0, x1, logs={"gc_fraction": torch.zeros((), device=x0.device)})
        induced = torch.rand(x0.shape[0], device=x0.device) < p
        generator = ctx.ema if self.cfg.generator == "ema" else ctx.online
        with torch.no_grad():
            x_r = self.kernel.interpolate(x0, x1, ctx.r)
            x_hat = generator(x_r, ctx.r, class_labels=ctx.class_labels).to(x0.dtype)
        mask = induced.view(-1, *([1] * (x0.dim() - 1)))
        return Pair(torch.where(mask, x_hat, x0), x1, logs={"gc_fraction": induced.float().mean()})
