"""Per-step overhead of the shared Trainer over a bare PyTorch loop doing the same math.

    python benchmarks/trainer_overhead.py            # toy MLP on gmm2 and a small UNet on digits
    python benchmarks/trainer_overhead.py --quick    # smoke check (few steps, two repeats)

Both loops train iCT-LI (VCT App. A eqs. 12-14, Karras grid eq. 57, discrete lognormal eq. 59, 1/dt
weight eq. 60, pseudo-Huber eq. 61) with the same network, RAdam and EMA, and the dropout masks of the
online forward replayed in the target forward. The bare loop is written here in plain PyTorch; it skips
the trainer's logging (transport cost, loss accumulation). Repeats are interleaved A/B/A/B so that
machine noise hits both alike; medians and the ratio trainer / bare are printed (target <= 1.05).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch

from ablate.data import load_dataset
from ablate.train.config import build_config
from ablate.train.discretization.ict import ict_num_points
from ablate.train.trainer import Trainer

SETUPS = {
    "toy MLP (gmm2)": {
        "data": {"name": "gmm2"}, "model": {"name": "mlp", "hidden": 256, "depth": 4, "time_dim": 64},
        "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 0.1, "sigma_data": 0.5},
        "train": {"batch_size": 256}},
    "small UNet (digits)": {
        "data": {"name": "digits"},
        "model": {"name": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "dropout": 0.3},
        "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5},
        "train": {"batch_size": 64}},
}
COMMON = {"discretization": {"name": "ict", "s0": 10, "s1": 80}, "distance": {"name": "pseudo_huber"},
          "weighting": {"name": "inv_dt"}, "time_sampling": {"name": "lognormal"}, "eval": {"steps": [1]}}


class BareLoop:
    """iCT-LI written out in plain PyTorch, on a copy of the trainer's network and data."""

    def __init__(self, trainer: Trainer):
        cfg = trainer.cfg
        self.cfg, self.device = cfg, trainer.device
        self.x = trainer.data.x_train
        self.net = copy.deepcopy(trainer.online.backbone)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.params, self.ema_params = list(self.net.parameters()), list(self.ema.parameters())
        self.opt = torch.optim.RAdam(self.params, lr=cfg.train.lr, betas=cfg.train.betas)
        k = cfg.kernel
        self.s_min, self.s_max, self.sd = k.sigma_min, k.sigma_max, k.sigma_data
        self.c = 0.00054 * math.sqrt(self.x[0].numel())
        self.step = 0
        self._grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def grid_and_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.discretization
        n = ict_num_points(self.step, self.cfg.train.iterations, d.s0, d.s1)
        if n not in self._grids:
            i = torch.arange(n, dtype=torch.float64)
            lo, hi = self.s_min ** (1 / d.rho), self.s_max ** (1 / d.rho)
            grid = (lo + i / (n - 1) * (hi - lo)) ** d.rho
            ts = self.cfg.time_sampling
            cdf = torch.erf((torch.log(grid) - ts.p_mean) / (math.sqrt(2) * ts.p_std))
            probs = cdf[1:] - cdf[:-1]
            self._grids[n] = (grid.float().to(self.device), (probs / probs.sum()).float().to(self.device))
        return self._grids[n]

    def f(self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 1)
        c_in = torch.rsqrt(self.sd ** 2 * (1 - t / self.s_max) ** 2 + t ** 2)
        alpha = 1 - (t - self.s_min) / (self.s_max - self.s_min)
        c_skip = self.sd ** 2 * alpha / ((t - self.s_min) ** 2 + self.sd ** 2 * alpha ** 2)
        c_out = (t - self.s_min) * self.sd * c_in
        out = net(c_in.view(shape) * x, 250.0 * torch.log(t), None, None)
        return c_skip.view(shape) * x + c_out.view(shape) * out

    def train_step(self) -> None:
        n = self.cfg.train.batch_size
        x0 = self.x[torch.randint(len(self.x), (n,), device=self.device)]
        x1 = torch.randn_like(x0)
        grid, probs = self.grid_and_probs()
        i = torch.multinomial(probs, n, replacement=True)
        t, r = grid[i + 1], grid[i]
        shape = (-1,) + (1,) * (x0.dim() - 1)
        x_t = (1 - t / self.s_max).view(shape) * x0 + t.view(shape) * x1
        x_r = (1 - r / self.s_max).view(shape) * x0 + r.view(shape) * x1
        rng = torch.get_rng_state()
        f_t = self.f(self.net, x_t, t)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.set_rng_state(rng)  # same dropout masks in the target forward
            f_r = self.f(self.net, x_r, r)
        dist = torch.sqrt((f_t - f_r).flatten(1).pow(2).sum(1) + self.c ** 2) - self.c
        loss = (dist / (t - r)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - self.cfg.train.ema[0])
        self.step += 1


def seconds_per_step(step, n_steps: int) -> float:
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return (time.perf_counter() - start) / n_steps


def measure(name: str, raw: dict, steps: int, repeats: int) -> float:
    cfg = build_config({**raw, **COMMON, "train": {**raw["train"], "iterations": 10 ** 6, "device": "cpu",
                                                   "ema": [0.999]}})
    trainer = Trainer(cfg, load_dataset(cfg.data, cfg.train.seed))
    bare = BareLoop(trainer)
    seconds_per_step(trainer.train_step, 3), seconds_per_step(bare.train_step, 3)  # warm-up
    ours, theirs = [], []
    for _ in range(repeats):  # A/B/A/B
        ours.append(seconds_per_step(trainer.train_step, steps))
        theirs.append(seconds_per_step(bare.train_step, steps))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"| {name} | {1e3 * a:.2f} | {1e3 * b:.2f} | {a / b:.3f} |", flush=True)
    return a / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: 5 steps x 2 repeats")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per loop")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (5, 2) if args.quick else (args.steps, args.repeats)
    print("| setup | trainer ms/step | bare ms/step | ratio |\n|---|---|---|---|")
    for name, raw in SETUPS.items():
        measure(name, raw, steps, repeats)


if __name__ == "__main__":
    main()
