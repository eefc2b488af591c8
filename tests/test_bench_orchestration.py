"""The orchestration benchmarks' arithmetic on hand-made trial timelines (the benchmarks themselves
run Ray for minutes; they are checked with ``--tiny`` by hand and run in full on a quiet machine)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_asha_vs_fifo import seed_noise  # noqa: E402
from bench_orchestration import breakdown, search_base_config  # noqa: E402


def timeline(process_t: float, epochs: list[float], *, pid: int, start_s=2.0, imports_s=1.0, data_s=0.5, model_s=0.25, cycle=0.125,
             entered: float | None = None):
    """Reports of one trial: process start, then setup, then epochs each followed by a report cycle
    (``entered``: when the trial began in a process that ran an earlier one)."""
    entered = process_t + start_s if entered is None else entered
    t = entered + imports_s + data_s + model_s
    rows = []
    for epoch, seconds in enumerate(epochs, start=1):
        t += seconds + cycle
        rows.append({"epoch": epoch, "epoch_s": seconds, "bench_report_t": t, "bench_process_t": process_t, "bench_pid": pid,
                     "bench_entered_t": entered, "bench_imports_s": imports_s, "bench_data_s": data_s,
                     "bench_cpu_s": 10.0 * epoch})
    return rows


def test_breakdown_recovers_the_timeline_and_accounts_for_every_slot_second():
    # Two slots; trial A then C in slot 1, trial B in slot 2 (idle after B). Lifetimes: 3.875 + 3 x 4.125.
    a = timeline(0.0, [4.0, 4.0, 4.0], pid=1)
    c = timeline(16.5, [4.0, 4.0, 4.0], pid=3)
    b = timeline(0.0, [8.0, 8.0, 8.0], pid=2)
    wall = 33.0
    figures = breakdown([a, b, c], wall=wall, slots=2, cpus_per_trial=1.0)
    seconds = figures["seconds"]
    assert seconds["training"] == pytest.approx(48.0)
    assert seconds["actor_start"] == pytest.approx(6.0) and seconds["imports"] == pytest.approx(3.0)
    assert seconds["data_setup"] == pytest.approx(1.5) and seconds["model_setup"] == pytest.approx(0.75)
    assert seconds["epoch_reporting"] == pytest.approx(9 * 0.125)
    assert sum(seconds.values()) == pytest.approx(2 * wall)  # idle is the remainder, never negative here
    assert seconds["slots_idle"] == pytest.approx(66.0 - 48.0 - 6.0 - 3.0 - 1.5 - 0.75 - 1.125)
    assert figures["efficiency"] == pytest.approx(48.0 / 66.0)
    assert figures["trial_epochs"] == 9 and figures["cpu_s"] == pytest.approx(90.0)
    assert sum(figures["share"].values()) == pytest.approx(1.0)


def test_a_trial_in_a_reused_process_counts_no_actor_start():
    # Slot 1: trial A, then C in A's process (entered at 17.0, 0.5 s after A's last report cycle).
    a = timeline(0.0, [4.0, 4.0, 4.0], pid=1)
    c = timeline(0.0, [4.0, 4.0, 4.0], pid=1, entered=17.0, imports_s=0.0)
    b = timeline(0.0, [8.0, 8.0, 8.0], pid=2)
    figures = breakdown([c, a, b], wall=33.0, slots=2, cpus_per_trial=1.0)  # any order: C follows A by its entry time
    seconds = figures["seconds"]
    assert seconds["actor_start"] == pytest.approx(2 * 2.0)  # A and B started processes; C did not
    assert seconds["imports"] == pytest.approx(2 * 1.0)
    assert sum(seconds.values()) == pytest.approx(2 * 33.0)
    lifetime_c = c[-1]["bench_report_t"] + 0.125 - 17.0
    lifetime_a = a[-1]["bench_report_t"] + 0.125
    lifetime_b = b[-1]["bench_report_t"] + 0.125
    assert figures["mean_trial_lifetime_s"] == pytest.approx((lifetime_a + lifetime_b + lifetime_c) / 3)


def test_efficiency_counts_the_cores_a_trial_holds():
    trial = timeline(0.0, [5.0, 5.0], pid=1)
    one_slot = breakdown([trial], wall=14.0, slots=1, cpus_per_trial=2.0)
    assert one_slot["efficiency"] == pytest.approx(10.0 * 2 / (14.0 * 2))


def test_seed_noise_groups_seeds_of_a_configuration():
    fifo = {"trials": [
        {"config": {"search.weight_lr": 0.001, "seed": s}, "best_val_metric": v} for s, v in enumerate([50.0, 54.0, 52.0])
    ] + [
        {"config": {"search.weight_lr": 0.003, "seed": s}, "best_val_metric": v} for s, v in enumerate([60.0, 61.0, 62.0])
    ] + [{"config": {"search.weight_lr": 0.01, "seed": 0}, "best_val_metric": None}]}
    noise = seed_noise(fifo)
    assert noise["best_config"] == "0.003" and noise["best_config_std"] == pytest.approx(1.0)
    assert noise["by_config"]["0.001"]["range"] == 4.0 and noise["mean_std"] == pytest.approx((2.0 + 1.0) / 2)


def test_benchmarks_run_the_shipped_search_config_validated():
    from mmsearch.config import load_config
    from mmsearch.recipes.search.config import SearchConfig

    base = search_base_config(epochs=4, threads=1, overrides={"search.weight_lr": 0.002})
    cfg = load_config(SearchConfig, base)
    assert (cfg.data.root, cfg.search.epochs, cfg.search.warmup_epochs, cfg.search.num_threads) == ("synthetic", 4, 1, 1)
    assert cfg.search.weight_lr == 0.002 and cfg.model.enc_depth == 4 and cfg.model.dec_depth == 6
