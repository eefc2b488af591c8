"""The function a job runs as a Tune trial: a registered recipe plus a record of where and how it started.

:class:`RecipeTrial` wraps any :class:`~mmsearch.recipes.entry.Recipe`; its name is
``<recipe>_trial`` (``search_trial``, ``fusemix_trial``), which names the trials' directories and
is part of the experiment's plan (a resubmission must run the same recipe). A recipe whose trial
streams its data through Ray Data (``Recipe.ray_streams``) finds on its context a stream factory
(FuseMix's latent stores) and ``wrap_task_data`` (the search: a ``regions: stream`` data set's
streamed rows read by Ray Data tasks, :mod:`mmsearch.orchestration.ray_task_rows`).

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
from mmsearch.orchestration.ray_task_rows import ray_data_task_data
from mmsearch.recipes.context import RunContext
from mmsearch.recipes.entry import Recipe
from mmsearch.recipes.registry import recipe_entry

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


class RecipeTrial:
    """``<recipe>_trial(config, context)``: record the start, then run the recipe on the validated config."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.ray_streams = recipe.ray_streams  # whether a trial on a config runs Ray Data (the driver asks first)
        self.__name__ = self.__qualname__ = f"{recipe.name}_trial"

    def __call__(self, config: Any, context: RunContext) -> Any:
        record_trial_start(context)
        if self.recipe.ray_streams(config):
            import ray.data

            # No progress bars for every epoch's reads in this trial's log (the driver's progress
            # table shows the epochs).
            ray.data.DataContext.get_current().enable_progress_bars = False
            context.stream_factory = ray_stream_factory()  # type: ignore[attr-defined]  # FuseMix's latent streams
            context.wrap_task_data = ray_data_task_data  # type: ignore[attr-defined]  # the search's streamed rows
        return self.recipe.fn(config, context)

    def __repr__(self) -> str:
        return self.__qualname__


def recipe_trial(name: str) -> RecipeTrial:
    """The Tune trial function of the recipe registered as ``name``."""
    return RecipeTrial(recipe_entry(name))


__all__ = ["STARTS_DIR", "RecipeTrial", "record_trial_start", "recipe_trial"]
