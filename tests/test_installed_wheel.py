"""The package as a user installs it, outside a source checkout: a wheel built from this tree holds
every shipped config, and the ``mmsearch`` subcommands run from that wheel in a directory that is
not a checkout find their default configs (and ``configs/...`` paths) in the package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the package's sources (the checkout is left alone: no build/ or egg-info)."""
    # The build backend is the environment's setuptools (pyproject's dev extras): no build isolation, no index.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "mmsearch", src / "mmsearch", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                           str(src), "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("mmsearch-*.whl")
    return built


def test_the_wheel_ships_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = REPO / "configs"  # the checkout's link to mmsearch/configs
    shipped = {f"mmsearch/configs/{p.relative_to(configs).as_posix()}" for p in configs.rglob("*") if p.is_file()}
    assert {"mmsearch/configs/search/vqa.yaml", "mmsearch/configs/train/fusion/co_attention.yaml",
            "mmsearch/configs/tune/fusemix_scenes.yaml", "mmsearch/configs/deepspeed/zero2_fp32.json"} <= shipped
    assert sorted(shipped - names) == []


# Run in one interpreter (the imports cost seconds): every subcommand that can check without
# running anything, on its default config or a configs/... path, exits 0.
CHECKS = """
import sys
from pathlib import Path
import mmsearch
from mmsearch import cli
site, runs = Path(sys.argv[1]), sys.argv[2]
assert Path(mmsearch.__file__).is_relative_to(site), mmsearch.__file__  # the wheel's package, not the checkout's
commands = [
    ["search", "--task", "vqa", "--check", "--smoke-test", "recipe.data.root=synthetic", "--storage", runs],
    ["search", "--task", "itm", "--check", "--smoke-test", "--storage", runs, "configs/search/itm.yaml",
     "recipe.data.root=synthetic"],
    ["train", "--check", "--smoke-test", "--storage", runs],
    ["train", "--check", "--smoke-test", "--config", "configs/train/vg.yaml", "--storage", runs],
    ["precompute", "--check", "--config", "configs/data/scenes_small.yaml", "--output", runs + "/data"],
]
for command in commands:
    code = cli.main(command)
    print("exit", code, *command, flush=True)
    assert code == 0, command
"""


def test_subcommands_of_the_installed_package_run_outside_a_checkout(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel: unpacking it is installing it
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the venv's editable install of the checkout
    done = subprocess.run([sys.executable, "-c", CHECKS, str(site), str(tmp_path / "runs")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.count("exit 0") == 5
    assert "config valid: vg on synthetic" in done.stdout  # the configs/train/vg.yaml given by path
    assert not (elsewhere / "configs").exists() and list(elsewhere.iterdir()) == []  # nothing written where it ran
