"""The Ray cluster files validate offline with Ray's own launcher code and keep ablate's invariants.

`ray up` resolves a cluster file in `ray.autoscaler._private.commands._bootstrap_config`:
`prepare_config` (provider defaults.yaml merged, setup commands merged, docker checked, per-type
worker limits filled), the provider's own preparation, then `validate_config` (Ray's JSON schema
plus cross-field checks). For AWS the provider step needs boto3 and credentials, so the cloud file
runs everything but that step; the on-premise file (`local` provider) runs the whole resolution.
"""

import copy
import ipaddress
import re
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CLOUD_FILE = REPO_ROOT / "cluster.yaml"
ONPREM_FILE = REPO_ROOT / "examples" / "cluster-onprem.yaml"
PROJECT_INSTALL = "pip install -e ~/ablate"


def load(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def ray_prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged and validated exactly as `ray up` does before contacting a provider."""
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cloud() -> dict[str, Any]:
    return ray_prepared(load(CLOUD_FILE))


@pytest.fixture(scope="module")
def onprem() -> dict[str, Any]:
    return _bootstrap_config(load(ONPREM_FILE), no_config_cache=True)


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node_type
        for name, node_type in config["available_node_types"].items()
        if name != config["head_node_type"]
    }


def assert_installs_synced_project(config: dict[str, Any]) -> None:
    assert config["file_mounts"].get("~/ablate") == ".", "the working dir must sync to ~/ablate"
    assert ".gitignore" in config["rsync_filter"], "runs/ and checkpoints must not be synced"
    for commands in ("head_setup_commands", "worker_setup_commands"):
        assert PROJECT_INSTALL in config[commands], f"{commands} must run {PROJECT_INSTALL!r}"


def assert_pins_tested_ray(config: dict[str, Any]) -> None:
    """The cluster runs the Ray whose schema validated the file (and whose CLI runs `ray up`)."""
    pins = [re.search(r"ray\[[^\]]*\]==(\S+?)\"?$", cmd) for cmd in config["setup_commands"]]
    versions = {pin.group(1) for pin in pins if pin}
    assert versions == {ray.__version__}


# --- cluster.yaml (AWS) ---------------------------------------------------------------------


def test_cloud_file_is_aws_with_cpu_head_and_autoscaling_gpu_workers(cloud: dict[str, Any]) -> None:
    assert cloud["provider"]["type"] == "aws"
    head = cloud["available_node_types"][cloud["head_node_type"]]
    assert head["resources"].get("GPU") == 0
    assert head["max_workers"] == 0

    types = worker_types(cloud)
    for gpu_worker in types.values():
        gpus = gpu_worker["resources"]["GPU"]
        assert isinstance(gpus, int) and gpus >= 1
        assert gpu_worker["min_workers"] == 0
        assert 0 < gpu_worker["max_workers"] <= cloud["max_workers"]
        assert gpu_worker["resources"]["CPU"] >= 1
    # one type for one-GPU trials, one whose node holds a 2-worker trial (vct_cifar10_ddp: 2 x {gpu: 1, cpu: 8})
    assert sorted(t["resources"]["GPU"] for t in types.values()) == [1, 4]
    assert max(t["resources"]["CPU"] for t in types.values()) >= 2 * 8


def test_cloud_file_merges_ray_aws_defaults(cloud: dict[str, Any]) -> None:
    """Keys the file leaves out come from Ray's aws/defaults.yaml (no credentials involved)."""
    assert any("ray start --head" in cmd for cmd in cloud["head_start_ray_commands"])
    assert any("ray start --address" in cmd for cmd in cloud["worker_start_ray_commands"])
    assert "cluster_synced_files" in cloud


def test_cloud_file_installs_the_synced_project_with_the_tested_ray(cloud: dict[str, Any]) -> None:
    assert_installs_synced_project(cloud)
    assert_pins_tested_ray(cloud)
    assert any("boto3" in cmd for cmd in cloud["head_setup_commands"]), "the autoscaler needs boto3"


def test_cloud_container_is_a_pytorch_cuda_image_that_ray_can_drive(cloud: dict[str, Any]) -> None:
    """docker.image is built on each host from a PyTorch CUDA image plus rsync and ssh (which
    Ray's launcher uses inside the container), so it must never be pulled from a registry."""
    image = cloud["docker"]["image"]
    assert cloud["docker"]["pull_before_run"] is False
    builds = cloud["initialization_commands"]
    (build,) = [cmd for cmd in builds if f"docker build -t {image} " in cmd]
    dockerfile = re.search(r"printf '([^']*)'", build).group(1).replace("\\n", "\n")
    base = re.search(r"^FROM (\S+)$", dockerfile, re.MULTILINE).group(1)
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-(runtime|devel)", base), base
    assert re.search(r"^RUN .*apt-get install .*rsync openssh-client", dockerfile, re.MULTILINE)


def test_cloud_storage_is_an_object_store_uri_set_in_the_container(cloud: dict[str, Any]) -> None:
    options = " ".join(cloud["docker"]["run_options"])
    storage = re.search(r"--env ABLATE_STORAGE=(\S+)", options)
    assert storage and storage.group(1).startswith("s3://")


# --- examples/cluster-onprem.yaml (local provider) ----------------------------------------------


def test_onprem_file_is_local_with_head_and_worker_ips(onprem: dict[str, Any]) -> None:
    provider = onprem["provider"]
    assert provider["type"] == "local"
    ipaddress.ip_address(provider["head_ip"])
    assert provider["worker_ips"]
    for worker_ip in provider["worker_ips"]:
        ipaddress.ip_address(worker_ip)
    assert onprem["max_workers"] == len(provider["worker_ips"])


def test_onprem_file_installs_the_synced_project_and_sets_storage(onprem: dict[str, Any]) -> None:
    assert_installs_synced_project(onprem)
    assert_pins_tested_ray(onprem)
    head_start = " ".join(onprem["head_start_ray_commands"])
    assert re.search(r"export ABLATE_STORAGE=\S+ && ray start --head", head_start)


# --- broken copies fail Ray's validation ------------------------------------------------------


def broken_cloud_copies() -> dict[str, dict[str, Any]]:
    raw = load(CLOUD_FILE)
    misspelled = copy.deepcopy(raw)
    misspelled["max_worker"] = misspelled.pop("max_workers")
    fractional_gpu = copy.deepcopy(raw)
    next(iter(worker_types(fractional_gpu).values()))["resources"]["GPU"] = 0.5
    max_workers_as_string = copy.deepcopy(raw)
    max_workers_as_string["max_workers"] = "4"
    unknown_head = copy.deepcopy(raw)
    unknown_head["head_node_type"] = "head.missing"
    return {
        "misspelled top-level key": misspelled,
        "fractional GPU resource": fractional_gpu,
        "max_workers not an integer": max_workers_as_string,
        "head_node_type not a node type": unknown_head,
    }


@pytest.mark.parametrize("broken", broken_cloud_copies().values(), ids=broken_cloud_copies().keys())
def test_broken_cloud_copy_fails_validation(broken: dict[str, Any]) -> None:
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        ray_prepared(broken)


def test_onprem_copy_without_worker_ips_fails() -> None:
    raw = load(ONPREM_FILE)
    del raw["provider"]["worker_ips"]
    with pytest.raises(click.ClickException, match="worker_ips"):
        _bootstrap_config(raw, no_config_cache=True)


def test_onprem_copy_with_misspelled_key_fails() -> None:
    raw = load(ONPREM_FILE)
    raw["setup_command"] = raw.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError, match="setup_command"):
        _bootstrap_config(raw, no_config_cache=True)
