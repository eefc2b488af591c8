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


def may_run_datasets(config: Any, varied: Iterable[str] = ()) -> bool:
    """Whether trials or workers of a recipe config may run Ray Data datasets: task data whose rows
    stream (``data.regions: stream``, through Ray Data from ``data.ray_data_min_mib`` stored),
    FuseMix's ``data.backend: ray``, or a search space that varies ``data.*`` (``varied``: its
    dotted keys). Everything else never runs one, and need not pay the driver's 1-1.7 s."""
    data = getattr(config, "data", None)
    return (getattr(data, "regions", None) == "stream" or getattr(data, "backend", None) == "ray"
            or any(key.startswith("data.") for key in varied))


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


__all__ = ["create_ray_data_stats_actor_here", "may_run_datasets"]
