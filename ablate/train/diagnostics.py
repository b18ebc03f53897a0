"""Training diagnostics: the variance of the gradient estimate (design.md Sec. 6; VCT Fig. 3; GC Sec. 4.2 (i)).

At a diagnostics step the batch of the current step is split into K equal microbatches; each is a full
training loss (own noise, times and coupling: the trainer passes a function k -> loss of microbatch k,
``Trainer.loss_terms`` on a :class:`MicrobatchOrder`) and gives one flattened gradient g_k of the
consistency model's parameters. Reported:

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
from typing import Callable, Sequence

import torch
from torch import Tensor

from .metric_table import metrics_of

#: the columns a diagnostics report adds (their entries in :mod:`.metric_table`)
DIAGNOSTIC_KEYS = metrics_of("diagnostics")


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


def microbatch_gradients(microbatch_loss: Callable[[int], Tensor], params: Sequence[Tensor],
                         parts: int) -> Tensor:
    """(K, P) flattened gradients of ``params``, one per microbatch loss ``microbatch_loss(k)``."""
    rows = []
    for part in range(parts):
        grads = torch.autograd.grad(microbatch_loss(part), params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten().float()
                               for p, g in zip(params, grads)]))
    return torch.stack(rows)


def gradient_diagnostics(microbatch_loss: Callable[[int], Tensor], params: Sequence[Tensor], parts: int,
                         device: torch.device) -> dict[str, float]:
    """The diagnostics of the module doc for ``parts`` microbatch losses, as host floats; the RNG
    streams of ``device`` (and the CPU's) are forked, so training draws the same numbers after."""
    tick = time.perf_counter()
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        stats = gradient_statistics(microbatch_gradients(microbatch_loss, params, parts))
    out = dict(zip(stats, torch.stack(list(stats.values())).tolist()))
    out["diag_s"] = time.perf_counter() - tick
    return out
