"""Credentials reach workers only through the standard chain of their node, never a runtime env.

The test session runs with canary AWS credentials (``tests/canary.py``, set by conftest before
Ray starts). Here: Tune no longer copies them into trial actors' runtime envs. The search of
``test_resume_after_kill.py`` checks that its trials still find them (from their node's
environment) and that neither the Ray session directory nor the actor records of the state API
hold them; the session Ray's teardown repeats that check after every other test of the session
(FuseMix tuning, derived training, precompute, searches); ``test_cluster_jobs.py`` does it on a
two-node cluster with jobs submitted through ``ray job submit``, with the state API itself.
"""
from __future__ import annotations

from canary import CANARY_CREDENTIALS

from mmsearch.orchestration.credentials import CREDENTIAL_ENV, credential_names, keep_credentials_out_of_runtime_envs


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
