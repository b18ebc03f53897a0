"""Faults the sweep tests inject into real trials, through ablate's report hook
(``ABLATE_REPORT_HOOK=faults:inject``, :data:`ablate.sweep_trial.REPORT_HOOK_ENV`); :func:`fault_env`
gives a driver the environment that turns them on. At report step ``ABLATE_FAULT_STEP``:

- a trial whose id contains ``ABLATE_FAULT_TRIALS`` (every trial if unset) fails once, on its first
  attempt; one whose id contains ``ABLATE_FAULT_ALWAYS`` fails on every attempt (it ends errored when
  its retries run out);
- failing is raising on rank 0, or, with ``ABLATE_FAULT_KILL_RANK=K``, rank K of a multi-worker trial
  killing its own process (a worker lost mid-run, not an exception);
- with ``ABLATE_FAULT_WAIT_FOR=PATH``, a trial does not fail: it creates ``PATH.reached`` and waits until
  PATH exists (the row is stored; its checkpoint and Tune's hearing of it follow), so that a test can
  act on the driver at a known moment.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def fault_env(**faults: str) -> dict[str, str]:
    """What a driver's environment adds for ``faults`` (``ABLATE_FAULT_*=...``) to reach its trials."""
    return {"ABLATE_REPORT_HOOK": "faults:inject",
            "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), **faults}


def inject(trial_id: str, row: dict[str, Any], rank: int, first_attempt: bool) -> None:
    at = os.environ.get("ABLATE_FAULT_STEP")
    if not at or int(at) != row["step"]:
        return
    always, which = os.environ.get("ABLATE_FAULT_ALWAYS"), os.environ.get("ABLATE_FAULT_TRIALS")
    due = bool(always and always in trial_id) or (first_attempt and (which is None or which in trial_id))
    if not due:
        return
    gate = os.environ.get("ABLATE_FAULT_WAIT_FOR")
    if gate:
        Path(gate + ".reached").touch()
        deadline = time.monotonic() + 600
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise RuntimeError(f"injected wait: {gate} never appeared")
            time.sleep(0.1)
        return
    kill_rank = os.environ.get("ABLATE_FAULT_KILL_RANK")
    if kill_rank is not None:
        if int(kill_rank) == rank:
            os.kill(os.getpid(), signal.SIGKILL)
    elif rank == 0:
        raise RuntimeError(f"injected fault at step {row['step']}")
