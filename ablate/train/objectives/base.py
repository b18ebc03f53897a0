"""The objective axis (config section ``distance``): what one training batch's loss is.

Every objective is called the same way, ``objective(online, target, batch) -> loss``, with a
:class:`LossBatch` (the paired endpoints, the two training points, the times and the per-sample
weight). An objective runs the forwards it needs (the target forward reuses the online forward's
dropout masks, :func:`paired_forwards`) and reduces them to a scalar:

- :class:`ConsistencyObjective`: mean_i w_i d(f_theta(x_{t_i}, t_i), sg f_target(x_{r_i}, r_i)) with a
  per-sample distance d (VCT eq. 60; iCT, ECT, VCT);
- :class:`VelocityObjective`: the Guide's losses on the velocity parametrisation
  g(x_t, t, s) = x_t + (s - t) F(x_t, t, s) (Guide eq. 3), written with the network outputs F
  (:class:`GuideTerms`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

import torch
from torch import Tensor, nn

from ..kernels import Kernel
from ..registry import Registry

OBJECTIVES: Registry[type["Objective"]] = Registry("distance")

A, B = TypeVar("A"), TypeVar("B")


@dataclass
class LossBatch:
    """One batch: endpoints (x0, x1) as paired by the coupling, the training points x_t, x_r, times
    s <= r < t (s None: the classic s = t_min), the weight w(t, r) (times 1/p(t) where the time
    sampler asks) and the class labels."""

    x0: Tensor
    x1: Tensor
    x_t: Tensor
    x_r: Tensor
    t: Tensor
    r: Tensor
    s: Optional[Tensor]
    weight: Tensor
    class_labels: Optional[Tensor] = None


def paired_forwards(device: torch.device, online_pass: Callable[[], A],
                    target_pass: Callable[[], B]) -> tuple[A, B]:
    """Run ``online_pass``, then ``target_pass`` without gradients on the same CPU *and* CUDA RNG state
    (the same dropout masks); the RNG continues from after the online pass."""
    cuda = device.type == "cuda"
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if cuda else None
    online_out = online_pass()
    with torch.random.fork_rng(devices=[device] if cuda else []), torch.no_grad():
        torch.set_rng_state(cpu_rng)
        if cuda:
            torch.cuda.set_rng_state(cuda_rng, device)
        target_out = target_pass()
    return online_out, target_out


class Objective:
    """Base: ``cfg`` is the choice's options; forwards run inside ``autocast()`` (mixed precision),
    the loss itself outside it."""

    #: compares velocities F of the Guide's parametrisation: needs a velocity kernel (``fm``)
    needs_velocity_kernel = False

    def __init__(self, cfg, kernel: Kernel, autocast: Callable[[], AbstractContextManager] = nullcontext):
        self.cfg, self.kernel, self.autocast = cfg, kernel, autocast

    @property
    def time_group(self) -> int:
        """How many consecutive samples share one draw of (t, r, s) (1: every sample its own)."""
        return 1

    def __call__(self, online: nn.Module, target: nn.Module, batch: LossBatch) -> Tensor:
        raise NotImplementedError


class ConsistencyObjective(Objective):
    """mean_i w_i d(f_theta(x_{t_i}, t_i), sg f_target(x_{r_i}, r_i)) (VCT eq. 60); subclasses give d."""

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample distance, shape (B,)."""
        raise NotImplementedError

    def __call__(self, online, target, batch):
        b, y = batch, batch.class_labels
        with self.autocast():
            f_t, f_r = paired_forwards(b.x_t.device, lambda: online(b.x_t, b.t, b.s, class_labels=y),
                                       lambda: target(b.x_r, b.r, b.s, class_labels=y))
        return (b.weight * self.distance(f_t.float(), f_r.float())).mean()


@dataclass
class GuideTerms:
    """One batch of the Guide's losses: states, times (s <= r < t), the weight w(t) (times 1/p(t) where
    asked), the velocity target u_t = alpha'_t x + sigma'_t z, the online output F_theta(x_t, t, s) and
    the stop-gradient target outputs F_-(x_t, t, s), F_-(x_r, r, s)."""

    x_t: Tensor
    x_r: Tensor
    t: Tensor
    r: Tensor
    s: Tensor
    weight: Tensor
    u_t: Tensor
    v_t: Tensor
    v_t_target: Tensor
    v_r_target: Tensor


class VelocityObjective(Objective):
    """The Guide's losses: the online velocity F_theta(x_t, t, s) and the target's F_-(x_r, r, s),
    F_-(x_t, t, s) (the online output itself, detached, when the target is the online network);
    s = t_min for a classic model. Subclasses give :meth:`loss` of the :class:`GuideTerms`."""

    needs_velocity_kernel = True

    def loss(self, terms: GuideTerms) -> Tensor:
        raise NotImplementedError

    def __call__(self, online, target, batch):
        b, y = batch, batch.class_labels
        s = torch.full_like(b.t, self.kernel.t_min) if b.s is None else b.s

        def target_pass() -> tuple[Tensor, Optional[Tensor]]:
            v_r = target.velocity(b.x_r, b.r, s, class_labels=y)
            return v_r, None if target is online else target.velocity(b.x_t, b.t, s, class_labels=y)

        with self.autocast():
            v_t, (v_r_target, v_t_target) = paired_forwards(
                b.x_t.device, lambda: online.velocity(b.x_t, b.t, s, class_labels=y), target_pass)
        v_t_target = v_t.detach() if v_t_target is None else v_t_target
        # fm: u_t = alpha'_t x + sigma'_t z = z - x (Guide Sec. 2.2)
        return self.loss(GuideTerms(b.x_t.float(), b.x_r.float(), b.t, b.r, s, b.weight,
                                    (b.x1 - b.x0).float(), v_t, v_t_target, v_r_target))


def row_norm(x: Tensor) -> Tensor:
    """||x||_2 over the non-batch dimensions; the gradient at 0 is 0."""
    return torch.sqrt(x.flatten(1).pow(2).sum(dim=1) + torch.finfo(x.dtype).tiny)


def squared_norm(x: Tensor, y: Tensor) -> Tensor:
    """||x - y||^2 over the non-batch dimensions."""
    return (x - y).flatten(1).pow(2).sum(dim=1)
