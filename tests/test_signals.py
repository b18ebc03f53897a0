"""SIGINT and SIGTERM to a sweep's driver (issue 21).

``StopSignals`` (ablate/interrupt.py) in a child process that signals itself; then real ``ablate run``
drivers on a toy sweep (real local Ray, each with a private RAY_TMPDIR) stopped by SIGINT, SIGTERM and a
double SIGINT, and resumed: exit status, the one-line message, the statuses the store records, rows
kept, and a resume that completes every trial with exactly one row per (trial, step). ``ablate
figures`` runs on the sweep while its trials are still running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from ablate.results import read_rows, trial_status
from ablate.spec import load_spec
from toy import ROOT, ablate_cli, ablate_cmd, cli_env, toy_space, write_space

# ---------------------------------------------------------------------------------- StopSignals
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from ablate import interrupt

    interrupt.SAVE_WAIT_S = 0.5
    mode = sys.argv[1]
    asked = []

    def request_stop():
        asked.append(True)
        return mode != "nothing-to-stop"

    try:
        with interrupt.StopSignals(request_stop, notice="stopping", farewell="quit") as signals:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            print("first", signals.received, len(asked), flush=True)
            if mode == "saved":
                signals.saved()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            print("second waits", flush=True)
            if mode == "saving":
                signals.saved()
            time.sleep(30)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
              signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
""")


def child(mode: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=60)
    return done, time.monotonic() - start


def test_second_signal_exits_at_once_with_its_status_once_the_stop_has_saved() -> None:
    done, _ = child("saved")
    assert done.returncode == 128 + signal.SIGTERM
    assert done.stdout.split("\n")[:2] == [f"first {int(signal.SIGINT)} 1", ""]  # nothing after the exit
    assert done.stderr == "stopping\nquit\n"


def test_second_signal_during_the_save_exits_when_the_save_is_over() -> None:
    done, _ = child("saving")
    assert done.returncode == 128 + signal.SIGTERM
    assert done.stdout.splitlines() == [f"first {int(signal.SIGINT)} 1", "second waits"]
    assert done.stderr == "stopping\nquit\n"


def test_second_signal_waits_for_a_save_that_never_ends_only_so_long() -> None:
    done, took = child("never-saved")
    assert done.returncode == 128 + signal.SIGTERM and done.stdout.splitlines()[-1] == "second waits"
    assert took < 20  # SAVE_WAIT_S = 0.5 s here, not the 30 s the child would sleep


def test_first_signal_with_nothing_to_stop_raises_keyboard_interrupt_and_handlers_come_back() -> None:
    done, _ = child("nothing-to-stop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["KeyboardInterrupt True True"]
    assert done.stderr == "stopping\n"


# ------------------------------------------------------------------------------ real sweeps
REPORT_EVERY, EVAL_EVERY = 50, 100  # signals go once a trial is past its first checkpoint (step 100)
TIMEOUT_S = 540


def report_steps(iterations: int) -> list[int]:
    return sorted({0, iterations} | set(range(0, iterations + 1, REPORT_EVERY))
                  | set(range(0, iterations + 1, EVAL_EVERY)))


def write_spec(directory: Path, arms: list[str], iterations: int = 600) -> Path:
    """A toy sweep over ``arms``, two trials at a time, each ~10 s on an idle core."""
    return write_space(directory, toy_space(
        "tiny", {"weighting.name": {"grid": arms}}, iterations=iterations, eval_every=EVAL_EVERY,
        report_every=REPORT_EVERY, base={"data": {"n_train": 2000}}))


class Driver:
    """``ablate run`` in the background, its output in files (read while it runs)."""

    def __init__(self, tmp_path: Path, ray_tmp: str, spec: Path):
        self.stdout, self.stderr = tmp_path / "run.out", tmp_path / "run.err"
        self.sweep = tmp_path / "runs" / "tiny"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                ablate_cmd("run", str(spec), "--out", str(tmp_path / "runs"), "--num-cpus", "2", "--quiet"),
                cwd=ROOT, env=cli_env(RAY_TMPDIR=ray_tmp), stdout=out, stderr=err, text=True,
                start_new_session=True)  # its process group: the driver and the Ray processes it starts

    def ctrl_c(self) -> None:
        """SIGINT as a terminal's Ctrl-C sends it: to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()

    def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        """Poll ``condition`` until it gives something other than None or False, and return that."""
        deadline = time.monotonic() + TIMEOUT_S
        while (value := condition()) is None or value is False:
            if self.process.poll() is not None:
                pytest.fail(f"the driver exited ({self.process.returncode}) before {what}:\n"
                            + "\n".join(self.output())[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.3)
        return value

    def rows_past(self, step: int) -> pd.DataFrame | None:
        """The rows so far, once some trial has reported beyond ``step`` (and has a checkpoint)."""
        try:
            rows = read_rows(str(self.sweep))
        except (FileNotFoundError, ValueError):
            return None
        return rows if len(rows) and rows["step"].max() > step else None

    def finish(self, timeout: float = 120) -> float:
        """Seconds until the driver exits."""
        start = time.monotonic()
        self.process.wait(timeout=timeout)
        return time.monotonic() - start


def statuses(sweep: Path) -> dict[str, str]:
    return trial_status(str(sweep)).set_index("trial_id")["status"].to_dict()


def status_column(sweep: Path) -> dict[str, str]:
    """``ablate status``: trial -> its status column."""
    done = ablate_cli("status", str(sweep), timeout=120)
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line.split()[4] for line in done.stdout.splitlines()[2:]
            if line.strip() and not line.lstrip().startswith("error:")}


def kept(before: pd.DataFrame, after: pd.DataFrame) -> bool:
    """Every row of ``before`` is in ``after`` with the same loss."""
    joined = before[["trial_id", "step", "loss"]].merge(after[["trial_id", "step", "loss"]],
                                                        on=["trial_id", "step"], how="left")
    return bool(((joined["loss_x"] == joined["loss_y"]) | joined["loss_x"].isna()).all())


def resume_completes(sweep: Path, ray_tmp: str, trials: list[str], iterations: int = 600) -> None:
    done = ablate_cli("resume", str(sweep), "--quiet", env=cli_env(RAY_TMPDIR=ray_tmp), timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = read_rows(str(sweep))
    assert not rows.duplicated(["trial_id", "step"]).any()
    for trial in trials:
        assert rows.loc[rows["trial_id"] == trial, "step"].tolist() == report_steps(iterations), trial
    assert set(statuses(sweep).values()) == {"completed"}
    assert set(status_column(sweep).values()) == {"completed"}


def check_interrupted(driver: Driver, signum: int, before: pd.DataFrame) -> None:
    out, err = driver.output()
    assert driver.process.returncode == 128 + signum, err[-3000:]
    assert f"ablate run: interrupted; `ablate resume {driver.sweep}` continues it" in err.splitlines()
    assert "Tuner.restore" not in out + err and "SIGTERM received" not in err
    stopped = statuses(driver.sweep)
    assert set(before["trial_id"]) <= set(stopped) and set(stopped.values()) <= {"interrupted", "completed"}
    assert "interrupted" in stopped.values()
    assert status_column(driver.sweep) == stopped  # `ablate status` says the same
    assert kept(before, read_rows(str(driver.sweep)))  # the rows written before the signal are there


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_which_resume_completes_and_figures_read_it_while_it_ran(
        tmp_path: Path, ray_tmp: str) -> None:
    # longer trials, two at a time (the third waits): still running after `ablate figures` (on an idle
    # machine 1000 steps were not: two trials ended and the third had not started when the signal came)
    spec = write_spec(tmp_path, ["inv_dt", "edm", "uniform"], iterations=3000)
    trials = [p.trial_name for p in load_spec(str(spec)).points()]
    driver = Driver(tmp_path, ray_tmp, spec)
    so_far = driver.wait_for(lambda: driver.rows_past(EVAL_EVERY), "rows past the first checkpoint")

    figures = ablate_cli("figures", str(driver.sweep), "-o", str(tmp_path / "report"), timeout=TIMEOUT_S)
    assert figures.returncode == 0, figures.stderr[-3000:]
    assert driver.process.poll() is None, "the sweep ended before the test could interrupt it"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "**The sweep is still running**" in report.split("## Trials")[0]
    table = {cells[1].strip(): cells for cells in (line.split("|") for line in report.splitlines())
             if len(cells) == 8 and cells[1].strip() in trials}
    for trial, last in so_far.groupby("trial_id")["step"].max().items():
        assert int(table[trial][5]) >= last  # the report covers every row there was when it began

    before = read_rows(str(driver.sweep))
    driver.ctrl_c()
    driver.finish()
    check_interrupted(driver, signal.SIGINT, before)
    resume_completes(driver.sweep, ray_tmp, trials, iterations=3000)


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path: Path, ray_tmp: str) -> None:
    spec = write_spec(tmp_path, ["inv_dt", "edm"])
    driver = Driver(tmp_path, ray_tmp, spec)
    driver.wait_for(lambda: driver.rows_past(EVAL_EVERY), "rows past the first checkpoint")
    before = read_rows(str(driver.sweep))
    driver.process.send_signal(signal.SIGTERM)  # to the driver alone, as `timeout` sends it
    driver.finish()
    check_interrupted(driver, signal.SIGTERM, before)
    resume_completes(driver.sweep, ray_tmp, [p.trial_name for p in load_spec(str(spec)).points()])


@pytest.mark.ray
@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_and_resume_still_completes(tmp_path: Path, ray_tmp: str) -> None:
    spec = write_spec(tmp_path, ["inv_dt", "edm"])
    driver = Driver(tmp_path, ray_tmp, spec)
    driver.wait_for(lambda: driver.rows_past(EVAL_EVERY), "rows past the first checkpoint")
    before = read_rows(str(driver.sweep))
    driver.ctrl_c()
    driver.wait_for(lambda: "stopping" in driver.output()[1], "the driver to say it is stopping")
    driver.ctrl_c()
    took = driver.finish(timeout=30)
    out, err = driver.output()
    assert driver.process.returncode == 130
    assert f"ablate run: stopped at once; `ablate resume {driver.sweep}` continues it" in err.splitlines()
    assert "interrupted;" not in err and "Tuner.restore" not in err
    assert took < 15, f"{took:.1f} s after the second Ctrl-C"
    assert kept(before, read_rows(str(driver.sweep)))
    resume_completes(driver.sweep, ray_tmp, [p.trial_name for p in load_spec(str(spec)).points()])
