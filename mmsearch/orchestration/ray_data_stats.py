"""Ray Data's statistics actor, created by the job's driver before any trial or Ray Train worker
runs a dataset.

Every Ray Data execution registers with, and every few seconds reports to, one detached actor per
cluster (the statistics behind the dashboard's Ray Data view), created by whichever process
executes a dataset first. Tune's trials and Ray Train's workers run in placement groups that
capture their child tasks and actors, and this actor is created without a scheduling strategy of
its own: made by a trial, it lands in that trial's placement group and is killed when the trial
ends, though detached (the GCS log: ``Actor name datasets_stats_actor is cleaned up``). The next
dataset creates a new, empty one, and every dataset still running in another trial then fails to
report to it: ``Unhandled error ... _StatsActor.update_execution_metrics() ... KeyError:
'dataset_..._0'`` in that trial's log (seen in a streamed 4-trial VQA search, Ray 2.60), and the
dashboard loses those datasets. Created once by the driver, outside any placement group, it lives
as long as the cluster.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

import ray
import ray.data

from mmsearch.orchestration.quiet import quiet_data_context

LOG = logging.getLogger(__name__)


def _rows(batch: dict) -> dict:
    return batch


def trials_may_run_datasets(trial: Any, config: Any, varied: Iterable[str] = ()) -> bool:
    """Whether the trials of ``trial`` (an experiment's trial function) on ``config`` may run Ray
    Data datasets: a job's recipe trial says so for its recipe (``Recipe.ray_streams``: the search's
    ``data.regions: stream``, FuseMix's ``data.backend: ray``), also when the search space varies
    ``data.*`` (``varied``: its dotted keys). A trial function without that hook gets no Ray Data
    wiring, and no statistics actor from the driver (it costs 1-1.7 s)."""
    streams = getattr(trial, "ray_streams", None)
    return callable(streams) and (bool(streams(config)) or any(key.startswith("data.") for key in varied))


def create_ray_data_stats_actor_here() -> bool:
    """Run one tiny Ray Data execution in this process (the driver: outside any placement group),
    which creates Ray Data's statistics actor here if the cluster has none (1-1.7 s on 2 cores,
    mostly the actor's start, which the first trial to run a dataset would otherwise wait for).
    Best effort: trials that never run a dataset do not need it, so a failure is a warning and
    ``False``."""
    context = quiet_data_context(ray.data.DataContext.get_current().copy())
    context.enable_progress_bars = False
    try:
        with ray.data.DataContext.current(context):
            for _ in ray.data.from_items([{"row": 0}]).map_batches(_rows, num_cpus=0).iter_batches():
                pass
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the experiment can still run
        LOG.warning("could not run a Ray Data dataset in the driver (%s: %s); a trial that runs one creates Ray Data's "
                    "statistics actor in its placement group, and it ends with that trial", type(exc).__name__, exc)
        return False
    return True


__all__ = ["create_ray_data_stats_actor_here", "trials_may_run_datasets"]
