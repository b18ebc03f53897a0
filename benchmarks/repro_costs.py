"""Expected wall time of each reproduction sweep (``searchspaces/repro/``) from short measurements.

    python benchmarks/repro_costs.py                       # every file, ~2 s of training per arm
    python benchmarks/repro_costs.py --only vct_toy --seconds 5

Per arm (first seed) it builds the trial exactly as a sweep does (``SweepSpec.config_for``), runs a
few warm-up steps, then times training steps on one thread (CPU time of this process, so that other
load on the machine inflates it less than wall time) for ``--seconds``; on the file's first arm it
also times one evaluation and one gradient-diagnostics call, which it charges to every arm of the
file. A trial's cost is then

    iterations x step + (iterations / eval.every + 1) x evaluation + diagnostics calls x diagnostics

and the file's wall time is the trials run ``tune.max_concurrent`` at a time in the sweep's order
(seed-major, as the grid searcher emits them), each :data:`SHARED_SLOWDOWN` slower than alone when
they share the machine, plus ``--fixed`` seconds for Ray start-up and shutdown (22-29 s measured,
README *Benchmarks*). It assumes the cores are otherwise idle: trials on busy cores take longer.
"""
from __future__ import annotations

import argparse
import heapq
import math
import time
from pathlib import Path

import torch

from ablate.data import load_dataset
from ablate.evaluation import Evaluator
from ablate.spec import SweepSpec, load_spec
from ablate.sweep import arm_label
from ablate.train.trainer import Trainer

REPRO = Path(__file__).resolve().parent.parent / "searchspaces" / "repro"
WARMUP_STEPS, MIN_STEPS = 3, 5
#: two trials at once on the 2-core machine ran 1.78x as fast as one after the other (README
#: *Benchmarks*, "the trials alone"): each about 12% slower than alone
SHARED_SLOWDOWN = 1.12


def cpu_seconds(action) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def measure_arm(spec: SweepSpec, point, seconds: float, with_eval: bool) -> dict[str, float]:
    """Seconds per training step, and (``with_eval``) per evaluation and per diagnostics call."""
    cfg = spec.config_for(point.params, point.variant, point.seed)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
    data = load_dataset(cfg.data, seed=cfg.train.seed)
    evaluator = Evaluator(cfg.eval, data, None, torch.device("cpu")) if with_eval else None
    trainer = Trainer(cfg, data, evaluator, torch.device("cpu"))
    for _ in range(WARMUP_STEPS):
        trainer.train_step()
    steps, spent = 0, 0.0
    while steps < MIN_STEPS or spent < seconds:
        spent += cpu_seconds(trainer.train_step)
        steps += 1
    out = {"step_s": spent / steps}
    if with_eval:
        out["eval_s"] = cpu_seconds(lambda: evaluator(trainer.sample, trainer.step))
        out["diag_s"] = cpu_seconds(lambda: trainer.diagnostics()) if cfg.log.diag_every else 0.0
    return out


def trial_seconds(spec: SweepSpec, point, costs: dict[str, float]) -> float:
    cfg = spec.config_for(point.params, point.variant, point.seed)
    iterations = cfg.train.iterations
    evals = iterations // cfg.eval.every + 1 + (iterations % cfg.eval.every != 0)
    diags = iterations // cfg.log.diag_every + 1 if cfg.log.diag_every else 0
    return iterations * costs["step_s"] + evals * costs["eval_s"] + diags * costs["diag_s"]


def schedule(durations: list[float], slots: int) -> float:
    """Makespan of trials started in order on ``slots`` parallel slots (each starts when one frees)."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def estimate(path: Path, seconds: float, fixed: float) -> tuple[list[str], float]:
    spec = load_spec(path)
    points = spec.points()
    arms: dict[str, object] = {}
    for point in points:
        arms.setdefault(arm_label(point), point)
    costs: dict[str, dict[str, float]] = {}
    shared: dict[str, float] = {}
    for index, (label, point) in enumerate(arms.items()):
        measured = measure_arm(spec, point, seconds, with_eval=index == 0)
        shared = shared or {k: measured[k] for k in ("eval_s", "diag_s")}
        costs[label] = {**shared, **measured}
    lines = [f"### {spec.name} ({len(points)} trials, {spec.tune.max_concurrent} at a time)", "",
             "| arm | ms / step | trial (s) |", "|---|---|---|"]
    for label, point in arms.items():
        lines.append(f"| {label} | {costs[label]['step_s'] * 1e3:.1f} | "
                     f"{trial_seconds(spec, point, costs[label]):.0f} |")
    durations = [trial_seconds(spec, p, costs[arm_label(p)]) for p in points]
    slowdown = SHARED_SLOWDOWN if spec.tune.max_concurrent > 1 else 1.0
    wall = schedule([d * slowdown for d in durations], spec.tune.max_concurrent) + fixed
    lines += ["", f"evaluation {shared['eval_s']:.2f} s, diagnostics {shared['diag_s']:.2f} s per call; "
              f"trials {sum(durations) / 60:.0f} min of CPU; expected wall **{math.ceil(wall / 60)} min**",
              ""]
    return lines, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="file stems under searchspaces/repro/")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds of steps per arm")
    parser.add_argument("--fixed", type=float, default=30.0, help="seconds of Ray start-up per sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(REPRO.glob("*.yaml"))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    total = 0.0
    for path in files:
        lines, wall = estimate(path, args.seconds, args.fixed)
        total += wall
        print("\n".join(lines), flush=True)
    print(f"all files one after the other: expected wall {total / 3600:.1f} h")


if __name__ == "__main__":
    main()
