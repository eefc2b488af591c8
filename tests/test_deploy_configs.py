"""The deployment files parse and point at things that exist: the cluster launcher config against
the schema shipped inside ray, the KubeRay manifests, and the node image definition."""
from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_launcher_config_validates_against_rays_schema():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    jsonschema.validate(config, _ray_schema())
    validate_config(prepare_config(copy.deepcopy(config)))  # with the provider's defaults filled in
    # A CPU head and an autoscaling GPU worker group, the project installed on every node.
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    workers = [n for name, n in nodes.items() if name != config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert workers and all(w["min_workers"] < w["max_workers"] for w in workers)
    assert any(w["node_config"]["InstanceType"].startswith(("g", "p")) for w in workers)
    assert any("pip install" in cmd and "/home/ray/mmsearch" in cmd for cmd in config["setup_commands"])
    assert "/home/ray/mmsearch" in config["file_mounts"]


def test_schema_check_catches_a_typo():
    import jsonschema

    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    config["available_node_types"]["head_cpu"]["node_configg"] = {}
    with pytest.raises(jsonschema.ValidationError, match="node_configg"):
        jsonschema.validate(config, _ray_schema())


def _manifests() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "cluster" / "kuberay").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_kuberay_manifests_parse_and_name_ray_resources():
    kinds = {doc["kind"] for doc in _manifests()}
    assert {"RayJob", "RayCluster"} <= kinds
    for doc in _manifests():
        assert doc["apiVersion"] == "ray.io/v1"
        spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
        assert spec["rayVersion"].startswith("2.")
        containers = spec["headGroupSpec"]["template"]["spec"]["containers"]
        assert containers and containers[0]["image"]
        for group in spec["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert "nvidia.com/gpu" in limits


def test_rayjob_entrypoint_runs_an_existing_job_with_an_existing_config():
    from mmsearch.orchestration.jobs.config import load_job_config

    (job,) = [d for d in _manifests() if d["kind"] == "RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).is_file(), argv
    config = argv[argv.index("--config") + 1]
    assert (ROOT / config).is_file()
    assert load_job_config  # the job module imports; the config itself is validated below
    assert "--storage" in argv and argv[argv.index("--storage") + 1].startswith("s3://")


def test_node_image_installs_the_project_and_its_configs():
    text = (ROOT / "cluster" / "Dockerfile").read_text()
    assert text.lstrip().startswith(("#", "ARG", "FROM"))
    assert "FROM ${BASE_IMAGE}" in text
    assert "pip install" in text and "torch==" in text
    for path in ("mmsearch", "jobs"):
        assert f"COPY --chown=ray:ray {path}" in text
        assert (ROOT / path).is_dir()
    # The configs are package data (mmsearch/configs); the image links configs/ to them as the checkout does.
    assert "ln -s mmsearch/configs configs" in text
    assert (ROOT / "configs").is_symlink() and (ROOT / "configs").resolve() == (ROOT / "mmsearch" / "configs").resolve()


def test_nothing_secret_in_deployment_files():
    for path in [ROOT / "ray_cluster.yaml", ROOT / "cluster" / "Dockerfile", *(ROOT / "cluster" / "kuberay").glob("*.yaml")]:
        text = path.read_text().lower()
        for marker in ("aws_secret_access_key", "aws_access_key_id", "password:", "begin rsa private key"):
            assert marker not in text, f"{path.name} holds {marker}"
