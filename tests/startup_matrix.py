"""What really happens at start-up: build the Trainer with the start-up gate switched off, train two
steps as a trial does (a report after each, with gradient diagnostics when on), sample for every step
count of ``eval.steps`` and evaluate, and record whether anything raised, the loss went NaN (the
trial would end ``diverged`` at once) or the samples did. ``tests/test_checks.py`` compares a sample of
these outcomes with :data:`ablate.train.checks.RULES`; this file compares the whole cross product:

    python tests/startup_matrix.py --kind points              # all 3150 structural combinations
    python tests/startup_matrix.py --kind points --draws 3    # the same with other drawn axes
    python tests/startup_matrix.py --kind images --sample 600

Structural axes (kernel and its range, discretization, upper limit, distance, coupling, sampler) are
crossed in full; the others (weighting, time sampling, preconditioning, target, optimiser, schedule,
precision, gradient clipping, class conditioning, evaluated step counts, diagnostics, batch size, the
choices' own parameters such as the Guide's h) are drawn per combination from a seeded RNG. It exits 1
when a combination fails with no rule broken.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate.data import describe_dataset, load_dataset  # noqa: E402
from ablate.train import checks, trainer as trainer_module  # noqa: E402
from ablate.train.batches import DataBundle  # noqa: E402
from ablate.train.config import Config, build_config  # noqa: E402
from ablate.train.discretization.guide import GUIDE_STEP_SIZES  # noqa: E402

KERNELS = [{"name": "ve"}, {"name": "li"}, {"name": "fm"}, {"name": "bridge"}, {"name": "ve", "sigma_max": 1.0},
           {"name": "li", "sigma_max": 1.0}, {"name": "ve", "sigma_min": 1.5}]
DISCRETIZATIONS = [{"name": "ict", "s0": 2, "s1": 8}, {"name": "ect"}, {"name": "guide"}]
UPPER_LIMITS = ["cu", "vu", "phased"]
DISTANCES = ["pseudo_huber", "l2", "l2_squared", "particle_l2", "time_aware_mmd"]
COUPLINGS = ["independent", "ot", "vc", "gc", "vr"]
SAMPLERS = ["multistep", "pushforward"]
DRAWN = {
    "weighting": [{"name": n} for n in ("inv_dt", "edm", "uniform", "inv_dt_smooth", "gamma")],
    "time_sampling": [{"name": "lognormal"}, {"name": "uniform"}, {"name": "sine"}, {"name": "cosh"}],
    "precond": [{"name": n} for n in ("kernel", "identity", "linear", "exponential", "log")],
    "target": [{"name": "stopgrad"}, {"name": "ema"}],
}
DATA = {
    "points": {"data": {"name": "gmm2", "n_train": 64, "n_holdout": 32},
               "model": {"name": "mlp", "hidden": 16, "depth": 1, "time_dim": 8}},
    "images": {"data": {"name": "digits", "n_holdout": 32},
               "model": {"name": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                         "dropout": 0.0}},
}


def structural() -> list[tuple]:
    return list(itertools.product(KERNELS, DISCRETIZATIONS, UPPER_LIMITS, DISTANCES, COUPLINGS, SAMPLERS))


def raw_config(kind: str, combo: tuple, seed: int, cache_dir: str) -> dict[str, Any]:
    """The raw trainer config of one structural combination, other axes drawn from ``seed``."""
    kernel, disc, limit, dist, coupling, sampler = combo
    rng = random.Random(seed)
    coupling_params = {"vc": {"encoder_channels": 4, "encoder_hidden": 8},
                       "gc": {"generator": rng.choice(["ema", "online"]), "mu_end": rng.choice([None, 1.0])},
                       "vr": {"buffer": rng.choice([0, 16])}}.get(coupling, {})
    disc_params = {"guide": {"h": rng.choice(GUIDE_STEP_SIZES), "normalize": rng.random() < 0.3,
                             "curriculum_every": rng.choice([0, 1])},
                   "ect": {"stages": rng.choice([1, 8])}}.get(disc["name"], {})
    dist_params = {"time_aware_mmd": {"share_time": rng.random() < 0.5,
                                      "group_size": rng.choice([2, 3, 4])}}.get(dist, {})
    raw: dict[str, Any] = {
        **DATA[kind],
        "kernel": dict(kernel),
        "discretization": {**disc, **disc_params},
        "upper_limit": {"name": limit},
        "distance": {"name": dist, **dist_params},
        "coupling": {"name": coupling, **coupling_params},
        "train": {"iterations": 2, "batch_size": rng.choice([8, 12]), "ema": [0.9], "device": "cpu",
                  "optimizer": rng.choice(["adam", "radam", "lion"]),
                  "lr_schedule": rng.choice(["constant", "inv_sqrt"]), "lr_ref_steps": 1,
                  "precision": rng.choice(["fp32", "bf16"]), "grad_clip": rng.choice([None, 1.0])},
        "eval": {"steps": rng.choice([[1], [1, 2]]), "mid_times": [0.5], "samples": 8,
                 "extractor": "ablate-cnn", "cache_dir": cache_dir, "sampler": sampler, "grid": False},
        "log": {"diag_every": rng.choice([0, 1]), "diag_microbatches": rng.choice([2, 3])},
    }
    raw["data"] = {**raw["data"], "class_conditional": rng.random() < 0.3}
    for section, choices in DRAWN.items():
        raw[section] = dict(rng.choice(choices))
    return raw


@lru_cache(maxsize=None)
def _bundle(kind: str, class_conditional: bool) -> DataBundle:
    return load_dataset(build_config(DATA[kind]).data.model_copy(
        update={"class_conditional": class_conditional}), seed=0)


@contextlib.contextmanager
def gate_off() -> Iterator[None]:
    """The Trainer without its start-up check: what the components themselves do."""
    original = trainer_module.check_runnable
    trainer_module.check_runnable = lambda *args, **kwargs: None
    try:
        yield
    finally:
        trainer_module.check_runnable = original


def outcome(cfg: Config, data: DataBundle, evaluate: bool = True) -> Optional[str]:
    """None when the trial's first steps run as a trial runs them (a report after each step, with
    gradient diagnostics where on) and every ``eval.steps`` count samples (and, with ``evaluate``, the
    evaluation); else the error as 'Type: message'. A trial that would end ``diverged`` at once
    (a NaN loss in its first reports, without an error) reads 'diverged', NaN samples 'non-finite
    samples'."""
    from ablate.evaluation import Evaluator

    torch.set_num_threads(1)
    cfg = cfg.model_copy(update={"log": cfg.log.model_copy(update={"report_every": 1})})
    try:
        with gate_off():
            trainer = trainer_module.Trainer(cfg, data, device=torch.device("cpu"))
        evaluator = Evaluator(cfg.eval, data, None, torch.device("cpu")) if evaluate else None
        if trainer.run()["status"] == "diverged":
            return "diverged"
        for steps in cfg.eval.steps:
            if not torch.isfinite(trainer.sample(steps, cfg.eval.samples, cfg.eval.seed)).all():
                return "non-finite samples"
        if evaluator is not None:
            evaluator(trainer.sample, trainer.step)
    except Exception as err:  # noqa: BLE001 - recording what fails is the point
        return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    return None


def fired_rules(cfg: Config, data_kind: str) -> list[str]:
    """The names of the rules of :data:`ablate.train.checks.RULES` that ``cfg`` breaks."""
    dataset = describe_dataset(cfg.data)
    assert dataset.kind == data_kind
    return [rule.__name__ for rule in checks.RULES if list(rule(cfg, dataset))]


def run(kind: str, combos: list[tuple], cache_dir: str, evaluate: bool = True,
        draws: int = 0) -> list[dict[str, Any]]:
    rows = []
    for index, combo in enumerate(combos):
        raw = raw_config(kind, combo, draws * len(combos) + index, cache_dir)
        cfg = build_config(raw)
        data = _bundle(kind, cfg.data.class_conditional)
        start = time.perf_counter()
        error = outcome(cfg, data, evaluate)
        rows.append({"combo": json.dumps(combo), "raw": raw, "error": error,
                     "rules": fired_rules(cfg, kind), "seconds": time.perf_counter() - start})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(DATA), default="points")
    parser.add_argument("--sample", type=int, help="this many combinations, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=0, help="another draw of the non-structural axes")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "ablate"))
    parser.add_argument("--out", help="write every outcome as JSON here")
    args = parser.parse_args()
    combos = structural()
    if args.sample:
        combos = random.Random(args.seed).sample(combos, args.sample)
    rows = run(args.kind, combos, args.cache_dir, draws=args.draws)
    missed = [r for r in rows if r["error"] and not r["rules"]]
    flagged_ran = [r for r in rows if not r["error"] and r["rules"]]
    diverged = [r for r in rows if r["error"] in ("diverged", "non-finite samples")]
    print(f"{len(rows)} combinations on {args.kind}: {sum(bool(r['error']) for r in rows)} raised, "
          f"{len(missed)} raised with no rule, {len(flagged_ran)} ran although a rule fired, "
          f"{len(diverged)} diverged at once; {sum(r['seconds'] for r in rows):.0f} s")
    for row in missed[:20] + flagged_ran[:20]:
        print(row["combo"], row["rules"], row["error"])
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
