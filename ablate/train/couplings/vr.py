"""Variance-reduced consistency target (SCT Sec. 4.1, eqs. 13-14)."""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import expand_as
from ..registry import Strict
from .base import COUPLINGS, Coupling, CouplingContext, Pair


def posterior_weights(x_t: Tensor, a_t: Tensor, b_t: Tensor, references: Tensor,
                      same_class: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Tensor:
    """W_ij = p(x_t^i | x0^j) / sum_k p(x_t^i | x0^k) (SCT eq. 14) for the kernel p(x_t | x0) =
    N(a_t x0, b_t^2 I) of Gaussian noise; rows sum to one. ``same_class`` (B, M) restricts each row to
    its own class (SCT eq. 13, conditional case); ``valid`` (M,) masks unused reference slots."""
    x_flat, ref_flat = x_t.flatten(1).float(), references.flatten(1).float()
    a, b2 = a_t.float().view(-1, 1), b_t.float().view(-1, 1) ** 2
    # -||x_t - a x0_j||^2 / (2 b^2) up to the row constant ||x_t||^2, which the softmax removes
    logits = (2.0 * a * (x_flat @ ref_flat.T) - a ** 2 * ref_flat.pow(2).sum(dim=1)[None]) / (2.0 * b2)
    if same_class is not None:
        logits = logits.masked_fill(~same_class, float("-inf"))
    if valid is not None:
        logits = logits.masked_fill(~valid[None], float("-inf"))
    return torch.softmax(logits, dim=1)


class VROptions(Strict):
    """Variance-reduced target (SCT eqs. 13-14): the conditional target averaged over a reference set
    of the batch plus ``buffer`` past data points, weights proportional to p(x_t | x0_j)."""

    name: Literal["vr"] = "vr"
    buffer: int = Field(0, ge=0)


@COUPLINGS.register(VROptions)
class VarianceReducedTarget(Coupling):
    """Independent pairs with the variance-reduced target point (SCT eq. 14).

    The one-sample conditional estimate at x_t, x0 (and eps = (x_t - a_t x0) / b_t), is replaced by its
    self-normalised average over a reference set {x0_j}: x0_bar = sum_j W_j x0_j, eps_bar = (x_t - a_t
    x0_bar) / b_t, and x_r = a_r x0_bar + b_r eps_bar. Every kernel here is linear in t, so this is the
    Euler step x_t + (r - t) v_bar with the averaged conditional velocity v_bar. The weights assume
    Gaussian noise p_z = N(0, I). Class-conditional data average within class (SCT eq. 13). The
    reference set is the batch plus, with ``buffer`` > 0, the last ``buffer`` data points seen in
    training (a ring buffer saved in checkpoints). Logs ``vr_ess``, the mean effective number of
    references 1 / sum_j W_j^2.
    """

    logs = ("vr_ess",)

    def __init__(self, cfg, kernel, data_shape, iterations, num_classes=0):
        super().__init__(cfg, kernel, data_shape, iterations, num_classes)
        size = cfg.buffer
        self.register_buffer("ref_x", torch.zeros(size, *data_shape))
        self.register_buffer("ref_y", torch.zeros(size, dtype=torch.long))
        self.register_buffer("ref_batches", torch.zeros((), dtype=torch.long))
        self._pending: Optional[tuple[Tensor, Optional[Tensor]]] = None

    def _references(self, x0: Tensor, labels: Optional[Tensor]):
        if self.cfg.buffer == 0:
            return x0, labels, None
        per_batch = min(x0.shape[0], self.cfg.buffer)
        slots = torch.arange(self.cfg.buffer, device=x0.device)
        valid = torch.cat([torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device),
                           slots < self.ref_batches * per_batch])
        refs = torch.cat([x0, self.ref_x.to(x0.dtype)])
        ref_labels = None if labels is None else torch.cat([labels, self.ref_y])
        return refs, ref_labels, valid

    def points(self, pair: Pair, ctx: CouplingContext) -> tuple[Tensor, Tensor]:
        x0, k = pair.x0, self.kernel
        x_t = k.interpolate(x0, pair.x1, ctx.t)
        refs, ref_labels, valid = self._references(x0, ctx.class_labels)
        same_class = None if ctx.class_labels is None else ctx.class_labels[:, None] == ref_labels[None]
        weights = posterior_weights(x_t, k.a(ctx.t), k.b(ctx.t), refs, same_class, valid)
        x0_bar = (weights @ refs.flatten(1).float()).view_as(x0).to(x0.dtype)
        eps_bar = (x_t - expand_as(k.a(ctx.t), x0) * x0_bar) / expand_as(k.b(ctx.t), x0)
        x_r = k.interpolate(x0_bar, eps_bar, ctx.r)
        pair.logs["vr_ess"] = (1.0 / weights.pow(2).sum(dim=1)).mean().detach()
        self._pending = (x0.detach(), ctx.class_labels)
        return x_t, x_r

    @torch.no_grad()
    def after_step(self) -> None:
        """Write the step's data points into the reference ring buffer."""
        if self.cfg.buffer == 0 or self._pending is None:
            return
        x0, labels = self._pending
        per_batch = min(x0.shape[0], self.cfg.buffer)
        slots = (self.ref_batches * per_batch + torch.arange(per_batch, device=x0.device)) % self.cfg.buffer
        self.ref_x.index_copy_(0, slots, x0[-per_batch:].to(self.ref_x.dtype))
        if labels is not None:
            self.ref_y.index_copy_(0, slots, labels[-per_batch:])
        self.ref_batches += 1
        self._pending = None
