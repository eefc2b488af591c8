"""Settle ``RAY_AUTH_MODE`` before Ray is imported; entry points call :func:`settle_ray_auth_mode` first.

Ray 2.60 reads ``RAY_AUTH_MODE`` once, when it is imported. Setting it afterwards splits the
process: the GCS started by ``ray.init`` sees ``token`` in its environment while this process
still runs as ``disabled``, so the GCS dies looking for a token nobody created, or the driver is
refused ("Authentication token is missing"). So the mode is made explicit here, by the job
scripts and the ``mmsearch`` command, before anything imports Ray:

* set by the caller (``RAY_AUTH_MODE=disabled`` in tests, or the cluster's own setting, which a
  job started by ``ray job submit`` inherits): kept;
* a job that joins a running cluster (``RAY_ADDRESS``, or started by ``ray job submit``):
  ``token`` when this machine has a token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
  ``~/.ray/auth_token``), else ``disabled`` -- what Ray's own clients do;
* a job that starts Ray on this machine: ``token``, Ray's default for a new local cluster
  (``ray.init`` creates ``~/.ray/auth_token`` when there is none).

This module never imports Ray.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import MutableMapping

log = logging.getLogger(__name__)

AUTH_MODE = "RAY_AUTH_MODE"
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for submitted jobs


def has_ray_token(environ: MutableMapping[str, str]) -> bool:
    if environ.get("RAY_AUTH_TOKEN"):
        return True
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


def settle_ray_auth_mode(environ: MutableMapping[str, str] = os.environ) -> str:
    """Make ``RAY_AUTH_MODE`` explicit (see the module docstring); returns it."""
    if environ.get(AUTH_MODE):
        return environ[AUTH_MODE]
    joining = bool(environ.get("RAY_ADDRESS")) or JOB_CONFIG_ENV in environ
    if "ray" in sys.modules:
        # Too late to choose token: this process already runs as "disabled" (Ray's reading of an
        # unset mode); say so explicitly rather than split the process.
        mode = "disabled"
        log.warning("Ray was imported before RAY_AUTH_MODE was settled; using RAY_AUTH_MODE=disabled")
    elif joining:
        mode = "token" if has_ray_token(environ) else "disabled"
    else:
        mode = "token"
    environ[AUTH_MODE] = mode
    return mode


__all__ = ["has_ray_token", "settle_ray_auth_mode"]
