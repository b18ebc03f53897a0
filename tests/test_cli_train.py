"""``python -m ablate.cli train CONFIG --out DIR --set k=v`` as a subprocess: output on success, exit 2
with a one-line cause naming the key on bad input, and nothing written then."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "configs" / "toy_li.yaml"
TINY = ["train.iterations=20", "log.report_every=5", "eval.every=20", "eval.samples=200",
        "eval.steps=[1]", "model.hidden=32", "model.depth=2", "train.device=cpu", "data.n_train=512",
        "data.n_holdout=200"]


def start(config: Path | str, out: Path, sets: list[str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "ablate.cli", "train", str(config), "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


def test_train_writes_one_row_per_report_checkpoint_and_json_line(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = finish(start(TOY, out, TINY))
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    final = json.loads(lines[0])
    assert final["status"] == "completed" and final["step"] == 20
    rows = pd.read_parquet(out / "metrics")
    assert sorted(rows["step"]) == [0, 5, 10, 15, 20]
    assert rows.groupby("step").size().max() == 1
    assert rows["w2_1step"].notna().sum() == 2  # step 0 (untrained) and step 20
    assert (rows["kernel.name"] == "li").all() and (rows["train.iterations"] == 20).all()
    assert (out / "checkpoint.pt").is_file()


BAD_YAML = "data: {name: gmm2\nmodel: [\n"
INVALID = {  # id: (config, --set items, text the message must name)
    "unknown-key": (TOY, ["train.learning_rate=0.1"], "train.learning_rate"),
    "wrong-type": (TOY, ["train.iterations=many"], "train.iterations"),
    "unknown-choice": (TOY, ["kernel.name=cosine"], "kernel.name"),
    "s0-above-s1": (TOY, ["discretization.s0=100", "discretization.s1=10"], "s0"),
    "bad-yaml": ("bad.yaml", [], "bad.yaml"),
    "missing-file": ("missing.yaml", [], "missing.yaml"),
}


@pytest.fixture(scope="module")
def invalid_runs(tmp_path_factory) -> dict[str, tuple[Path, tuple[int, str, str]]]:
    """All invalid invocations started at once (each is mostly interpreter start-up)."""
    root = tmp_path_factory.mktemp("invalid")
    (root / "bad.yaml").write_text(BAD_YAML)
    procs = {}
    for name, (config, sets, _) in INVALID.items():
        config = root / config if config in ("bad.yaml", "missing.yaml") else config
        procs[name] = (root / name, start(config, root / name, sets))
    return {name: (out, finish(proc)) for name, (out, proc) in procs.items()}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_input_exits_2_with_one_line_naming_the_key_and_writes_nothing(invalid_runs, name):
    out, (code, stdout, stderr) = invalid_runs[name]
    key = INVALID[name][2]
    assert code == 2, stderr
    message = stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("ablate train:") and key in message, message
    assert stdout == ""
    assert not out.exists()
