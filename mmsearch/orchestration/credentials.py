"""Keep AWS credentials out of Ray runtime environments (workers use the standard chain of their node).

Ray Tune 2.60 copies ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and
``AWS_SECURITY_TOKEN`` from the driver's environment into the ``runtime_env`` of every trial
actor (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``, read each time a trainable's
actor class is made). Ray then writes that runtime env in plain text to the session's
``logs/runtime_env_agent.log`` and serves it through the state API (``ray list actors
--detail``). Ray offers no switch for it, so :func:`keep_credentials_out_of_runtime_envs`
removes the credential names from that set, in this process, before any trial starts
(:func:`mmsearch.orchestration.cluster.connect` and ``run_experiment`` call it; calling it
again does nothing).

Workers then find credentials as any AWS client does on their node: the environment the node's
Ray was started with (a local ``ray.init`` starts Ray with the driver's environment, so a local
search works as before), ``~/.aws/credentials``, or the instance profile / IRSA role on a
cluster. Ray Train V2 and Ray Data forward no credentials. A submitted job's own
``--runtime-env-json`` is the user's; :func:`credential_names` lets callers warn about it.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def keep_credentials_out_of_runtime_envs() -> None:
    """Stop Ray Tune copying the driver's AWS credentials into trial actors' runtime envs."""
    from ray.tune.execution import class_cache  # the set Tune reads when it makes a trial's actor class

    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(propagated, set):  # Ray changed the mechanism: the canary tests say whether it still leaks
        log.warning("ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE not found; cannot check what Tune forwards")
        return
    propagated.difference_update(CREDENTIAL_ENV)


def credential_names(env_vars: Mapping[str, Any] | Iterable[str]) -> list[str]:
    """The credential variable names among ``env_vars`` (a runtime env's ``env_vars``), sorted."""
    return sorted(set(env_vars) & set(CREDENTIAL_ENV))


__all__ = ["CREDENTIAL_ENV", "credential_names", "keep_credentials_out_of_runtime_envs"]
