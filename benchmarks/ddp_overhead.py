"""Steps per second of the digits UNet with 1 and 2 CPU workers, and the per-step overhead of the
data-parallel step (ablate.train.distributed) over the plain one at 1 worker.

    python benchmarks/ddp_overhead.py            # 3 interleaved repeats of 40 timed steps
    python benchmarks/ddp_overhead.py --quick    # smoke check

Measured, each with one torch thread per process (Ray Train gives each worker ``tune.resources.cpu``):

- ``plain``: the single-process trainer (``train.distributed.workers: 1``, no accumulation);
- ``sliced, 1 worker``: the same trainer with the data-parallel step of world size 1 forced on (global
  draws sliced, replayed RNG state, dropout masks drawn for the global batch): its cost over ``plain``
  is the overhead of the distributed path itself (target <= 1.05);
- ``2 workers``: two gloo processes (``torch.multiprocessing``, as Ray Train runs them but without Ray),
  batch 64 = 2 x 32, one gradient all-reduce per step. Ray Train's start-up (seconds per trial, not
  per step) is not included.

Steps per second are global optimizer steps (64 images each). Repeats are interleaved so that machine
noise hits every setting alike; medians are printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate.data import load_dataset
from ablate.train.config import build_config
from ablate.train.distributed import DataParallel
from ablate.train.trainer import Trainer

RAW = {"data": {"name": "digits"},
       "model": {"name": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "dropout": 0.1},
       "kernel": {"name": "ve", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5},
       "discretization": {"name": "ict", "s0": 10, "s1": 320}, "weighting": {"name": "inv_dt"},
       "train": {"batch_size": 64, "device": "cpu", "ema": [0.999], "lr": 5e-4},
       "eval": {"steps": [1], "extractor": "ablate-cnn"}}


def build(workers: int = 1) -> Trainer:
    cfg = build_config({**RAW, "train": {**RAW["train"], "distributed": {"workers": workers}}})
    return Trainer(cfg, load_dataset(cfg.data, cfg.train.seed), device=torch.device("cpu"))


def timed_steps(trainer: Trainer, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        trainer.train_step()
    tick = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - tick)


def single(sliced: bool, warmup: int, steps: int) -> float:
    trainer = build()
    if sliced:
        trainer.parallel = DataParallel(trainer, rank=0, world=1, accumulate=1)
    return timed_steps(trainer, warmup, steps)


def _worker(rank: int, init: str, warmup: int, steps: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    try:
        rate = timed_steps(build(workers=2), warmup, steps)
        if rank == 0:
            with open(out, "w") as f:
                f.write(str(rate))
    finally:
        dist.destroy_process_group()


def two_workers(warmup: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rate")
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), warmup, steps, out), nprocs=2, join=True)
        with open(out) as f:
            return float(f.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warmup, steps, repeats = (3, 5, 1) if args.quick else (5, 40, 3)
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {"plain": [], "sliced, 1 worker": [], "2 workers": []}
    for _ in range(repeats):
        rates["plain"].append(single(False, warmup, steps))
        rates["sliced, 1 worker"].append(single(True, warmup, steps))
        rates["2 workers"].append(two_workers(warmup, steps))
    med = {name: statistics.median(values) for name, values in rates.items()}
    print(f"digits UNet (16 ch, [1, 2], dropout 0.1), batch 64, {steps} steps x {repeats} repeats, "
          f"1 torch thread per process, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name, value in med.items():
        print(f"  {name:<18} {value:7.2f} steps/s   (repeats: {', '.join(f'{v:.2f}' for v in rates[name])})")
    print(f"  overhead of the distributed path at 1 worker: {med['plain'] / med['sliced, 1 worker']:.3f}x "
          "per step (target <= 1.05)")
    print(f"  speed-up of 2 workers over plain: {med['2 workers'] / med['plain']:.2f}x")


if __name__ == "__main__":
    main()
