"""The functions the jobs run as Tune trials: a recipe plus a record of where and how it started.

Every start of a trial (the first, a retry after a failure, a resume after the job was killed)
writes ``trial_starts/<utc time>-<random>.json`` into the trial's output directory, which the
trial context mirrors to the trial's directory in storage: the node id and IP, host, process id,
and the checkpoint it restored from (``null`` for a start from scratch). So one can see which
nodes trials ran on, and count how often each one started, from storage alone.
"""
from __future__ import annotations

import datetime as _dt
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from mmsearch.io import atomic_write_json
from mmsearch.orchestration.fusemix_streams import ray_stream_factory
from mmsearch.recipes.context import RunContext
from mmsearch.recipes.fusemix import train_fusemix
from mmsearch.recipes.fusemix_config import FuseMixConfig
from mmsearch.recipes.search import run_search
from mmsearch.recipes.search_config import SearchConfig

STARTS_DIR = "trial_starts"


def record_trial_start(context: RunContext) -> dict[str, Any]:
    """Write this start's record into ``<output_dir>/trial_starts/`` and return it."""
    node_id, node_ip = _node()
    restored = context.restored_checkpoint()
    now = _dt.datetime.now(_dt.timezone.utc)
    record = {
        "time": now.isoformat(timespec="milliseconds"),
        "node_id": node_id,
        "node_ip": node_ip,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        # The checkpoint in storage (a downloaded copy is a checkpoint_tmp_<hex> directory).
        "restored_from": getattr(context, "restored_from", None) or (str(restored) if restored is not None else None),
    }
    name = f"{now.strftime('%Y%m%dT%H%M%S.%f')}-{uuid.uuid4().hex[:8]}.json"
    atomic_write_json(Path(context.output_dir) / STARTS_DIR / name, record)
    return record


def _node() -> tuple[str | None, str | None]:
    import ray

    if not ray.is_initialized():  # a recipe run outside Ray (tests, notebooks)
        return None, None
    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()


def search_trial(config: SearchConfig, context: RunContext) -> None:
    """One supernet search (``run_search``) as a Tune trial."""
    record_trial_start(context)
    run_search(config, context)


def fusemix_trial(config: FuseMixConfig, context: RunContext) -> None:
    """One FuseMix training as a Tune trial; with ``data.backend: ray`` the store streams through Ray Data."""
    record_trial_start(context)
    factory = None
    if config.data.backend == "ray":
        import ray.data

        # This process runs this one trial (reuse_actors=False): keep its log free of the
        # progress bars of every epoch's read (the driver's progress table shows the epochs).
        ray.data.DataContext.get_current().enable_progress_bars = False
        factory = ray_stream_factory()
    train_fusemix(config, context, stream_factory=factory)


__all__ = ["STARTS_DIR", "fusemix_trial", "record_trial_start", "search_trial"]
