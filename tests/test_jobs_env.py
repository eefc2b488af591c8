"""RAY_AUTH_MODE is settled before Ray is imported, the way Ray itself would choose it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmsearch.orchestration.jobs.env import settle_ray_auth_mode


@pytest.fixture
def before_ray_import(monkeypatch):
    """Pretend this process has not imported Ray yet (as a job script's first lines)."""
    monkeypatch.delitem(sys.modules, "ray", raising=False)


@pytest.mark.parametrize("mode", ["disabled", "token"])
def test_a_mode_set_by_the_caller_or_the_cluster_is_kept(mode):
    environ = {"RAY_AUTH_MODE": mode, "RAY_ADDRESS": "10.0.0.1:6379"}
    assert settle_ray_auth_mode(environ) == mode and environ["RAY_AUTH_MODE"] == mode


def test_a_local_start_uses_token_auth_like_ray_init(before_ray_import):
    environ: dict[str, str] = {}
    assert settle_ray_auth_mode(environ) == "token" and environ["RAY_AUTH_MODE"] == "token"


def test_joining_a_cluster_uses_a_token_only_when_this_machine_has_one(before_ray_import, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    assert settle_ray_auth_mode({"RAY_ADDRESS": "10.0.0.1:6379"}) == "disabled"
    assert settle_ray_auth_mode({"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}) == "disabled"  # inside `ray job submit`
    assert settle_ray_auth_mode({"RAY_ADDRESS": "10.0.0.1:6379", "RAY_AUTH_TOKEN": "abc"}) == "token"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert settle_ray_auth_mode({"RAY_ADDRESS": "10.0.0.1:6379"}) == "token"


def test_after_ray_was_imported_only_disabled_is_consistent():
    import ray  # noqa: F401  (the state under test: Ray already read an unset mode as "disabled")

    assert settle_ray_auth_mode({}) == "disabled"


@pytest.mark.slow
def test_a_fresh_shell_starts_ray_with_token_auth(tmp_path):
    """No RAY_AUTH_MODE, no token yet: the job's entry sequence starts Ray and runs a task (Ray creates the token)."""
    code = (
        "from mmsearch.orchestration.jobs.env import settle_ray_auth_mode\n"
        "settle_ray_auth_mode()\n"
        "from mmsearch.orchestration.cluster import connect\n"
        "import ray\n"
        "info = connect(num_cpus=1, include_dashboard=False)\n"
        "print(ray.get(ray.remote(lambda: 7).remote()), info.auth_mode)\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "7 token"
    assert (tmp_path / ".ray" / "auth_token").is_file()
