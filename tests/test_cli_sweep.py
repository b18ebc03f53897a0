"""``ablate run`` on malformed search-space files: exit code 2, one line naming the file and the key,
no sweep directory and no Ray (run as subprocesses, each with a private RAY_TMPDIR and --out)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toy import ROOT, ablate_cli, cli_env

BAD = ROOT / "tests" / "fixtures" / "bad_specs"
TIMEOUT_S = 300

#: corpus file -> the key its one-line error must name
KEY_OF = {
    "bad_mode.yaml": "tune.mode",
    "bad_yaml.yaml": "line 3, column 7",
    "beta_negative.yaml": "base.coupling.beta",
    "grid_continuous.yaml": "space.train.lr.uniform",
    "mu_out_of_range.yaml": "base.coupling.mu",
    "negative_resources.yaml": "tune.resources.gpu",
    "profile_bad_value.yaml": "profiles.cpu.train.iterations",
    "s0_above_s1.yaml": "space.discretization.s0",
    "swept_key_missing.yaml": "space.coupling.beta",
    "unknown_choice.yaml": "space.weighting.name",
    "unknown_distribution.yaml": "space.train.lr.normal",
    "unknown_key.yaml": "base.train.learning_rate",
    "unknown_metric.yaml": "tune.metric",
    "unknown_scheduler.yaml": "tune.scheduler.name",
    "unknown_top_key.yaml": "spaces",
    "when_unknown_key.yaml": "space.train.lr.when.coupling.kind",
    "wrong_type.yaml": "base.train.iterations",
    "zero_samples.yaml": "tune.searcher.num_samples",
}


def test_key_table_covers_the_corpus():
    assert {p.name for p in BAD.glob("*.yaml")} == set(KEY_OF)


# One driver process runs ``ablate.cli.main(["run", FILE, ...])`` for every case (the exit code and
# the stderr of each call), so torch is imported once, not 18 times; it then reports whether ray was
# ever imported. Two files also run as real ``python -m ablate.cli run`` processes below.
DRIVER = """
import contextlib, io, json, sys
from ablate.cli import main
out = {}
for name, argv in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(argv)
    out[name] = {"code": code, "stderr": err.getvalue(), "stdout": std.getvalue()}
out["ray imported"] = any(m.split(".")[0] == "ray" for m in sys.modules)
print(json.dumps(out))
"""


def _check_one_line(name: str, code: int, stderr: str, stdout: str) -> str:
    lines = stderr.strip().splitlines()
    assert code == 2, (name, stderr)
    assert len(lines) == 1, (name, stderr)
    assert lines[0].startswith(f"ablate run: {BAD / name}: {KEY_OF[name]}"), (name, lines[0])
    assert stdout == "", (name, stdout)
    return lines[0].split(f"{name}: ", 1)[1]


def test_every_malformed_input_exits_2_with_its_own_message_and_starts_nothing(tmp_path):
    """The corpus, an unknown --profile and an impossible --set, all in one driver process."""
    (tmp_path / "ray").mkdir()
    out = str(tmp_path / "out")
    quickstart = str(ROOT / "searchspaces" / "quickstart.yaml")
    jobs = [(name, ["run", str(BAD / name), "--out", out, "--num-cpus", "1", "--quiet"])
            for name in sorted(KEY_OF)]
    jobs += [("profile", ["run", quickstart, "--out", out, "--profile", "gpu_farm"]),
             ("set", ["run", quickstart, "--out", out, "--set", "train.iterations=0"])]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs)], cwd=ROOT,
                          env=cli_env(RAY_TMPDIR=str(tmp_path / "ray")), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    messages = {name: _check_one_line(name, **results[name]) for name in KEY_OF}
    assert len(set(messages.values())) == len(messages), "two files share one message"
    for case, expected in (("profile", f"ablate run: {quickstart}: --profile: unknown profile "
                                       "'gpu_farm'; valid: cpu"),
                           ("set", f"ablate run: {quickstart}: --set train.iterations: Input "
                                   "should be greater than or equal to 1")):
        assert results[case]["code"] == 2, results[case]
        assert results[case]["stderr"].strip() == expected or \
            results[case]["stderr"].startswith(expected), results[case]
        assert len(results[case]["stderr"].strip().splitlines()) == 1, results[case]
    assert results["ray imported"] is False
    assert not (tmp_path / "out").exists(), "a sweep directory was created"
    assert list((tmp_path / "ray").iterdir()) == [], "Ray left a session behind"


@pytest.mark.parametrize("name", ["bad_yaml.yaml", "s0_above_s1.yaml"])
def test_malformed_file_as_a_process(tmp_path, name):
    """The real command line: process exit code 2, no --out directory, nothing under RAY_TMPDIR."""
    (tmp_path / "ray").mkdir()
    proc = ablate_cli("run", str(BAD / name), "--out", str(tmp_path / "out"), "--num-cpus", "1",
                      env=cli_env(RAY_TMPDIR=str(tmp_path / "ray")), timeout=TIMEOUT_S)
    _check_one_line(name, proc.returncode, proc.stderr, proc.stdout)
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "ray").iterdir()) == []
