"""Multistep consistency sampling (iCT; VCT App. C.2 and Alg. 2)."""
from __future__ import annotations

import torch
from torch import Tensor

from .couplings import Coupling
from .model import ConsistencyFunction


@torch.no_grad()
def multistep_sample(model: ConsistencyFunction, x1: Tensor, mid_times: list[float],
                     coupling: Coupling | None = None, fresh_noise=None,
                     class_labels: Tensor | None = None) -> Tensor:
    """x0 = f(x_T, T); then for each intermediate time tau: x_tau = a_tau x0 + b_tau z, x0 = f(x_tau, tau).

    ``len(mid_times) + 1`` steps. z is fresh noise from ``fresh_noise(x0)``, passed through the
    coupling's ``sampling_noise`` hook (VC re-noises with its encoder, VCT Alg. 2).
    """
    kernel = model.kernel
    n = x1.shape[0]
    t = torch.full((n,), kernel.t_max, device=x1.device)
    x0 = model(kernel.prior_sample(x1), t, class_labels=class_labels)
    for tau in mid_times:
        z = fresh_noise(x0) if fresh_noise is not None else torch.randn_like(x0)
        if coupling is not None:
            z = coupling.sampling_noise(x0, z)
        t = torch.full((n,), float(tau), device=x1.device)
        x0 = model(kernel.interpolate(x0, z, t), t, class_labels=class_labels)
    return x0
