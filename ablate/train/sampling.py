"""Few-step samplers: restart (iCT multistep; VCT App. C.2, Alg. 2) and pushforward (Guide G.1)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from .couplings import Coupling
from .model import ConsistencyFunction
from .registry import Registry

SAMPLERS: Registry = Registry("sampler")


@SAMPLERS.register("multistep")
@torch.no_grad()
def multistep_sample(model: ConsistencyFunction, x1: Tensor, mid_times: list[float],
                     coupling: Coupling | None = None, fresh_noise=None,
                     class_labels: Tensor | None = None, eta: float = 1.0) -> Tensor:
    """x0 = f(x_T, T); then for each intermediate time tau: x_tau = a_tau x0 + b_tau z, x0 = f(x_tau, tau).

    ``len(mid_times) + 1`` steps: the restart sampler of CU models (Guide G.1). z is fresh noise from
    ``fresh_noise(x0)``, passed through the coupling's ``sampling_noise`` hook (VC re-noises with its
    encoder, VCT Alg. 2). ``eta`` is unused (pushforward's edge skipping).
    """
    kernel = model.kernel
    n = x1.shape[0]
    t = torch.full((n,), kernel.t_max, device=x1.device)
    s = torch.full_like(t, kernel.t_min) if model.dual_time else None  # VU/phased models: map to t0
    x0 = model(kernel.prior_sample(x1), t, s, class_labels=class_labels)
    for tau in mid_times:
        z = fresh_noise(x0) if fresh_noise is not None else torch.randn_like(x0)
        if coupling is not None:
            z = coupling.sampling_noise(x0, z)
        t = torch.full((n,), float(tau), device=x1.device)
        x0 = model(kernel.interpolate(x0, z, t), t, s, class_labels=class_labels)
    return x0


@SAMPLERS.register("pushforward")
@torch.no_grad()
def pushforward_sample(model: ConsistencyFunction, x1: Tensor, mid_times: list[float],
                       coupling: Coupling | None = None, fresh_noise: Optional[Callable] = None,
                       class_labels: Tensor | None = None, eta: float = 1.0) -> Tensor:
    """Deterministic jumps along the ODE: x <- g(x, tau_i, tau_{i+1}) through tT > eta tau_1 > ... >
    eta tau_k > t0 (pushforward sampling of VU models, Guide G.1; edge skipping with eta < 1, SCT
    eq. 20). Needs a model that takes the upper limit s."""
    kernel = model.kernel
    n = x1.shape[0]
    times = [kernel.t_max] + [eta * float(tau) for tau in mid_times] + [kernel.t_min]
    x = kernel.prior_sample(x1)
    for start, end in zip(times[:-1], times[1:]):
        t = torch.full((n,), start, device=x1.device)
        s = torch.full((n,), end, device=x1.device)
        x = model(x, t, s, class_labels=class_labels)
    return x


def sample_with(name: str, model: ConsistencyFunction, x1: Tensor, mid_times: list[float],
                coupling: Coupling | None = None, fresh_noise=None,
                class_labels: Tensor | None = None, eta: float = 1.0) -> Tensor:
    return SAMPLERS.get(name)(model, x1, mid_times, coupling, fresh_noise, class_labels, eta)
