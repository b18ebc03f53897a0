"""``ablate run --address`` on a two-node Ray cluster started by the test on this machine.

The head node has 1 CPU and no GPU; the worker node has 1 CPU and declares one (fake) GPU. The
sweeps run as ``ablate run`` subprocesses (the product's path), their store is a ``file://`` URI
outside the driver's working directory and outside both nodes' session directories, and every row
records the Ray node id and the GPU ids Ray assigned (there is no CUDA here, so trials assigned a
GPU must train on the CPU). Only the processes the test started are stopped (``Cluster.shutdown``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from toy import ROOT, ablate_cli, toy_space, write_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tiny_space(directory: Path, name: str) -> Path:
    """Two toy trials; ``device: auto``, so that a trial given a GPU would use it."""
    return write_space(directory, toy_space(name, {"weighting.name": {"grid": ["inv_dt", "edm"]}},
                                            base={"train": {"device": "auto"}}))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple]:
    """A head node (1 CPU) and a worker node (1 CPU, 1 GPU); shut down (only these) at the end."""
    from ray.cluster_utils import Cluster

    # a private RAY_TMPDIR holding the nodes' temp dir: Ray writes the cluster's address file into
    # $RAY_TMPDIR/ray, which on a fresh machine (no /tmp/ray yet) must be the head node's own directory
    private = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: unix socket paths are limited
    node_args = {"temp_dir": os.path.join(private, "ray")}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", private)
        # the nodes' workers import ablate, as after `pip install -e` in cluster.yaml's setup_commands
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        two_nodes = Cluster(initialize_head=True, connect=False,
                            head_node_args={"num_cpus": 1, "num_gpus": 0, **node_args})
        try:
            gpu_node = two_nodes.add_node(num_cpus=1, num_gpus=1, **node_args)
            two_nodes.wait_for_nodes()
            yield two_nodes, two_nodes.head_node, gpu_node
        finally:
            two_nodes.shutdown()
            shutil.rmtree(private, ignore_errors=True)


def run_sweep(address: str, space: Path, store_uri: str, cwd: Path, *extra: str) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    done = ablate_cli("run", str(space), "--address", address, "--out", store_uri, "--quiet", *extra,
                      cwd=cwd)
    assert done.returncode == 0, done.stderr[-4000:]


def trial_times(sweep_dir: Path) -> dict[str, tuple[str, str]]:
    """(started, finished) ISO timestamps of each trial, from its attempt and status records."""
    times = {}
    for trial in (sweep_dir / "metrics").iterdir():
        started = json.loads((trial / "_attempt-001.json").read_text())["started"]
        finished = json.loads((trial / "_status.json").read_text())["updated"]
        times[trial.name] = (started, finished)
    return times


def test_trials_use_both_nodes_and_a_fractional_gpu_trial_lands_on_the_gpu_node(cluster, tmp_path):
    two_nodes, head, gpu_node = cluster
    store = tmp_path / "shared store"  # a space: the URI carries %20 and must be decoded
    store_uri = store.as_uri()
    driver_cwd = tmp_path / "driver"

    cpu_space = tiny_space(tmp_path, "cpu_trials")
    run_sweep(two_nodes.address, cpu_space, store_uri, driver_cwd,
              "--set", "train.iterations=400")  # long enough to overlap the other's start-up
    rows = pd.read_parquet(store / "cpu_trials" / "results.parquet")
    assert rows["trial_id"].nunique() == 2
    assert (rows.groupby("trial_id")["status"].last() == "completed").all()
    # each node has 1 CPU and each trial asks for 1, so two concurrent trials need both nodes (trials
    # that ran one after the other could share one reused actor)
    (start_a, end_a), (start_b, end_b) = trial_times(store / "cpu_trials").values()
    assert max(start_a, start_b) < min(end_a, end_b), "the two trials ran one after the other"
    assert set(rows["node_id"]) == {head.node_id, gpu_node.node_id}
    assert (rows["ray_gpu_ids"] == "").all() and (rows["device"] == "cpu").all()

    gpu_space = tiny_space(tmp_path, "gpu_trials")
    run_sweep(two_nodes.address, gpu_space, store_uri, driver_cwd,
              "--set", "tune.resources={cpu: 0.5, gpu: 0.5}",
              # long enough to overlap the other's start-up also on a loaded machine (CI under load saw
              # 400 steps end within the second the other trial's actor started)
              "--set", "train.iterations=2000")
    rows = pd.read_parquet(store / "gpu_trials" / "results.parquet")
    assert rows["trial_id"].nunique() == 2
    assert (rows.groupby("trial_id")["status"].last() == "completed").all()
    assert set(rows["node_id"]) == {gpu_node.node_id}
    # Ray assigned its one GPU to both trials (0.5 each); no CUDA here, so they trained on the CPU
    assert set(rows["ray_gpu_ids"]) == {"0"}
    assert set(rows["device"]) == {"cpu"}
    # packed: the two half-GPU trials ran at the same time on the one GPU
    (start_a, end_a), (start_b, end_b) = trial_times(store / "gpu_trials").values()
    assert max(start_a, start_b) < min(end_a, end_b), "half-GPU trials ran one after the other"

    # results and Tune's experiment live in the store, outside the driver's and the nodes' directories
    for sweep in ("cpu_trials", "gpu_trials"):
        assert (store / sweep / "tune").is_dir()
    assert not any(driver_cwd.iterdir())
    for node in (head, gpu_node):
        assert not store.is_relative_to(node.get_session_dir_path())
