"""A sweep's fixed cost, phase by phase (issue 18): what ``ablate run`` pays that a plain loop does not.

Prints, measured in one run, each phase in a fresh process where it matters:

1. driver imports: ``import ablate.sweep`` (ray, Ray Tune, the spec and trainer config, torch);
2. ``ray.init`` of a local Ray (``--num-cpus``) and the first task's round trip (a worker process
   started), then a second round trip (a warm worker);
3. trial-path imports in a fresh interpreter: ``ablate.trial`` and ``ablate.evaluation`` (torch, the
   data and evaluation code), and ``import ot`` (POT: scikit-learn, scipy.stats), which the trial path
   no longer imports unless a trial computes W2 or draws OT pairs;
4. ``ray.shutdown``;
5. end to end: ``ablate run --quiet`` of a 2-trial toy sweep (2 at a time), its wall time against the
   span the trials themselves ran (first row's start to last row's wall time in the store); the
   difference is the fixed cost.

    python benchmarks/startup_cost.py               # ~2 minutes on 2 idle cores
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def timed_python(code: str) -> float:
    """Wall seconds of ``python -c code`` less an empty interpreter's."""
    def run(snippet: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", snippet], check=True, env=ENV, cwd=ROOT)
        return time.perf_counter() - start

    return run(code) - run("pass")


RAY_PHASES = """
import json, time
t0 = time.perf_counter()
import ablate.sweep, ray
t1 = time.perf_counter()
ablate.sweep.start_ray(None, {num_cpus})
t2 = time.perf_counter()
@ray.remote
def ping():
    return 1
ray.get(ping.remote())
t3 = time.perf_counter()
ray.get(ping.remote())
t4 = time.perf_counter()
ray.shutdown()
t5 = time.perf_counter()
print(json.dumps({{"driver imports": t1 - t0, "ray.init": t2 - t1, "first task (worker start)": t3 - t2,
                  "second task (warm worker)": t4 - t3, "ray.shutdown": t5 - t4}}))
"""


def toy_sweep(directory: Path, iterations: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from toy import toy_space

    spec = toy_space("startup", {"weighting.name": {"grid": ["inv_dt", "edm"]}}, iterations=iterations,
                     eval_every=iterations, report_every=max(iterations // 4, 1))
    path = directory / "startup.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=200, help="steps per toy trial")
    args = parser.parse_args()
    print(f"startup_cost: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    done = subprocess.run([sys.executable, "-c", RAY_PHASES.format(num_cpus=args.num_cpus)], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    for phase, seconds in json.loads(done.stdout.splitlines()[-1]).items():
        print(f"  {phase:<28} {seconds:6.2f} s")
    for name, code in (("trial-path imports", "import ablate.trial, ablate.evaluation"),
                       ("import ot (now lazy)", "import ot"),
                       ("import ablate.cli (status)", "import ablate.cli, ablate.progress")):
        print(f"  {name:<28} {timed_python(code):6.2f} s")

    from ablate.results import read_rows

    with tempfile.TemporaryDirectory() as tmp:
        space = toy_sweep(Path(tmp), args.iterations)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ablate.cli", "run", str(space), "--out", f"{tmp}/runs",
                        "--num-cpus", str(args.num_cpus), "--quiet"], env=ENV, cwd=tmp, check=True,
                       capture_output=True)
        wall = time.perf_counter() - start
        rows = read_rows(f"{tmp}/runs/startup", columns=["wall_s"])
        per_trial = rows.groupby("trial_id")["wall_s"].max()
        print(f"  ablate run, 2 toy trials of {args.iterations} steps: wall {wall:.1f} s, trials ran "
              f"{per_trial.max():.1f} s each (at once): fixed cost {wall - per_trial.max():.1f} s")


if __name__ == "__main__":
    main()
