"""The ``ablate`` command: thin argument parsing around one library call per subcommand.

Exit codes: 0 success, 2 invalid input (one-line cause on stderr, nothing started or written),
1 runtime failure, 128 + the signal's number for a sweep stopped by SIGINT (130) or SIGTERM (143).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from .sweep import SweepInterrupted

EXIT_OK, EXIT_RUNTIME, EXIT_INVALID = 0, 1, 2
#: arguments that name a place (a path or URI): --out, a sweep directory, -o
LOCATION_ARGS = ("out", "dir", "output")


class InvalidInput(Exception):
    """Bad input found before anything started: printed as one line, exit code 2."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    from .spec import SpecError, parse_set_args
    from .storage import absolute
    from .train.config import ConfigError, load_config, with_paths
    from .train.registry import UnknownChoiceError

    out = Path(args.out)
    try:  # the config is checked before torch and the datasets are even imported
        overrides = parse_set_args(args.set or [])
        cfg = with_paths(load_config(args.config, overrides), absolute)
        if (out / "metrics").exists() and any((out / "metrics").iterdir()) and not args.resume:
            raise InvalidInput(f"{out}: already holds a run; pass --resume to continue it or choose "
                               "another --out")
        from .train.trainer import CheckpointError
        from .trial import prepare_trial, run_trial

        setup = prepare_trial(cfg, out_dir=str(out), source=args.config)
    except (ConfigError, SpecError, UnknownChoiceError, InvalidInput) as err:
        raise InvalidInput(str(err).replace("\n", "; ")) from None
    except ValueError as err:
        raise InvalidInput(f"{args.config}: {err}") from None
    except RuntimeError as err:  # DataUnavailableError, FIDUnavailableError: the machine, not the input
        print(f"ablate train: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    from .train.checks import cautions
    _print_cautions("train", args.config, [str(c) for c in cautions(cfg)])

    checkpoint = out / "checkpoint.pt"
    resume_from = str(checkpoint) if args.resume and checkpoint.exists() else None
    total = cfg.train.iterations

    def progress(row: dict, trainer, checkpoint_due: bool) -> None:
        if checkpoint_due:
            trainer.save(str(checkpoint))
        metrics = " ".join(f"{k}={row[k]:.4g}" for k in sorted(row)
                           if k.startswith(("w2_", "fid_", "kl", "grad_var")) and isinstance(row[k], float))
        loss = f"{row['loss']:.4g}" if row["step"] else "-"  # no training step yet at step 0
        print(f"[{row['step']:>7}/{total}] loss={loss} {metrics} "
              f"wall={row['wall_s']:.1f}s {row['status']}", file=sys.stderr, flush=True)

    try:
        final = run_trial(setup, str(out), args.trial_id, resume_from=resume_from, on_report=progress)
    except CheckpointError as err:
        raise InvalidInput(str(err)) from None
    keep = {k: _json_safe(v) for k, v in final.items() if "." not in k}
    print(json.dumps(keep, sort_keys=True))
    return EXIT_OK if final["status"] == "completed" else EXIT_RUNTIME


# ------------------------------------------------------------------------------------ sweeps
def _quiet(args: argparse.Namespace) -> bool:
    return args.quiet or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cmd_validate(args: argparse.Namespace) -> int:
    from .spec import SpecError, load_spec, parse_set_args

    try:
        spec = load_spec(args.file, args.profile, parse_set_args(args.set or []))
    except SpecError as err:
        raise InvalidInput(str(err).replace("\n", "; ")) from None
    print(spec.describe())
    _print_cautions("validate", args.file, spec.cautions())
    return EXIT_OK


def _print_cautions(command: str, source: str, cautions: list[str]) -> None:
    """One stderr line per caution (a setting that runs but skews its numbers, :data:`ablate.train.
    checks.CAUTIONS`), naming the file and the key."""
    for caution in cautions:
        print(f"ablate {command}: caution: {source}: {caution}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from .spec import SpecError, load_spec, parse_set_args

    try:  # a bad file fails here, before ray is even imported
        overrides = parse_set_args(args.set or [])
        spec = load_spec(args.file, args.profile, overrides)
    except SpecError as err:
        raise InvalidInput(str(err).replace("\n", "; ")) from None
    _print_cautions("run", args.file, spec.cautions())
    from .sweep import SweepError, SweepInterrupted, run_sweep

    try:
        sweep_dir = run_sweep(args.file, args.profile, overrides, out=args.out, name=args.name,
                              address=args.address, num_cpus=args.num_cpus, quiet=_quiet(args),
                              log_to=[name for item in args.log_to or [] for name in item.split(",") if name])
    except (SpecError, SweepError) as err:
        raise InvalidInput(str(err).replace("\n", "; ") if isinstance(err, SpecError) else str(err)) from None
    except SweepInterrupted as stop:
        return _interrupted("run", stop)
    return _finish(sweep_dir)


def cmd_resume(args: argparse.Namespace) -> int:
    from .sweep import SweepError, SweepInterrupted, resume_sweep

    try:
        sweep_dir = resume_sweep(args.dir, restart_errored=args.restart_errored, address=args.address,
                                 num_cpus=args.num_cpus, quiet=_quiet(args))
    except SweepError as err:
        raise InvalidInput(str(err)) from None
    except SweepInterrupted as stop:
        return _interrupted("resume", stop)
    return _finish(sweep_dir)


def _interrupted(command: str, stop: SweepInterrupted) -> int:
    """The table as the stop left it (trials that were running: ``interrupted``) and one line saying how
    to continue; the exit status of the signal (130 for SIGINT, 143 for SIGTERM)."""
    from .progress import status_table

    if stop.resumable:
        try:
            print(status_table(stop.sweep_dir))
        except FileNotFoundError:  # no trial had written anything yet
            pass
        print(f"ablate {command}: interrupted; `ablate resume {stop.sweep_dir}` continues it", file=sys.stderr)
    else:
        print(f"ablate {command}: interrupted before any trial started; start the sweep again with "
              "`ablate run`", file=sys.stderr)
    return stop.exit_status


def _finish(sweep_dir: str) -> int:
    """The final table; exit 1 when a trial ended ``errored`` (its retries ran out)."""
    from .progress import status_table
    from .results import trial_status

    print(status_table(sweep_dir))
    print(f"results: {sweep_dir}/results.parquet")
    errored = int((trial_status(sweep_dir)["status"] == "errored").sum())
    if errored:
        print(f"ablate: {errored} trial(s) errored (see the table); `ablate resume {sweep_dir}` retries "
              "them from their last checkpoints", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .progress import SweepError, status_table

    try:
        print(status_table(args.dir))
    except (SweepError, FileNotFoundError) as err:
        raise InvalidInput(str(err)) from None
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    from .results import collect

    try:
        print(collect(args.dir, args.output))
    except FileNotFoundError as err:
        raise InvalidInput(str(err)) from None
    return EXIT_OK


#: URI schemes that pyarrow maps to this machine's filesystem
_LOCAL_URI_SCHEMES = ("file", "local")


def _default_report_dir(location: str) -> str:
    """``<sweep dir>/report`` for a sweep on this machine (a path or a local URI such as ``file://``);
    ``./<sweep name>-report`` for one in a remote store, since figures are written locally."""
    import pyarrow.fs as pafs

    if "://" not in location:
        path = Path(location)
        return str((path.parent if path.suffix == ".parquet" else path) / "report")
    location = location.rstrip("/")
    sweep = location.rsplit("/", 1)[0] if location.endswith(".parquet") else location
    if location.split("://", 1)[0] in _LOCAL_URI_SCHEMES:
        return f"{pafs.FileSystem.from_uri(sweep)[1]}/report"
    return f"{sweep.rsplit('/', 1)[-1]}-report"


def _audit_settings(args: argparse.Namespace) -> tuple[int, int]:
    """The ASHA settings the early-stopping audit replays: --grace-period / --reduction-factor, else
    those of the sweep file's ``tune.scheduler`` when it names asha (a grid run with ``--set
    tune.scheduler=fifo`` audits them), else Ray's defaults."""
    from .figures.audit import GRACE_PERIOD, REDUCTION_FACTOR
    from .spec import AshaScheduler

    settings = {"grace_period": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR}
    spec_file = Path(args.dir) / "spec.yaml"
    if "://" not in args.dir and spec_file.is_file():
        import yaml

        scheduler = ((yaml.safe_load(spec_file.read_text()) or {}).get("tune") or {}).get("scheduler")
        if isinstance(scheduler, dict) and scheduler.get("name") == "asha":
            file_asha = AshaScheduler.model_validate(scheduler)
            settings = {k: getattr(file_asha, k) for k in settings}
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if settings["grace_period"] < 1 or settings["reduction_factor"] < 2:
        raise InvalidInput(f"--grace-period must be >= 1 and --reduction-factor >= 2, got "
                           f"{settings['grace_period']} and {settings['reduction_factor']}")
    return settings["grace_period"], settings["reduction_factor"]


def cmd_figures(args: argparse.Namespace) -> int:
    from .figures import load_results, make_report

    grace_period, reduction_factor = _audit_settings(args)
    try:
        df = load_results(args.dir, plotted_only=True)
        out = args.output or _default_report_dir(args.dir)
        name = str(df["sweep"].dropna().iloc[0]) if "sweep" in df and df["sweep"].notna().any() \
            else Path(args.dir).name
        report = make_report(df, out, name, baseline=args.baseline, grace_period=grace_period,
                             reduction_factor=reduction_factor)
    except (FileNotFoundError, ValueError) as err:
        raise InvalidInput(str(err)) from None
    print(report)
    return EXIT_OK


# --------------------------------------------------------------------------------------- parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablate", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one trial without Ray")
    train.add_argument("config", help="trainer config YAML (see configs/)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted-key override")
    train.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    train.add_argument("--trial-id", default="train", help="trial id in the store (default: train)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.set_defaults(func=cmd_train)

    validate = sub.add_parser("validate", help="check a search-space file without running it")
    validate.add_argument("file")
    validate.add_argument("--profile", help="apply a named profile of the file")
    validate.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted-key override")
    validate.set_defaults(func=cmd_validate)

    run = sub.add_parser("run", help="run a sweep with Ray Tune")
    run.add_argument("file", help="search-space file (see searchspaces/)")
    run.add_argument("--profile", help="apply a named profile of the file (e.g. cpu)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted-key override")
    run.add_argument("--out", default="runs", help="where sweep directories go: a path or URI (default: runs)")
    run.add_argument("--name", help="sweep directory name (default: the file's name)")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    run.add_argument("--quiet", action="store_true", help="no live table")
    run.add_argument("--log-to", action="append", metavar="TRACKER", help="also log to tensorboard, mlflow "
                     "and/or wandb (comma-separated or repeated; added to the file's tune.loggers)")
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="finish an interrupted sweep")
    resume.add_argument("dir", help="the sweep directory (path or URI)")
    resume.add_argument("--restart-errored", action="store_true",
                        help="restart errored trials from scratch instead of their last checkpoint")
    resume.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    resume.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: as the sweep began)")
    resume.add_argument("--quiet", action="store_true", help="no live table")
    resume.set_defaults(func=cmd_resume)

    status = sub.add_parser("status", help="the progress table of a sweep, from disk")
    status.add_argument("dir")
    status.set_defaults(func=cmd_status)

    collect = sub.add_parser("collect", help="compact a sweep's rows into one Parquet file")
    collect.add_argument("dir")
    collect.add_argument("-o", "--output", help="output file (default: DIR/results.parquet)")
    collect.set_defaults(func=cmd_collect)

    figures = sub.add_parser("figures", help="figures, tables and report.md of a sweep")
    figures.add_argument("dir", help="sweep directory or results .parquet")
    figures.add_argument("-o", "--output", help="output directory (default: DIR/report, or "
                                                "./NAME-report when DIR is in a remote store)")
    figures.add_argument("--baseline", help="arm to compare the others against (paired differences)")
    figures.add_argument("--grace-period", type=int, help="early-stopping audit: ASHA's grace period in "
                         "evaluations (default: the sweep file's asha settings, else 1)")
    figures.add_argument("--reduction-factor", type=int, help="early-stopping audit: ASHA's reduction "
                         "factor (default: the sweep file's, else 4)")
    figures.set_defaults(func=cmd_figures)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for location in LOCATION_ARGS:  # absolute once, here: trials run in working directories of Ray's
        if getattr(args, location, None):  # choosing, and a resumed sweep may start from elsewhere
            from .storage import absolute

            setattr(args, location, absolute(getattr(args, location)))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except InvalidInput as err:
        print(f"ablate {args.command}: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"ablate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
