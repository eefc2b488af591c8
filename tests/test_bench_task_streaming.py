"""bench/bench_task_streaming.py --quick: both modes serve every row of each size, with figures and provenance."""
from __future__ import annotations

import json

import pytest

from test_bench_provenance import check_provenance, load_bench


def _bench():
    return load_bench("bench_task_streaming.py")


def test_quick_run_measures_both_modes_at_every_size(tmp_path):
    out = tmp_path / "streaming.json"
    args = ["--quick", "--out", str(out)]
    assert _bench().main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_task_streaming.py", args)
    assert list(report["sizes"]) == ["1x", "4x"] and report["per_case_process"] is False
    for size, images in (("1x", 12), ("4x", 48)):
        case = report["sizes"][size]
        assert case["store"]["images"] == images and case["store"]["region_row_groups"] > 1
        for mode in ("memory", "stream"):
            figures = case[mode]
            assert figures["rows"] == 2 * images and figures["rows_per_s"] > 0
            assert figures["peak_rss_mb"] >= figures["rss_before_open_mb"] > 0 and len(figures["load_average"]["before"]) == 3
        assert case["memory"]["row_groups_read"] is None and case["stream"]["row_groups_read"] >= case["store"]["region_row_groups"]
        assert case["stream"]["read_mb"] >= case["stream"]["served_mb"] > 0 and case["stream"]["read_amplification"] >= 1
    assert set(report["peak_rss_ratio_largest_to_smallest"]) == {"memory", "stream"}
    assert case["stream"]["text_row_groups_read"] is None  # token ids: nothing of the question table streamed


def test_quick_run_with_token_states_streams_the_question_table_too(tmp_path):
    out = tmp_path / "states.json"
    assert _bench().main(["--quick", "--text-input", "states", "--epochs", "2", "--out", str(out)]) == 0
    case = json.loads(out.read_text())["sizes"]["1x"]
    for mode in ("memory", "stream"):  # two epochs: each timed, the second's rate on its own
        assert case[mode]["rows"] == 2 * 24 and len(case[mode]["epoch_seconds"]) == 2 and case[mode]["later_epochs_rows_per_s"] > 0
    assert case["store"]["questions_mb"] > 0.1  # 24 questions x 10 tokens x 384 float16
    assert case["memory"]["text_row_groups_read"] is None
    assert case["stream"]["text_row_groups_read"] >= 1 and case["stream"]["text_read_mb"] > 0


def test_a_stand_in_step_records_how_long_each_step_waits_for_its_batch(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "steps.json"
    assert bench.main(["--quick", "--sizes", "1", "--step-ms", "20", "--out", str(out)]) == 0
    case = json.loads(out.read_text())["sizes"]["1x"]
    for mode in ("memory", "stream"):
        figures = case[mode]
        batches = -(-figures["rows"] // 64)  # 24 rows in batches of 64: one batch, no wait after it
        assert figures["step_ms"] == 20 and figures["seconds"] >= batches * 0.02
        wait = figures["wait_ms_per_batch"]
        assert wait is None if batches == 1 else wait["median"] >= 0

    assert bench.main(["--quick", "--sizes", "1", "--step-ms", "20", "--batch-size", "4", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["sizes"]["1x"]["stream"]
    assert figures["wait_ms_per_batch"]["median"] >= 0 and figures["wait_ms_per_batch"]["p90"] >= figures["wait_ms_per_batch"]["median"]
    assert figures["seconds"] >= 6 * 0.02  # 24 rows in batches of 4: six steps of 20 ms
    # the machine's busy CPU per batch (/proc/stat, 10 ms ticks) counts each batch's 20 ms busy step
    assert figures["step_kind"] == "cpu" and figures["machine_cpu_ms_per_batch"] >= 10

    import time
    for kind, busy in (("cpu", True), ("idle", False)):  # idle: the step waits, as on an accelerator, using no core
        step = bench.busy_step(20, kind)
        cpu, wall = time.process_time(), time.perf_counter()
        step()
        assert time.perf_counter() - wall >= 0.02 and (time.process_time() - cpu >= 0.01) is busy

    with pytest.raises(SystemExit) as exit_:
        bench.main(["--quick", "--step-ms", "-1", "--out", str(tmp_path / "bad.json")])
    assert exit_.value.code == 2 and not (tmp_path / "bad.json").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_cases_run_the_streamed_epoch_in_a_trainer_worker_and_as_a_trial(tmp_path):
    """--ray-train: the worker serves every row once an epoch, its region rows and token states
    received through Ray Data, and reports its own peak RSS next to the object store's peak and
    spilled bytes (each case its own process); --ray-data: the same epochs as a search trial gets
    them, through Ray Data too."""
    out = tmp_path / "ray_train.json"
    args = ["--images", "30", "--sizes", "1", "--batch-size", "16", "--cache-mib", "1", "--ray-train", "--ray-data", "--object-store-mb", "128",
            "--text-input", "states", "--epochs", "2", "--out", str(out)]
    assert _bench().main(args) == 0
    report = json.loads(out.read_text())
    case = report["sizes"]["1x"]
    worker = case["ray_train"]
    assert worker["rows"] == case["stream"]["rows"] == 2 * 60  # 30 images x 2 questions, each once an epoch
    assert worker["peak_rss_mb"] >= worker["rss_before_open_mb"] > 0 and worker["rows_per_s"] > 0
    assert worker["object_store_peak_mb"] >= 0 and worker["spilled_mb"] == 0 and len(worker["epoch_seconds"]) == 2
    assert worker["machine_cpu_ms_per_batch"] > 0 and case["ray_data"]["machine_cpu_ms_per_batch"] > 0  # reading costs CPU somewhere
    # Each epoch, through Ray Data or read by the process while Ray Data started: an image's row once
    # per batch holding any of its 2 questions, and each question's states row once
    delivered = lambda case: case["ray_data_rows"] + case["local_rows"]  # noqa: E731
    assert worker["shard"] == "RayDataShard" and 2 * (30 + 60) <= delivered(worker) <= 2 * (60 + 60)
    trial = case["ray_data"]  # --ray-data: a search trial's epochs, their rows through Ray Data
    assert trial["rows"] == 120 and 2 * (30 + 60) <= delivered(trial) <= 2 * (60 + 60)
    assert trial["row_groups_read"] == trial["text_row_groups_read"] == 0 and trial["spilled_mb"] == 0 and trial["later_epochs_rows_per_s"] > 0
    assert set(report["peak_rss_ratio_largest_to_smallest"]) == {"memory", "stream", "ray_train", "ray_data"}


@pytest.mark.parametrize("bad", [["--quick", "--ray-train"], ["--quick", "--ray-data"], ["--ray-train", "--object-store-mb", "10"],
                                 ["--epochs", "0"]])
def test_bad_ray_train_settings_exit_2_before_any_work(tmp_path, bad):
    with pytest.raises(SystemExit) as exit_:
        _bench().main([*bad, "--out", str(tmp_path / "bad.json")])
    assert exit_.value.code == 2 and not (tmp_path / "bad.json").exists()


def test_same_batches_runs_the_smaller_sizes_for_more_epochs_so_every_size_serves_as_many_rows(tmp_path):
    out = tmp_path / "same.json"
    assert _bench().main(["--quick", "--same-batches", "--epochs", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    one, four = report["sizes"]["1x"], report["sizes"]["4x"]
    assert (one["epochs"], four["epochs"]) == (8, 2) and report["settings"]["same_batches"] is True
    for mode in ("memory", "stream"):  # 12 images x 2 questions x 8 epochs = 48 x 2 x 2
        assert one[mode]["rows"] == four[mode]["rows"] == 192 and len(one[mode]["epoch_seconds"]) == 8
    assert one["stream"]["row_groups_read"] >= one["store"]["region_row_groups"]  # every epoch read, through the cache
