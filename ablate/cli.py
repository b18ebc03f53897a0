"""The ``ablate`` command: thin argument parsing around one library call per subcommand.

Exit codes: 0 success, 2 invalid input (one-line cause on stderr, nothing started or written),
1 runtime failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

EXIT_OK, EXIT_RUNTIME, EXIT_INVALID = 0, 1, 2


class InvalidInput(Exception):
    """Bad input found before anything started: printed as one line, exit code 2."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    from .data import DataUnavailableError
    from .spec import SpecError, parse_set_args
    from .train.config import ConfigError, load_config
    from .train.registry import UnknownChoiceError
    from .trial import prepare_trial, run_trial

    out = Path(args.out)
    try:
        overrides = parse_set_args(args.set or [])
        cfg = load_config(args.config, overrides)
        if (out / "metrics").exists() and any((out / "metrics").iterdir()) and not args.resume:
            raise InvalidInput(f"{out}: already holds a run; pass --resume to continue it or choose "
                               "another --out")
        setup = prepare_trial(cfg, samples_dir=str(out))
    except (ConfigError, SpecError, UnknownChoiceError, InvalidInput) as err:
        raise InvalidInput(str(err).replace("\n", "; ")) from None
    except ValueError as err:
        raise InvalidInput(f"{args.config}: {err}") from None
    except DataUnavailableError as err:
        print(f"ablate train: {err}", file=sys.stderr)
        return EXIT_RUNTIME

    checkpoint = out / "checkpoint.pt"
    resume_from = str(checkpoint) if args.resume and checkpoint.exists() else None
    total = cfg.train.iterations

    def progress(row: dict, trainer, checkpoint_due: bool) -> None:
        if checkpoint_due:
            trainer.save(str(checkpoint))
        metrics = " ".join(f"{k}={row[k]:.4g}" for k in sorted(row)
                           if k.startswith(("w2_", "fid_", "kl", "grad_var")) and isinstance(row[k], float))
        print(f"[{row['step']:>7}/{total}] loss={row['loss']:.4g} {metrics} "
              f"wall={row['wall_s']:.1f}s {row['status']}", file=sys.stderr, flush=True)

    final = run_trial(setup, str(out), args.trial_id, resume_from=resume_from, on_report=progress)
    keep = {k: _json_safe(v) for k, v in final.items() if "." not in k}
    print(json.dumps(keep, sort_keys=True))
    return EXIT_OK if final["status"] == "completed" else EXIT_RUNTIME


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
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
