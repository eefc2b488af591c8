"""The shortlist stage of the search jobs: retrain the searches' best architectures and anchors, keep the winner.

After the searches (``shortlist.enabled``), the top ``shortlist.k`` *distinct* architectures by
the search estimate (each search trial's best validation metric with the supernet's shared
weights, for the architecture it derived at that epoch) plus the anchors (MCAN and MMnas's prior
at the search's depth) are trained from scratch by the derived-training recipe
(``configs/train/<task>.yaml``, or ``shortlist.train_config``; ``train.epochs`` = ``shortlist.budget``)
as Ray Tune trials under ASHA, the epoch being the fidelity unit: a Tune experiment in
``<experiment>/shortlist-<digest of the candidates>/`` (resumed like every experiment). The trials never touch the test
split (``eval.test: false``). The winner is the best final validation metric among the trials
ASHA let run the whole budget (:func:`mmsearch.evaluation.pick_winner`); its last checkpoint is
then evaluated on the test split, once, in the driver.

Files in the experiment directory:

* ``shortlist.json``: candidates (label, spec, origin, search estimate), per trial the val
  metric per epoch (the ASHA ladder), stop reason, final val; the winner, its test metrics, how
  many test evaluations were made (1), and Kendall's tau between the search estimate and the
  retrained val;
* ``best_arch.json``: the winner's spec, ``source`` saying where it came from; the search's own
  pick stays in ``search_best_arch.json``;
* ``shortlist_candidates/<run>/<label>.json``: the candidate specs the trials train;
* ``search_diagnostics.json`` (every search job, shortlist or not): seed-to-seed agreement of the
  searches' architectures against chance, and the per-block entropy of each one's op probabilities.

A finished shortlist (``shortlist.json`` with the same candidates and a tested winner) is not run
again: a resubmitted job redoes nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import tempfile
from typing import Any, Mapping

from mmsearch.config import ConfigError, apply_overrides, config_path, config_to_dict, read_yaml, validate_config
from mmsearch.tasks import primary_metric
from mmsearch.evaluation import ShortlistSettings, pick_winner, shortlist_candidates
from mmsearch.evaluation.shortlist import estimate_vs_retrained, search_agreement
from mmsearch.nas import block_entropy
from mmsearch.orchestration.asha import validate_scheduler
from mmsearch.orchestration.settings import SchedulerSettings, TuneSettings
from mmsearch.storage import StorageLocation, read_bytes, write_bytes

log = logging.getLogger(__name__)

SHORTLIST_FILE = "shortlist.json"
SHORTLIST_RUN = "shortlist"  # the Tune experiment's directory inside the experiment: shortlist-<candidates digest>
CANDIDATES_DIR = "shortlist_candidates"
SEARCH_BEST_ARCH_FILE = "search_best_arch.json"
DIAGNOSTICS_FILE = "search_diagnostics.json"
# --smoke-test: the standalone training shrunk as for --then-train (2 short epochs, small widths).
SHORTLIST_SMOKE = ("k=2", "budget=2", "grace_period=1", "cpus_per_trial=0.5")


def shortlist_train_config(task: str | None, settings: ShortlistSettings, data_root: str, *, smoke_test: bool) -> Any:
    """The shortlist trials' base training config (a ``TrainDerivedConfig``; every trial sets
    ``arch``) on the search's data (``data_root``), validated now, before any trial, and once."""
    from mmsearch.orchestration.jobs.handoff import THEN_TRAIN_SMOKE
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    if task is None:
        raise ConfigError("shortlist: is for search jobs")
    path = config_path(settings.train_config or f"configs/train/{task}.yaml")
    raw = read_yaml(path)
    raw = raw["recipe"] if "recipe" in raw else raw
    overrides = [*(THEN_TRAIN_SMOKE if smoke_test else ()), f"data.root={data_root}",
                 f"train.epochs={settings.budget}", "eval.test=false", "eval.predictions=false", "eval.every_epochs=1", "arch=mcan"]
    if (raw.get("train") or {}).get("num_threads") is None:  # one trial's share of the CPUs, not all of them
        overrides.append(f"train.num_threads={max(1, int(settings.cpus_per_trial))}")
    cfg = validate_config(TrainDerivedConfig, apply_overrides(dict(raw), overrides), origin=f"{path} (shortlist)")
    if cfg.data.task != task:
        raise ConfigError(f"shortlist.train_config {path} trains task {cfg.data.task!r}, the search is for {task!r}")
    validate_scheduler(_scheduler(settings), recipe_epochs=settings.budget, metric="val_metric", mode="max")
    return cfg


def _scheduler(settings: ShortlistSettings) -> SchedulerSettings:
    return SchedulerSettings(name="asha", grace_period=settings.grace_period, reduction_factor=float(settings.reduction_factor))


def shortlist_run_name(candidates: list[dict[str, Any]]) -> str:
    """``shortlist-<digest>`` of the candidates (labels and specs): a resumed job whose searches
    changed the candidate set (a search trial that finished only now) trains the new set in a
    new Tune experiment instead of failing to resume the old one; the same set resumes its own."""
    key = json.dumps([[c["label"], c["spec"]] for c in candidates], sort_keys=True)
    return f"{SHORTLIST_RUN}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def shortlist_tune_settings(job_tune: TuneSettings, experiment: StorageLocation, settings: ShortlistSettings,
                            candidate_uris: list[str], name: str = SHORTLIST_RUN) -> TuneSettings:
    """Tune settings of the shortlist experiment: one trial per candidate (a grid over ``arch``), ASHA on val."""
    raw = config_to_dict(job_tune)
    raw.update(experiment_name=name, storage_path=experiment.uri, metric="val_metric", mode="max", num_samples=1,
               searcher="random", search_space={"arch": {"grid": candidate_uris}}, scheduler=dataclasses.asdict(_scheduler(settings)))
    raw["resources"] = {**raw["resources"], "cpus_per_trial": settings.cpus_per_trial, "reserve_cpus_for_data": 0.0,
                        "max_concurrent_trials": None}
    return validate_config(TuneSettings, raw, origin="shortlist tune settings")


def shortlist_trial(config: Any, context: Any) -> None:
    """One standalone training of a shortlisted architecture as a Tune trial."""
    from mmsearch.orchestration.jobs.trials import record_trial_start
    from mmsearch.recipes.train_derived.recipe import train_derived

    record_trial_start(context)
    train_derived(config, context)


def _json(location: StorageLocation) -> Any | None:
    raw = read_bytes(location, missing_ok=True)
    return json.loads(raw) if raw is not None else None


def _write_json(location: StorageLocation, data: Any) -> None:
    write_bytes(location, (json.dumps(data, indent=2, default=float) + "\n").encode())


def trial_spec(location: StorageLocation, trial: Any) -> dict[str, Any] | None:
    """A search trial's best architecture spec (its ``best_arch.json``, else its checkpoint's)."""
    candidates = []
    if trial.path:
        candidates.append(dataclasses.replace(location, uri=trial.path).child("best_arch.json"))
    if trial.checkpoint_path:
        checkpoint = dataclasses.replace(location, uri=trial.checkpoint_path)
        candidates += [checkpoint.child("best_arch.json"), checkpoint.child("arch.json")]
    for candidate in candidates:
        spec = _json(candidate)
        if isinstance(spec, dict) and "enc" in spec and "dec" in spec:
            return spec
    return None


def searched_architectures(location: StorageLocation, summary: Any) -> list[dict[str, Any]]:
    """``{"trial_id", "spec", "estimate"}`` of every search trial that left an architecture."""
    out = []
    for trial in summary.trials:
        spec = trial_spec(location, trial)
        if spec is not None and trial.best_metric is not None:
            out.append({"trial_id": trial.trial_id, "spec": spec, "estimate": float(trial.best_metric)})
    return out


def search_diagnostics(searched: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed-to-seed agreement of the searches and the per-block entropy of each one's final op probabilities."""
    from mmsearch.nas import DEFAULT_POOLS

    specs = [s["spec"] for s in searched]
    pools = (specs[0].get("op_pools") if specs else None) or DEFAULT_POOLS
    entropy = {s["trial_id"]: block_entropy(s["spec"]["probs"]) for s in searched if s["spec"].get("probs")}
    return {"agreement": search_agreement(specs, pools), "entropy": entropy}


def write_search_diagnostics(location: StorageLocation, summary: Any) -> dict[str, Any]:
    """``search_diagnostics.json``: how sure and how consistent the experiment's searches were
    (seed-to-seed agreement of their architectures vs chance, per-block entropy of each)."""
    searched = searched_architectures(location, summary)
    record = {"trials": [{"trial_id": s["trial_id"], "estimate": s["estimate"]} for s in searched], **search_diagnostics(searched)}
    _write_json(location.child(DIAGNOSTICS_FILE), record)
    return record


def run_shortlist(location: StorageLocation, job_tune: TuneSettings, settings: ShortlistSettings, train_base: Any,
                  searched: list[dict[str, Any]], depths: tuple[int, int], *, verbose: int = 1) -> dict[str, Any]:
    """Run (or resume, or skip when finished) the shortlist; writes ``shortlist.json`` and ``best_arch.json``."""
    from mmsearch.orchestration.experiment import run_experiment
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    candidates = shortlist_candidates(searched, settings.k, settings.anchors, depths, pool=settings.pool,
                                      pool_from=settings.pool_from, pool_seed=settings.pool_seed)
    done = _json(location.child(SHORTLIST_FILE))
    if isinstance(done, dict) and done.get("candidates") == _plain(candidates) and done.get("winner", {}).get("test"):
        print(f"Shortlist already finished: winner {done['winner']['label']} ({location.child(SHORTLIST_FILE).uri})", flush=True)
        return {**done, "best_arch": _write_winner(location, done)}
    uris, run_name = [], shortlist_run_name(candidates)
    for row in candidates:
        target = location.child(CANDIDATES_DIR).child(run_name).child(f"{row['label']}.json")
        _write_json(target, {**row["spec"], "source": f"shortlist candidate {row['label']}: {row['origin']}"})
        uris.append(target.uri)
    tune_settings = shortlist_tune_settings(job_tune, location, settings, uris, run_name)
    print(f"Shortlist: retraining {len(candidates)} architectures for {settings.budget} epochs under ASHA: "
          + "; ".join(f"{r['label']} ({r['origin']}) {r['arch']}" for r in candidates), flush=True)
    outcome = run_experiment(shortlist_trial, TrainDerivedConfig, train_base, tune_settings, epochs_key="train.epochs",
                             verbose=verbose)
    rows = _retrained_rows(outcome, candidates, uris)
    record = {"settings": dataclasses.asdict(settings), "candidates": _plain(candidates), "rows": rows,
              "experiment": outcome.location.uri, "metric": primary_metric(train_base.data.task),
              "estimate_vs_retrained": estimate_vs_retrained(rows), "search": search_diagnostics(searched),
              "test_evaluations": 0, "winner": None}
    try:
        winner = dict(pick_winner(rows, settings.budget))
    except ValueError as exc:
        record["error"] = str(exc)
        _write_json(location.child(SHORTLIST_FILE), record)
        print(f"Shortlist: no winner ({exc}); best_arch.json stays the search's pick", flush=True)
        return record
    winner["test"] = _evaluate_test(winner["checkpoint"])
    record["test_evaluations"] = 1
    record["winner"] = winner
    _write_json(location.child(SHORTLIST_FILE), record)
    return {**record, "best_arch": _write_winner(location, record)}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


def _retrained_rows(outcome: Any, candidates: list[dict[str, Any]], uris: list[str]) -> list[dict[str, Any]]:
    """One row per candidate: its trial, val per epoch (the ASHA ladder), stop reason, final val, checkpoint."""
    reasons = {t.trial_id: t.stop_reason for t in outcome.summary.trials}
    by_uri: dict[str, Any] = {}
    for result in outcome.results:
        by_uri[str((result.config or {}).get("arch"))] = result
    rows = []
    for row, uri in zip(candidates, uris):
        result = by_uri.get(uri)
        metrics = dict(result.metrics or {}) if result is not None else {}
        frame = result.metrics_dataframe if result is not None else None
        ladder = []
        if frame is not None and {"epoch", "val_metric"} <= set(frame.columns):
            ladder = [[int(e), float(v)] for e, v in zip(frame["epoch"], frame["val_metric"]) if _finite(v)]
        trial_id = metrics.get("trial_id")
        checkpoint = result.checkpoint.path if result is not None and result.checkpoint is not None else None
        fs_prefix = "s3://" if outcome.location.is_s3 and checkpoint and not checkpoint.startswith("s3://") else ""
        rows.append({"label": row["label"], "arch": row["arch"], "origin": row["origin"], "anchor": row["anchor"],
                     "estimate": row["estimate"], "trial_id": trial_id, "stop_reason": reasons.get(trial_id),
                     "epoch": metrics.get("epoch"), "val": metrics.get("val_metric") if _finite(metrics.get("val_metric")) else None,
                     "val_per_epoch": ladder, "checkpoint": (fs_prefix + checkpoint) if checkpoint else None})
    return rows


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _evaluate_test(checkpoint: str | None) -> dict[str, float]:
    """The winner's last checkpoint on the test split: the one test evaluation of the shortlist."""
    import ray.train

    from mmsearch.recipes.train_derived.outputs import evaluate_checkpoint

    if checkpoint is None:
        raise RuntimeError("the shortlist winner has no checkpoint to evaluate")
    with tempfile.TemporaryDirectory(prefix="mmsearch_shortlist_") as tmp:
        local = ray.train.Checkpoint(checkpoint).to_directory(f"{tmp}/checkpoint") if checkpoint.startswith("s3://") else checkpoint
        values = evaluate_checkpoint(local, splits=("test",), output_dir=f"{tmp}/predictions", device="cpu")["test"]
    return {k: float(v) for k, v in values.items() if _finite(v)}


def _write_winner(location: StorageLocation, record: Mapping[str, Any]) -> dict[str, Any]:
    """``best_arch.json`` = the winner's spec; the search's own pick is kept as ``search_best_arch.json``."""
    winner = record["winner"]
    search_pick = _json(location.child("best_arch.json"))
    if isinstance(search_pick, dict) and not str(search_pick.get("source", "")).startswith("shortlist winner"):
        _write_json(location.child(SEARCH_BEST_ARCH_FILE), search_pick)
    spec = next(c["spec"] for c in record["candidates"] if c["label"] == winner["label"])
    metric = record["metric"]
    source = (f"shortlist winner {winner['label']} ({winner['origin']}): retrained val {metric} {winner['val']:.4g} after "
              f"{winner['epoch']} epochs, the best on val of {len(record['rows'])}; test {metric} "
              f"{winner['test'].get(metric, math.nan):.4g} (evaluated once); {location.child(SHORTLIST_FILE).uri}")
    written = {**spec, "source": source}
    _write_json(location.child("best_arch.json"), written)
    return written


__all__ = ["CANDIDATES_DIR", "DIAGNOSTICS_FILE", "SEARCH_BEST_ARCH_FILE", "SHORTLIST_FILE", "SHORTLIST_RUN", "SHORTLIST_SMOKE", "run_shortlist", "shortlist_run_name",
           "search_diagnostics", "searched_architectures", "shortlist_train_config", "shortlist_trial",
           "write_search_diagnostics"]
