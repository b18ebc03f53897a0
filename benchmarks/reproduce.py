"""Run the reproduction sweeps and write docs/reproductions.md (README *Reproductions*).

    python benchmarks/reproduce.py                       # the report from the sweeps there are
    python benchmarks/reproduce.py --run --num-cpus 2    # run every sweep first (~4 h), then report
    python benchmarks/reproduce.py --run --only vct_toy  # one file's sweep

Each file of ``searchspaces/repro/`` named in the claims file (``benchmarks/repro_claims.yaml``) is
one sweep, ``RUNS_DIR/<file stem>``. With ``--run`` a sweep that is not there starts with ``ablate
run``, one with unfinished or errored trials continues with ``ablate resume``, a finished one is left
alone; the wall time of every run goes to ``RUNS_DIR/wall_times.json``. Then every claim is decided
on the sweeps that exist (a missing or unfinished one leaves its claims *pending*) and the report and
its figures (``docs/reproductions/*.png``) are written. Exit code 1 when a run failed (the report is
written all the same), 2 on bad input. A sweep that ``ablate resume`` refuses (its file changed, or
the driver died before Ray Tune first saved its state) stays as it is: delete its directory to run
it again from the start.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's ablate, also when run from elsewhere

from ablate.figures.claims import ClaimsError, ClaimsFile, load_claims  # noqa: E402
from ablate.figures.claims_report import SweepState, write_reproductions  # noqa: E402
from ablate.results import read_rows, trial_status  # noqa: E402
from ablate.spec import SpecError, load_spec  # noqa: E402

WALL_FILE = "wall_times.json"
DONE = ("completed", "diverged")  # a trial --run leaves alone
ENDED = (*DONE, "errored", "stopped_early")  # a trial the report counts as finished
COMMAND = "python benchmarks/reproduce.py"


def sweep_record(sweep_dir: Path) -> Optional[dict]:
    path = sweep_dir / "sweep.json"
    return json.loads(path.read_text()) if path.exists() else None


def statuses(sweep_dir: Path) -> list[str]:
    """The status of every trial that has started (none when the store is empty or absent)."""
    try:
        return [str(s) for s in trial_status(str(sweep_dir))["status"].fillna("running")]
    except FileNotFoundError:
        return []


def run_file(spec_path: Path, sweep_dir: Path, trials: int, args: argparse.Namespace) -> Optional[int]:
    """Start, resume or skip one sweep; return the command's exit code (None when skipped)."""
    cli = [sys.executable, "-m", "ablate.cli"]
    record = sweep_record(sweep_dir)
    if record is None:
        command = [*cli, "run", str(spec_path), "--out", str(sweep_dir.parent), "--name", sweep_dir.name,
                   "--num-cpus", str(args.num_cpus), "--quiet"]
        command += ["--profile", args.profile] if args.profile else []
    else:
        if record.get("profile") != args.profile:
            print(f"{sweep_dir}: ran with profile {record.get('profile')!r}, not {args.profile!r}; "
                  "use another --runs-dir", file=sys.stderr)
            return 2
        started = statuses(sweep_dir)
        if len(started) >= trials and all(s in DONE for s in started):
            print(f"{sweep_dir.name}: finished, not run again")
            return None
        command = [*cli, "resume", str(sweep_dir), "--num-cpus", str(args.num_cpus), "--quiet"]
    print(f"{sweep_dir.name}: {' '.join(command[1:])}", flush=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}  # Ray's trial workers import this checkout's ablate too
    tick = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    seconds = time.perf_counter() - tick
    walls_path = sweep_dir.parent / WALL_FILE
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    walls.setdefault(sweep_dir.name, []).append({"command": command[3], "seconds": round(seconds, 1),
                                                 "exit_code": code,
                                                 "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    walls_path.write_text(json.dumps(walls, indent=2) + "\n")
    print(f"{sweep_dir.name}: exit {code} after {seconds / 60:.1f} min", flush=True)
    return code


def sweep_state(spec_path: Path, sweep_dir: Path, trials: int, sha256: str, profile: Optional[str],
                walls: dict) -> SweepState:
    record = sweep_record(sweep_dir)
    if record is None:
        return SweepState(trials, note="not run")
    notes = []
    if record.get("sha256") != sha256:
        notes.append(f"{spec_path.name} changed since the sweep began: rerun it")
    if record.get("profile") != profile:
        notes.append(f"profile {record.get('profile')!r}")
    ended = sum(s in ENDED for s in statuses(sweep_dir))
    seconds = sum(run["seconds"] for run in walls.get(sweep_dir.name, [])) or None
    return SweepState(trials, ended, seconds, "; ".join(notes))


def read_frame(sweep_dir: Path):
    try:
        return read_rows(str(sweep_dir))
    except FileNotFoundError:
        return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run or resume the sweeps first")
    parser.add_argument("--only", nargs="+", metavar="FILE", help="file stems to run (the report "
                        "still covers every claim)")
    parser.add_argument("--runs-dir", default="runs/repro", help="where the sweeps are (default: runs/repro)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (default: 2)")
    parser.add_argument("--profile", help="a profile of every file, e.g. smoke (a pipeline check: "
                        "use its own --runs-dir and --out)")
    parser.add_argument("--claims", default=str(ROOT / "benchmarks" / "repro_claims.yaml"))
    parser.add_argument("--spaces", default=str(ROOT / "searchspaces" / "repro"),
                        help="the directory of the files the claims name")
    parser.add_argument("--out", default=str(ROOT / "docs" / "reproductions.md"))
    parser.add_argument("--figures", help="PNG directory (default: next to --out, named after it)")
    args = parser.parse_args(argv)

    runs_dir = Path(os.path.abspath(Path(args.runs_dir).expanduser()))  # `ablate run` needs an absolute --out
    try:
        claims: ClaimsFile = load_claims(args.claims)
        specs = {f: load_spec(Path(args.spaces) / f"{f}.yaml", args.profile) for f in claims.files}
    except (ClaimsError, SpecError) as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.only or ()) - set(specs))
    if unknown:
        print(f"reproduce: --only {unknown}: not in {args.claims} (files: {', '.join(specs)})",
              file=sys.stderr)
        return 2
    failed = False
    if args.run:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for file in args.only or list(specs):
            code = run_file(Path(args.spaces) / f"{file}.yaml", runs_dir / file,
                            len(specs[file].points()), args)
            failed |= bool(code)
    walls = json.loads((runs_dir / WALL_FILE).read_text()) if (runs_dir / WALL_FILE).exists() else {}
    frames = {f: read_frame(runs_dir / f) for f in specs}
    states = {f: sweep_state(Path(args.spaces) / f"{f}.yaml", runs_dir / f, len(s.points()), s.sha256,
                             args.profile, walls) for f, s in specs.items()}
    out = Path(args.out)
    figures = Path(args.figures) if args.figures else out.with_suffix("")
    shown_dir = os.path.relpath(runs_dir, ROOT) if runs_dir.is_relative_to(ROOT) else str(runs_dir)
    command = f"{COMMAND} --runs-dir {shown_dir}" + (f" --profile {args.profile}" if args.profile else "")
    verdicts = write_reproductions(
        claims, frames, states, out, figures, f"{command}          # add --run to run the sweeps first",
        preamble=f"Sweeps read from `{shown_dir}`; claims and settings from "
                 f"`{os.path.relpath(args.claims, ROOT)}`.")
    for claim, verdict in verdicts.items():
        print(f"{claim}: {verdict}")
    print(f"report: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
