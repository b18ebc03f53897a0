"""The README's quick start, run as a new user types it: the commands are read from README.md itself
and run with their default arguments in a fresh copy of the repository's tracked files, with the
working directory at its root. Editing the README's commands or breaking a default path fails here."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from toy import ROOT, SWEEP_TIMEOUT_S, cli_env


def quick_start_commands(readme: str) -> list[str]:
    """The ``ablate ...`` command lines of the README's *Quick start* section, comments stripped, in
    order (the test-suite line is what CI runs anyway)."""
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = []
    for line in section.splitlines():
        if not line.startswith("    "):  # indented code blocks only
            continue
        command = line.strip().split("  #", 1)[0].split(" # ", 1)[0].strip()
        if command.startswith("ablate "):
            commands.append(command)
    return commands


def test_the_quick_start_block_is_found():
    commands = quick_start_commands((ROOT / "README.md").read_text())
    verbs = [shlex.split(c)[1] for c in commands]
    assert verbs[0] == "run" and "status" in verbs and "figures" in verbs, commands


def tracked_copy(target: Path) -> Path:
    """The repository's tracked files (as they are in this working tree) copied to ``target``."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
@pytest.mark.ray
def test_readme_quick_start_runs_verbatim(tmp_path, ray_tmp):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    clone = tracked_copy(tmp_path / "clone")
    commands = quick_start_commands((clone / "README.md").read_text())
    bin_dir = os.path.dirname(sys.executable)  # where `pip install -e .` put the `ablate` command
    env = cli_env(RAY_TMPDIR=ray_tmp, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONPATH"] = str(clone)  # the copy's code, not this checkout's
    outputs = {}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=SWEEP_TIMEOUT_S)
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        outputs[command] = done

    space = yaml.safe_load((clone / "searchspaces" / "quickstart.yaml").read_text())
    iterations = space["base"]["train"]["iterations"]
    arms = 1
    for distribution in space["space"].values():
        arms *= len(distribution["grid"])
    results = pd.read_parquet(clone / "runs" / "quickstart" / "results.parquet")
    last = results.groupby("trial_id")["step"].max()
    assert len(last) == arms * len(space["seeds"]) and (last == iterations).all(), last
    final = results.sort_values("step").groupby("trial_id").tail(1)
    assert (final["status"] == "completed").all(), final[["trial_id", "status"]]
    assert results.groupby("trial_id")["step"].apply(lambda s: s.is_unique).all()
    assert not list(Path(ray_tmp).rglob("runs/quickstart")), "trials wrote into Ray's directories"

    status = next(done for command, done in outputs.items() if " status " in f" {command} ")
    for trial_id in last.index:
        assert trial_id in status.stdout
    assert (clone / "runs" / "quickstart" / "report" / "report.md").exists()
    train = [c for c in commands if shlex.split(c)[1] == "train"]
    for command in train:  # the README says its rows are what pandas reads from OUT/metrics
        out = shlex.split(command)[shlex.split(command).index("--out") + 1]
        rows = pd.read_parquet(clone / out / "metrics")
        assert rows["step"].max() == int(re.search(r"train.iterations=(\d+)", command).group(1))
