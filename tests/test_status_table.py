"""``ablate status`` on a sweep directory written by hand (no Ray): the table from the store and the
sweep's own record."""
from __future__ import annotations

import json
from pathlib import Path

from ablate.results import TrialWriter
from ablate.spec import load_spec
from toy import ablate_cli, toy_space, write_space


def test_status_shows_the_arm_of_a_trial_without_rows(tmp_path: Path) -> None:
    space = write_space(tmp_path, toy_space("tiny", {"weighting.name": {"grid": ["inv_dt", "edm"]}}))
    sweep = tmp_path / "runs" / "tiny"
    sweep.mkdir(parents=True)
    (sweep / "spec.yaml").write_text(space.read_text())
    (sweep / "sweep.json").write_text(json.dumps({"name": "tiny", "source": str(space), "profile": None,
                                                  "overrides": {}, "workdir": str(tmp_path)}))
    reported, starting = load_spec(str(space)).points()
    writer = TrialWriter(str(sweep), reported.trial_name)
    writer.begin_attempt(None)
    writer.append([{"step": 0, "arm": "weighting.name=inv_dt", "w2_1step": 0.5, "status": "running"}])
    writer = TrialWriter(str(sweep), starting.trial_name)  # started, no row yet
    writer.begin_attempt(None)
    writer.set_status("running", step=0)

    status = ablate_cli("status", str(sweep), timeout=120)
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert lines[starting.trial_name].split()[-2:] == ["running", "weighting.name=edm"]
    assert lines[reported.trial_name].split()[-1] == "weighting.name=inv_dt"
