"""Platform overhead: the same trials through `ablate run` and through a plain Python loop.

Prints, measured side by side in one run:
1. overhead ratio: wall time of 4 trials run one at a time by `ablate run --num-cpus 1` (Ray Tune,
   store, checkpoints, status) / the same trials run by a plain Python loop calling the trainer, each
   as a fresh process (target <= 1.15 for trials of 30 s or more on 1 CPU each);
2. parallel speed-up: the plain loop's time / `ablate run --num-cpus 2` (2 trials at once, 1 CPU each;
   target >= 1.7x on 2 cores);
   and for both, the fixed cost (wall time less the span from the first trial's start to the last
   trial's end: interpreter, Ray start-up and shutdown) and the ratios of the trials alone;
3. ASHA vs the full grid on a toy beta sweep (VC coupling, beta grid): trial-steps spent (target <= 40%
   of the grid's), whether the grid's winner survives ASHA, and how much worse ASHA's pick (the best
   arm it trained to the end) is in the grid's own final numbers.

    python benchmarks/sweep_overhead.py                    # ~22 minutes on 2 idle cores (~75 s trials)
    python benchmarks/sweep_overhead.py --iterations 2000  # ~10 minutes (~30 s trials)
    python benchmarks/sweep_overhead.py --quick      # smoke run, numbers meaningless
    python benchmarks/sweep_overhead.py --beta-grid runs/bench   # only the beta grid, kept, and its
                                                                 # early-stopping audit (ASHA grace 1, rf 3)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate.results import read_rows  # noqa: E402
from ablate.spec import load_spec  # noqa: E402
from ablate.trial import prepare_trial  # noqa: E402


def overhead_spec(iterations: int) -> dict:
    return {
        "name": "overhead",
        "base": {
            "data": {"name": "gmm2", "n_train": 4000, "n_holdout": 1000},
            "model": {"name": "mlp", "hidden": 256, "depth": 4},
            "kernel": {"name": "li", "sigma_max": 0.1, "sigma_data": 0.5},
            "discretization": {"name": "ict", "s0": 10, "s1": 80},
            "train": {"iterations": iterations, "batch_size": 256, "lr": 1.0e-3, "ema": [0.999],
                      "device": "cpu"},
            "eval": {"every": max(iterations // 4, 1), "samples": 1000, "mid_times": [0.07], "grid": False},
            "log": {"report_every": 100},
        },
        # four trials of equal cost, so that 2 at a time can halve the time: with unequal ones (an
        # `ot` arm costs 1.5x an independent one) the speed-up also measures how the trials pair up
        "space": {"weighting.name": {"grid": ["inv_dt", "edm"]},
                  "train.lr": {"grid": [1.0e-3, 5.0e-4]}},
        "seeds": [0],
        "tune": {"metric": "w2_1step", "mode": "min", "resources": {"cpu": 1, "gpu": 0}},
    }


def beta_spec(iterations: int, scheduler: dict | str) -> dict:
    return {
        "name": "beta_toy",
        "base": {
            "data": {"name": "gmm2", "n_train": 4000, "n_holdout": 1000},
            "model": {"name": "mlp", "hidden": 128, "depth": 3},
            "kernel": {"name": "li", "sigma_max": 0.1, "sigma_data": 0.5},
            "coupling": {"name": "vc", "beta": 0.001},
            "discretization": {"name": "ict", "s0": 10, "s1": 80},
            "train": {"iterations": iterations, "batch_size": 256, "lr": 1.0e-3, "ema": [0.999],
                      "device": "cpu"},
            "eval": {"every": max(iterations // 8, 1), "samples": 500, "mid_times": [0.07], "grid": False},
            "log": {"report_every": max(iterations // 8, 1)},
        },
        "space": {"coupling.beta": {"grid": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]}},
        "seeds": [0],
        "tune": {"metric": "w2_1step", "mode": "min", "scheduler": scheduler, "max_concurrent": 2,
                 "resources": {"cpu": 1, "gpu": 0}},
    }


def write_spec(spec: dict, directory: str) -> str:
    path = os.path.join(directory, f"{spec['name']}.yaml")
    Path(path).write_text(yaml.safe_dump(spec))
    return path


def ablate_run(path: str, out: str, num_cpus: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ablate.cli", "run", path, "--out", out,
                    "--num-cpus", str(num_cpus), "--quiet"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def trials_span(sweep_dir: str) -> float:
    """Seconds from the first trial's start to the last trial's end, from the store's attempt and
    status records (1 s resolution): the sweep's wall time less Ray's start-up and shutdown."""
    starts, ends = [], []
    for trial in Path(sweep_dir, "metrics").iterdir():
        attempt = json.loads((trial / "_attempt-001.json").read_text())
        starts.append(datetime.fromisoformat(attempt["started"]))
        ends.append(datetime.fromisoformat(json.loads((trial / "_status.json").read_text())["updated"]))
    return (max(ends) - min(starts)).total_seconds()


def plain_loop(path: str) -> None:
    """The same points trained one after another by the bare trainer (data, evaluator, Trainer.run;
    no store, no checkpoints, no Ray), 1 thread as a trial gets. Prints the seconds spent in trials."""
    spec = load_spec(path)
    torch.set_num_threads(1)
    start = time.perf_counter()
    for point in spec.points():
        prepare_trial(spec.config_for(point.params, point.variant, point.seed), None).trainer.run()
    print(time.perf_counter() - start)


def timed_plain_loop(path: str) -> tuple[float, float]:
    """``plain_loop`` as a fresh process, so both sides pay interpreter start and imports; returns
    (wall seconds, seconds in trials)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--plain-loop", path], check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    return time.perf_counter() - start, float(done.stdout.split()[-1])


def trial_steps(sweep_dir: str) -> tuple[int, pd.DataFrame]:
    rows = read_rows(sweep_dir)
    last = rows.sort_values("step").groupby("trial_id").tail(1)
    return int(last["step"].sum()), rows


def final_values(rows: pd.DataFrame, metric: str = "w2_1step") -> pd.Series:
    """Each arm's last evaluated ``metric``, best first."""
    finals = rows.dropna(subset=[metric]).sort_values("step").groupby("arm").tail(1)
    return finals.set_index("arm")[metric].sort_values()


def audit_beta_grid(out: str, iterations: int, seeds: list[int]) -> None:
    """The beta sweep's file with ASHA (grace 1, reduction 3) run as a full grid (``--set
    tune.scheduler=fifo``), then ``ablate figures``, whose early-stopping audit replays the file's ASHA."""
    spec = beta_spec(iterations, {"name": "asha", "grace_period": 1, "reduction_factor": 3})
    spec["name"], spec["seeds"] = "beta_toy_asha", seeds
    os.makedirs(out, exist_ok=True)
    path = write_spec(spec, out)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ablate.cli", "run", path, "--out", out, "--num-cpus", "2",
                    "--quiet", "--set", "tune.scheduler=fifo"], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    print(f"grid: {time.perf_counter() - start:.0f}s")
    report = subprocess.run([sys.executable, "-m", "ablate.cli", "figures", os.path.join(out, spec["name"])],
                            check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True).stdout.strip()
    text = Path(report).read_text()
    print(text[text.index("## Early stopping audit"):text.index("![Kendall")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trials: checks the script runs")
    parser.add_argument("--iterations", type=int, default=6000, help="steps per overhead trial")
    parser.add_argument("--beta-iterations", type=int, default=1600, help="steps per beta trial")
    parser.add_argument("--beta-grid", metavar="OUT", help="run only the beta sweep's grid into OUT (kept) and "
                        "print the early-stopping audit of its file's ASHA settings (ablate figures)")
    parser.add_argument("--beta-seeds", type=int, nargs="+", default=[0], help="seeds of the beta sweep")
    parser.add_argument("--plain-loop", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        return plain_loop(args.plain_loop)
    if args.beta_grid:
        return audit_beta_grid(args.beta_grid, args.beta_iterations, args.beta_seeds)
    iters, beta_iters = (100, 80) if args.quick else (args.iterations, args.beta_iterations)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_spec(overhead_spec(iters), tmp)
        loop_s, loop_trials_s = timed_plain_loop(path)
        serial_s = ablate_run(path, os.path.join(tmp, "serial"), num_cpus=1)
        loop2_s, loop2_trials_s = timed_plain_loop(path)
        parallel_s = ablate_run(path, os.path.join(tmp, "parallel"), num_cpus=2)
        loop_mean, loop_trials = (loop_s + loop2_s) / 2, (loop_trials_s + loop2_trials_s) / 2
        serial_span = trials_span(os.path.join(tmp, "serial", "overhead"))
        parallel_span = trials_span(os.path.join(tmp, "parallel", "overhead"))
        print(f"4 trials x {iters} steps: plain loop {loop_s:.1f}s / {loop2_s:.1f}s "
              f"({loop_trials_s:.1f}s / {loop2_trials_s:.1f}s in trials), ablate run 1 CPU {serial_s:.1f}s "
              f"({serial_span:.0f}s first trial start to last trial end), ablate run 2 CPUs "
              f"{parallel_s:.1f}s ({parallel_span:.0f}s)")
        print(f"overhead ratio (ablate run, 1 CPU / plain loop): {serial_s / loop_mean:.3f}  (target <= 1.15)")
        print(f"parallel speed-up (plain loop / ablate run, 2 CPUs): {loop_mean / parallel_s:.2f}x  "
              "(target >= 1.7x)")
        print(f"  fixed cost (wall less trial span): ablate run 1 CPU {serial_s - serial_span:.0f}s, "
              f"2 CPUs {parallel_s - parallel_span:.0f}s, plain loop {loop_mean - loop_trials:.0f}s")
        print(f"  trials alone: overhead {serial_span / loop_trials:.3f}, parallel speed-up "
              f"{loop_trials / parallel_span:.2f}x")

        grid = write_spec(beta_spec(beta_iters, "fifo"), tmp)
        grid_s = ablate_run(grid, os.path.join(tmp, "grid"), num_cpus=2)
        asha_spec = beta_spec(beta_iters, {"name": "asha", "grace_period": 1, "reduction_factor": 3})
        asha_spec["name"] = "beta_toy_asha"
        asha = write_spec(asha_spec, tmp)
        asha_s = ablate_run(asha, os.path.join(tmp, "asha"), num_cpus=2)
        grid_steps, grid_rows = trial_steps(os.path.join(tmp, "grid", "beta_toy"))
        asha_steps, asha_rows = trial_steps(os.path.join(tmp, "asha", "beta_toy_asha"))
        grid_finals = final_values(grid_rows)
        winner = grid_finals.index[0]
        asha_pick = final_values(asha_rows[asha_rows["step"] == beta_iters]).index[0]
        survived = bool(asha_rows.groupby("arm")["step"].max().get(winner, 0) == beta_iters)
        print(f"beta sweep, 8 arms x {beta_iters} steps: grid {grid_steps} trial-steps in {grid_s:.0f}s, "
              f"ASHA {asha_steps} trial-steps in {asha_s:.0f}s = {asha_steps / grid_steps:.0%} "
              "(target <= 40%)")
        print("grid's final w2_1step per arm: " + ", ".join(f"{arm} {value:.4f}"
                                                           for arm, value in grid_finals.items()))
        regret = grid_finals[asha_pick] / grid_finals[winner] - 1
        print(f"grid winner {winner}: {'survives' if survived else 'does NOT survive'} ASHA; ASHA's pick "
              f"{asha_pick} is {regret:.1%} worse than it in the grid's own numbers")


if __name__ == "__main__":
    main()
