"""Training diagnostics: the variance of the gradient estimate (design.md Sec. 6; VCT Fig. 3; GC Sec. 4.2 (i)).

At a diagnostics step the batch of the current step is split into K equal microbatches; each is a full
training loss (own noise, times and coupling, through ``Trainer.loss_terms``) and gives one flattened
gradient g_k of the consistency model's parameters. Reported:

- ``grad_var``: mean over parameters p of the unbiased variance of g_k[p] across the K microbatches,
  divided by K, i.e. the variance of the full-batch estimate (mean of the K microbatch gradients);
- ``grad_norm``: ||mean_k g_k||;
- ``grad_var_pooled``: VCT's form, the variance of all entries of that one full-batch gradient pooled;
- ``diag_s``: the seconds the diagnostics took.

The training RNG streams are forked (nothing drawn here changes training) and gradients come from
``torch.autograd.grad``, so no ``.grad`` is left in the parameters.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .trainer import Trainer

DIAGNOSTIC_KEYS = ("grad_var", "grad_norm", "grad_var_pooled", "diag_s")


class MicrobatchOrder:
    """The k-th of K equal slices of another batch order's batches."""

    def __init__(self, order, part: int, parts: int):
        self.order, self.part, self.parts = order, part, parts

    def indices(self, step: int) -> Tensor:
        idx = self.order.indices(step)
        size = idx.shape[0] // self.parts
        return idx[self.part * size:(self.part + 1) * size]


def gradient_statistics(grads: Tensor) -> dict[str, Tensor]:
    """Statistics of K flattened microbatch gradients ``grads`` of shape (K, P) (see module doc)."""
    parts = grads.shape[0]
    mean = grads.mean(dim=0)
    return {"grad_var": grads.var(dim=0, unbiased=True).mean() / parts,
            "grad_norm": mean.norm(),
            "grad_var_pooled": mean.var(unbiased=True)}


def microbatch_gradients(trainer: "Trainer", parts: int) -> Tensor:
    """(K, P) flattened gradients of the online parameters, one per microbatch of the current batch."""
    params = [p for p in trainer.online.parameters() if p.requires_grad]
    full_order = trainer.batches
    rows = []
    try:
        for part in range(parts):
            trainer.batches = MicrobatchOrder(full_order, part, parts)
            loss, _ = trainer.loss_terms()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten().float()
                                   for p, g in zip(params, grads)]))
    finally:
        trainer.batches = full_order
    return torch.stack(rows)


def gradient_diagnostics(trainer: "Trainer") -> dict[str, float]:
    """The diagnostics of the module doc at the trainer's current step, as host floats."""
    parts = trainer.cfg.log.diag_microbatches
    if trainer.cfg.train.batch_size < 2 * parts:
        raise ValueError(f"log.diag_microbatches={parts} needs train.batch_size >= {2 * parts} "
                         f"(got {trainer.cfg.train.batch_size})")
    tick = time.perf_counter()
    cuda = trainer.device.type == "cuda"
    with torch.random.fork_rng(devices=[trainer.device] if cuda else []):
        stats = gradient_statistics(microbatch_gradients(trainer, parts))
    out = dict(zip(stats, torch.stack(list(stats.values())).tolist()))
    out["diag_s"] = time.perf_counter() - tick
    return out
