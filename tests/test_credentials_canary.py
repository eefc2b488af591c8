"""Credentials reach workers only through the standard chain of their node, never a runtime env.

The test session runs with canary AWS credentials (``tests/canary.py``, set by conftest before
Ray starts). Here: Tune no longer copies them into trial actors' runtime envs, a search's trial
still finds them (from its node's environment), and after the search neither the Ray session
directory nor the actor records of the state API hold them. The session Ray's teardown repeats
the check after every other test of the session (FuseMix tuning, derived training, precompute).
"""
from __future__ import annotations

import os
import sys

import pytest
from canary import CANARY_CREDENTIALS, canary_hits

from mmsearch.config import config_dataclass
from mmsearch.orchestration.credentials import CREDENTIAL_ENV, credential_names, keep_credentials_out_of_runtime_envs
from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings


def test_tune_copies_no_credentials_into_trial_actor_runtime_envs(monkeypatch):
    from ray.tune.execution.class_cache import _ActorClassCache

    for name, value in CANARY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "mmsearch-canary-security-token")
    keep_credentials_out_of_runtime_envs()
    keep_credentials_out_of_runtime_envs()  # idempotent

    class Trainable:
        pass

    remote_cls = _ActorClassCache().get(Trainable)
    env_vars = remote_cls._default_options["runtime_env"]["env_vars"]
    assert not set(CREDENTIAL_ENV) & set(env_vars), env_vars
    assert env_vars.get("PL_DISABLE_FORK") == "1"  # Tune's own defaults still go through
    assert credential_names({"AWS_SESSION_TOKEN": "x", "AWS_REGION": "y"}) == ["AWS_SESSION_TOKEN"]


@config_dataclass
class EnvProbeTrain:
    epochs: int = 2
    lr: float = 0.1


@config_dataclass
class EnvProbeConfig:
    train: EnvProbeTrain = EnvProbeTrain()


def env_probe_recipe(cfg: EnvProbeConfig, context) -> None:
    """Reports whether the trial's process sees the session's key (a flag, never the value)."""
    sees_key = float(os.environ.get("AWS_ACCESS_KEY_ID") == CANARY_CREDENTIALS["AWS_ACCESS_KEY_ID"])
    for epoch in range(1, cfg.train.epochs + 1):
        context.report({"epoch": epoch, "loss": cfg.train.lr / epoch, "sees_key": sees_key})


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_leaves_no_credential_in_ray_logs_or_state_api(ray_session, tmp_path):
    import ray.cloudpickle

    from mmsearch.orchestration.experiment import run_experiment

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    assert os.environ["AWS_ACCESS_KEY_ID"] == CANARY_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    settings = TuneSettings(
        experiment_name="canary",
        metric="loss",
        mode="min",
        storage_path=str(tmp_path),
        search_space={"train.lr": {"grid": [0.1, 0.2]}},
        scheduler=SchedulerSettings(name="fifo"),
        resources=ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0),
        max_failures=0,
    )
    outcome = run_experiment(env_probe_recipe, EnvProbeConfig, {}, settings, epochs_key="train.epochs", verbose=0)
    assert outcome.summary.count("completed") == 2
    # The trials found the key where the standard chain looks: their node's environment.
    assert [r.metrics["sees_key"] for r in outcome.results] == [1.0, 1.0]
    session_dir = ray_session._private.worker._global_node.get_session_dir_path()
    assert (os.path.join(session_dir, "logs", "runtime_env_agent.log"))  # where Ray 2.60 wrote them
    assert canary_hits(session_dir, ray_session.get_runtime_context().gcs_address) == []
    assert canary_hits(tmp_path, None) == []  # nor the experiment's own files
