"""Optimisers and learning-rate schedules."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023), used by GC Sec. 5.1: c = b1 m + (1 - b1) g; p -= lr (sign(c) + wd p);
    m = b2 m + (1 - b2) g. Defaults b1 = 0.9, b2 = 0.99."""

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m: Tensor = state["exp_avg"]
                update = m.mul(b1).add_(p.grad, alpha=1 - b1).sign_()
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def build_optimizer(name: str, groups: list[dict], lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    if name == "radam":
        return torch.optim.RAdam(groups, lr=lr, betas=betas)
    if name == "lion":
        return Lion(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, radam, lion")


def inv_sqrt_factor(step: int, ref_steps: int) -> float:
    """alpha(i) / alpha_ref = 1 / sqrt(max(i / i_ref, 1)) (VCT eq. 63, ECM ImageNet)."""
    return 1.0 / max(step / ref_steps, 1.0) ** 0.5


def lr_factor(schedule: str, step: int, ref_steps: int) -> float:
    return 1.0 if schedule == "constant" else inv_sqrt_factor(step, ref_steps)
