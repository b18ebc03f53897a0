"""Scaffolding shared by the tests that run whole sweeps: a toy search space (2-D Gaussian mixture,
small MLP, a few seconds per trial on one CPU) and the ``ablate`` command line run as a subprocess.

    space = write_space(tmp_path, toy_space("tiny", {"weighting.name": {"grid": ["inv_dt", "edm"]}}))
    done = ablate_cli("run", str(space), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet")
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEP_TIMEOUT_S = 540  # the machine is shared: Ray start-up alone can take a minute under load


def _merged(into: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``into`` with ``changes`` merged in, section by section (nested dicts merge, values replace)."""
    out = dict(into)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def toy_space(name: str, space: Optional[dict[str, Any]] = None, *, iterations: int = 100,
              eval_every: int = 50, report_every: int = 50, base: Optional[dict[str, Any]] = None,
              tune: Optional[dict[str, Any]] = None, **sections: Any) -> dict[str, Any]:
    """A search-space file (as a dict) over the toy trainer config.

    ``base`` and ``tune`` are merged into the defaults below section by section; ``sections`` adds
    top-level keys as they are (``variants``, ``profiles``, ``seeds``, ``description``)."""
    toy_base = {
        "data": {"name": "gmm2", "n_train": 1000, "n_holdout": 500},
        "model": {"name": "mlp", "hidden": 64, "depth": 2},
        "kernel": {"name": "li", "sigma_min": 0.002, "sigma_max": 0.1, "sigma_data": 0.5},
        "coupling": {"name": "independent"},
        "discretization": {"name": "ict", "s0": 10, "s1": 80},
        "weighting": {"name": "inv_dt"},
        "train": {"iterations": iterations, "batch_size": 128, "lr": 1.0e-3, "optimizer": "radam",
                  "ema": [0.999], "device": "cpu"},
        "eval": {"every": eval_every, "steps": [1], "samples": 500},
        "log": {"report_every": report_every},
    }
    toy_tune = {"metric": "w2_1step", "mode": "min", "scheduler": "fifo", "searcher": "grid",
                "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0}}
    spec = {"name": name, "base": _merged(toy_base, base or {}), "seeds": [0],
            "tune": _merged(toy_tune, tune or {}), **sections}
    if space is not None:
        spec["space"] = space
    return spec


def write_space(directory: Path, spec: dict[str, Any]) -> Path:
    """``spec`` as ``directory/<name>.yaml``; returns the path."""
    path = Path(directory) / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point ``ablate`` elsewhere (a Ray address,
    ``ABLATE_*`` settings of the developer's shell), with this checkout importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABLATE_", "RAY_ADDRESS"))}
    env.update({"PYTHONPATH": str(ROOT), **extra})
    return env


def ablate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ablate.cli", *args]


def ablate_cli(*args: str, cwd: Path = ROOT, env: Optional[dict[str, str]] = None,
               timeout: float = SWEEP_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``ablate ARGS`` to completion in a fresh process; output captured as text."""
    return subprocess.run(ablate_cmd(*args), cwd=cwd, env=env or cli_env(), capture_output=True,
                          text=True, timeout=timeout)
