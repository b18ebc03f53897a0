"""Losing a Ray node mid-sweep (issue 7): the trials it ran are retried from their checkpoints on the
nodes that remain, and every trial completes with exactly one row per report step.

The test starts its own two-node cluster on this machine (``ray.cluster_utils.Cluster``: a head with
one CPU, a worker with two), runs ``ablate run --address`` against it in a subprocess, and kills the
worker node (raylet and its trial processes, no grace) while a trial that has a checkpoint runs there.
Every Ray process it started is stopped through the cluster's own handles, never ``ray stop``.
"""
from __future__ import annotations

import glob
import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from ablate.spec import load_spec
from toy import ROOT, ablate_cmd, cli_env, toy_space, write_space

TIMEOUT_S = 600
ITERATIONS, REPORT_EVERY, EVAL_EVERY = 600, 20, 60  # trials long enough (~10 s) to be caught mid-run
SPACE = toy_space("node_loss", {"weighting.name": {"grid": ["inv_dt", "edm"]}}, iterations=ITERATIONS,
                  eval_every=EVAL_EVERY, report_every=REPORT_EVERY, base={"data": {"n_train": 2000}},
                  tune={"max_failures": 2})


def trial_processes(node) -> list[psutil.Process]:
    """The processes running trials (Ray Tune actors) under ``node``'s raylet."""
    from ray._private import ray_constants

    raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    return [p for p in raylet.children(recursive=True) if p.name().startswith("ray::ImplicitFunc")]


def rows_written(sweep: Path) -> dict[str, int]:
    return {Path(d).name: len(glob.glob(f"{d}/a*-*.parquet")) for d in glob.glob(str(sweep / "metrics" / "*"))}


@pytest.mark.ray
@pytest.mark.slow
def test_losing_the_node_of_a_running_trial_still_completes_every_trial(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    spec_path = write_space(tmp_path, SPACE)
    trials = [p.trial_name for p in load_spec(str(spec_path)).points()]
    sweep = tmp_path / "runs" / "node_loss"
    env = cli_env(CI="1", TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0")

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    started: list[psutil.Process] = []
    driver = None
    try:
        worker = cluster.add_node(num_cpus=2)
        driver = subprocess.Popen(ablate_cmd("run", str(spec_path), "--out", str(tmp_path / "runs"),
                                             "--address", cluster.address, "--quiet"),
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait until a trial runs on the worker node past its first checkpoint (evaluation at step 60)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert driver.poll() is None, f"the sweep ended before the node was lost: {driver.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "timed out waiting for a trial on the worker node"
            on_worker = trial_processes(worker)
            if on_worker and rows_written(sweep) and min(rows_written(sweep).values()) >= 6 \
                    and len(rows_written(sweep)) == len(trials):
                break
            time.sleep(0.3)
        cluster.remove_node(worker, allow_graceful=False)  # the machine is gone: no clean shutdown
        for process in on_worker:  # its trial processes go with it
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

        _, err = driver.communicate(timeout=TIMEOUT_S)
        assert driver.returncode == 0, err[-3000:]
        started = trial_processes(cluster.head_node)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        if not started and cluster.head_node is not None:
            started = trial_processes(cluster.head_node)
        cluster.shutdown()
        for process in started:  # head-node trial workers that outlive their raylet
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

    rows = pd.read_parquet(sweep / "results.parquet")
    assert not rows.duplicated(["trial_id", "step"]).any()
    steps = sorted(set(range(0, ITERATIONS + 1, REPORT_EVERY)) | set(range(0, ITERATIONS + 1, EVAL_EVERY)))
    for trial_id in trials:
        mine = rows[rows["trial_id"] == trial_id].sort_values("step")
        assert mine["step"].tolist() == steps, f"{trial_id}: gaps or extra rows"
        assert mine["status"].iloc[-1] == "completed"
    resumed = {}  # trial -> resumed_from_step of each later attempt
    for trial_id in trials:
        for f in sorted(glob.glob(str(sweep / "metrics" / trial_id / "_attempt-*.json")))[1:]:
            resumed.setdefault(trial_id, []).append(json.loads(Path(f).read_text())["resumed_from_step"])
    assert resumed, "no trial ran again after its node was lost"
    for trial_id, froms in resumed.items():
        # retried from a checkpoint (an evaluation step), and its rows after that come from the retry
        assert all(step is not None and step > 0 and step % EVAL_EVERY == 0 for step in froms), froms
        mine = rows[rows["trial_id"] == trial_id]
        assert mine.loc[mine["step"] > min(froms), "attempt"].gt(1).all()
