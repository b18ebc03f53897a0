"""Toy reproductions of the coupling papers' claims, and the per-step overhead of each coupling.

    python benchmarks/coupling_toys.py --seeds 0 1 2 --gc-iters 2000 --vc-iters 3000 --out runs/toys

1. GC vs IC (and OT) on ``gc_1m2m`` (GC Sec. 4.2, Fig. 2-3): gradient variance and transport cost.
2. VC (beta = 0.001) vs IC with iCT-LI on ``gmm2`` (VCT App. E, Fig. 1): 1-step W2 to held-out data,
   and a scatter plot of 1-step samples with their noise-to-sample lines (``vct_fig1.png``).
3. Seconds per training step of each coupling over ``independent`` on the ``gmm2`` config.
Prints markdown tables (mean +- std over seeds). An earlier hand-rolled study: the reproductions
(``searchspaces/repro/``, ``benchmarks/reproduce.py``, docs/reproductions.md) supersede its toy
results with the papers' settings, seeds and intervals; its per-coupling step costs remain useful.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import matplotlib
import torch

from ablate.data import load_dataset
from ablate.metrics import w2_distance
from ablate.train.config import load_config
from ablate.train.trainer import Trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "toy"


def train(config: str, seed: int, iterations: int) -> tuple[Trainer, list[dict]]:
    cfg = load_config(CONFIGS / config, {"train.seed": seed, "train.iterations": iterations,
                                         "eval.every": iterations})
    rows: list[dict] = []
    trainer = Trainer(cfg, load_dataset(cfg.data, seed))
    trainer.run(lambda row, _: rows.append(row))
    return trainer, rows


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g}"


def gc_toy(seeds: list[int], iterations: int) -> None:
    print("\n| gc_1m2m | grad_var (mean over reports after step 0) | transport_cost (last report) |")
    print("|---|---|---|")
    for config in ("gc_1m2m_ic.yaml", "gc_1m2m_gc.yaml", "gc_1m2m_ot.yaml"):
        variances, costs = [], []
        for seed in seeds:
            _, rows = train(config, seed, iterations)
            measured = [r["grad_var"] for r in rows[1:] if r["grad_var"] == r["grad_var"]]
            variances.append(statistics.mean(measured))
            costs.append(rows[-1]["transport_cost"])
        print(f"| {config[:-5]} | {mean_std(variances)} | {mean_std(costs)} |")


def vc_toy(seeds: list[int], iterations: int, out: Path) -> None:
    print("\n| gmm2 iCT-LI | W2 1-step | W2 2-step |")
    print("|---|---|---|")
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
    for ax, config in zip(axes, ("gmm2_ict_li_ic.yaml", "gmm2_ict_li_vc.yaml")):
        one, two = [], []
        for seed in seeds:
            trainer, _ = train(config, seed, iterations)
            holdout = trainer.data.x_holdout
            one.append(w2_distance(trainer.sample(1, 2000, seed=32), holdout))
            two.append(w2_distance(trainer.sample(2, 2000, seed=32), holdout))
        print(f"| {config[:-5]} | {mean_std(one)} | {mean_std(two)} |")
        with torch.random.fork_rng():  # the noise trainer.sample(1, 300, seed=32) starts from
            torch.manual_seed(32)
            noise = trainer.kernel.prior_sample(trainer.data.noise(300, trainer.device))
        samples = trainer.sample(1, 300, seed=32)
        for z, x in zip(noise, samples):
            ax.plot([z[0], x[0]], [z[1], x[1]], color="0.8", lw=0.4, zorder=1)
        ax.scatter(noise[:, 0], noise[:, 1], s=3, c="tab:blue", label="noise x_T", zorder=2)
        ax.scatter(samples[:, 0], samples[:, 1], s=3, c="tab:red", label="1-step sample", zorder=3)
        ax.set_title(config[:-5])
    axes[0].legend(loc="upper left")
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / "vct_fig1.png", dpi=120, bbox_inches="tight")


def overhead(steps: int) -> None:
    print("\n| coupling | ms / step | x independent |")
    print("|---|---|---|")
    base = None
    for name, extra in [("independent", {}), ("ot", {}), ("vc", {"coupling.beta": 0.001}),
                        ("gc", {"coupling.mu": 0.5}), ("vr", {})]:
        cfg = load_config(CONFIGS / "gmm2_ict_li_ic.yaml",
                          {"coupling.name": name, **extra, "train.iterations": steps})
        trainer = Trainer(cfg, load_dataset(cfg.data, 0))
        for _ in range(10):  # warm-up
            trainer.train_step()
        tick = time.perf_counter()
        while trainer.step < steps:
            trainer.train_step()
        per_step = (time.perf_counter() - tick) / (steps - 10) * 1e3
        base = base or per_step
        print(f"| {name} | {per_step:.2f} | {per_step / base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gc-iters", type=int, default=2000)
    parser.add_argument("--vc-iters", type=int, default=3000)
    parser.add_argument("--timing-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/toys"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    overhead(args.timing_steps)
    gc_toy(args.seeds, args.gc_iters)
    vc_toy(args.seeds, args.vc_iters, args.out)


if __name__ == "__main__":
    main()
