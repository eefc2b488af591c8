"""The report's figures show the recorded numbers: heat maps equal the recorded block
probabilities, curves equal the reported metrics, the diagram draws the spec's ops in order.

Figures are inspected as matplotlib objects (no rendering, so these tests take milliseconds).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_hex
from test_report_layout import FakeTrial, arch_entry, arch_history, write_experiment

from mmsearch.report import plots_arch, plots_curves
from mmsearch.report.collect import collect_experiment
from mmsearch.report.style import OPS, metric_label, op_colour, op_label


@pytest.fixture
def search_experiment(tmp_path):
    trials = [
        FakeTrial("fffff_00000", "TERMINATED", [10, 20, 15, 30, 35, 40], {"seed": 0}, arch=True),
        FakeTrial("fffff_00001", "TERMINATED", [8, 9], {"seed": 1}, arch=True),
        FakeTrial("fffff_00002", "ERROR", [12, 14, 11], {"seed": 2}, arch=True, error="RuntimeError: boom"),
        FakeTrial("fffff_00003", "RUNNING", [9, 22, 31], {"seed": 3}, arch=True),
    ]
    return collect_experiment(str(write_experiment(tmp_path / "exp", trials, stopped=("fffff_00001",))))


def test_heatmap_cells_are_the_recorded_probabilities(search_experiment):
    best = search_experiment.best_trial
    history = best.arch_history
    shown = [1, 4, 6]
    fig = plots_arch.arch_heatmaps(history, epochs=shown)
    axes = [ax for ax in fig.axes if ax.images]  # heat maps (the colour bar has no image)
    assert len(axes) == 2 * len(shown)
    for row, epoch in enumerate(shown):
        for col, chain in enumerate(("enc", "dec")):
            ax = axes[2 * row + col]
            recorded = np.asarray(history[f"epoch{epoch}"]["probs"][chain])
            np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), recorded.T)  # ops x blocks
            outlined = sorted((int(p.get_x() + 0.5), int(p.get_y() + 0.5)) for p in ax.patches)
            assert outlined == [(b, int(k)) for b, k in enumerate(recorded.argmax(axis=1))]  # the chosen op per block
            pool = history[f"epoch{epoch}"]["op_pools"][chain]
            labels = ax.get_yticklabels()
            assert [t.get_text() for t in labels] == [op_label(n) for n in pool]
            assert [to_hex(t.get_color()) for t in labels] == [op_colour(n).lower() for n in pool]


def test_select_epochs_keeps_first_last_and_best():
    assert plots_arch.select_epochs(range(1, 5)) == [1, 2, 3, 4]
    chosen = plots_arch.select_epochs(range(1, 101), max_panels=6, always=[37])
    assert len(chosen) == 6 and {1, 37, 100} <= set(chosen) and chosen == sorted(chosen)


def test_normalised_entropy_bounds():
    uniform = {"probs": {"enc": [[0.5, 0.5]], "dec": [[0.25] * 4] * 2}}
    certain = {"probs": {"enc": [[1.0, 0.0]], "dec": [[0.0, 1.0, 0.0, 0.0]]}}
    assert plots_arch.normalised_entropy(uniform) == pytest.approx(1.0)
    assert plots_arch.normalised_entropy(certain) == pytest.approx(0.0, abs=1e-9)
    mixed = {"probs": {"enc": [[0.9, 0.1]], "dec": [[0.25] * 4]}}
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert plots_arch.normalised_entropy(mixed, "enc") == pytest.approx(h)
    assert plots_arch.normalised_entropy(mixed) == pytest.approx((h + 1.0) / 2)


def test_search_dynamics_entropy_lines_come_from_the_recorded_probabilities(search_experiment):
    best = search_experiment.best_trial
    fig = plots_arch.search_dynamics(search_experiment.trials, best, warmup_epochs=1)
    entropy_ax = fig.axes[0]
    lines = {line.get_label().split(" ")[0]: line for line in entropy_ax.get_lines()}
    for trial in search_experiment.trials:
        expected = [plots_arch.normalised_entropy(trial.arch_history[f"epoch{e}"]) for e in range(1, len(trial.history) + 1)]
        np.testing.assert_allclose(lines[trial.trial_id].get_ydata(), expected)
    enc_bars = fig.axes[1].containers  # one stack layer per pool op
    per_epoch = np.sum([[bar.get_height() for bar in layer] for layer in enc_bars], axis=0)
    assert per_epoch.tolist() == [3] * 6  # every epoch's derived encoder has 3 blocks


def test_diagram_draws_the_spec_in_order():
    spec = arch_entry(epoch=3, seed=7, depths=(4, 7))
    spec["dec"] = [["rel_self_att"], ["guided_att"], ["feed_forward"], ["guided_att"], ["self_att"], ["guided_att"], ["feed_forward"]]
    fig = plots_arch.arch_diagram(spec, title="t")
    ax = fig.axes[0]
    boxes = [t.get_text() for t in ax.texts if t.get_text() in {label for label, _, _ in OPS.values()}]
    expected = [op_label(b[0]) for b in spec["enc"]] + ["RSA", "GA", "FFN", "GA", "SA", "GA", "FFN"]
    assert boxes == expected
    fills = [to_hex(p.get_facecolor()) for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]
    assert fills == [op_colour(n).lower() for n in [b[0] for b in spec["enc"]] + [b[0] for b in spec["dec"]]]
    guided_arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch" and to_hex(p.get_edgecolor()) == op_colour("guided_att").lower()]
    assert len(guided_arrows) == 3  # one from the encoder-output bus to every GA block


def test_learning_curves_plot_the_reported_metric_with_rungs(search_experiment):
    fig = plots_curves.learning_curves(search_experiment)
    ax = fig.axes[0]
    curves = {line.get_label().split(":")[0]: line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(curves) == {t.trial_id for t in search_experiment.trials}
    # The legend names each trial's sampled parameters (here the seed), not only its id.
    assert curves["fffff_00001"].get_label() == "fffff_00001: seed 1"
    assert curves["fffff_00000"].get_label() == "fffff_00000: seed 0 (best)"
    for trial in search_experiment.trials:
        assert curves[trial.trial_id].get_ydata().tolist() == [row["val_metric"] for row in trial.history]
    rung_lines = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")
    assert rung_lines == [2.0, 4.0]
    assert "validation VQA accuracy (%)" == ax.get_ylabel()
    funnel = fig.axes[1].containers[0]
    assert [bar.get_width() for bar in funnel] == [4, 1, 1]  # trials that reached epochs 2, 4 and 6 (max_t)
    ends = [line for line in ax.get_lines() if line.get_label().startswith("_") and line.get_marker() not in ("None", None, "")]
    assert sorted(line.get_marker() for line in ends) == sorted(["o", "X", "*", ">"])  # completed, ASHA, errored, running


def test_fusemix_curves_plot_the_recorded_recalls(tmp_path):
    extra = [{"val_i2t_r1": 10.0 * e, "val_i2t_r5": 20.0 * e, "val_i2t_r10": 25.0 * e, "val_t2i_r1": 9.0 * e,
              "val_t2i_r5": 18.0 * e, "val_t2i_r10": 24.0 * e, "loss": 5.0 / e, "temperature": 0.07 + 0.01 * e} for e in (1, 2, 3)]
    trials = [FakeTrial("ccccc_00000", "TERMINATED", [1.0, 2.0, 3.0], {"train.lr": 1e-3}, extra=extra),
              FakeTrial("ccccc_00001", "TERMINATED", [0.5, 0.6, 0.7], {"train.lr": 1e-4}, extra=extra)]
    data = collect_experiment(str(write_experiment(tmp_path, trials, metric="val_rsum", max_t=3, rungs=(1.0,), task=None)))
    assert data.kind == "fusemix"
    fig = plots_curves.recall_curves(data.best_trial)
    i2t = {line.get_label(): line.get_ydata().tolist() for line in fig.axes[0].get_lines()}
    assert i2t == {"R@1": [10.0, 20.0, 30.0], "R@5": [20.0, 40.0, 60.0], "R@10": [25.0, 50.0, 75.0]}
    assert fig.axes[1].get_lines()[0].get_ydata().tolist() == [9.0, 18.0, 27.0]
    fig = plots_curves.loss_and_temperature(data)
    assert [line.get_ydata().tolist() for line in fig.axes[1].get_lines()][0] == pytest.approx([0.08, 0.09, 0.10])


def test_axis_labels_carry_units():
    assert metric_label("val_metric", "vqa") == "validation VQA accuracy (%)"
    assert metric_label("val_metric", "itm") == "validation retrieval rsum (sum of recalls, %)"
    assert metric_label("val_i2t_r5") == "val_i2t_r5 (%)"
    assert metric_label("epoch_s") == "epoch_s (seconds)"
    assert metric_label("pairs_per_s") == "pairs_per_s (per second)"
    assert metric_label("entropy_dec_mean") == "entropy_dec_mean (nats)"
    assert metric_label("loss") == "loss"


def test_history_helpers():
    spec = arch_entry(1, 0, (2, 3))
    history = {"epoch10": spec, "epoch2": spec, "notes": {}}
    assert plots_arch.history_epochs(history) == [2, 10]
    assert plots_arch.blocks(spec, "enc") == [b[0] for b in spec["enc"]]
    assert plots_arch.pool({"enc": [["self_att"], ["feed_forward"]]}, "enc") == ["feed_forward", "self_att"]
    assert plots_arch.prob_matrix({"enc": []}, "enc") is None
    assert arch_history(FakeTrial("x_00001", "RUNNING", [1, 2], {}))["epoch2"]["epoch"] == 2


def test_searched_vs_retrained_bars():
    rows = [{"metric": "val_metric", "searched": 60.0, "retrained": 64.25}, {"metric": "val_vqa_acc_number", "searched": 31.5, "retrained": 40.0}]
    ax = plots_curves.searched_vs_retrained(rows, "vqa").axes[0]
    searched, retrained = ax.containers
    assert [b.get_height() for b in searched] == [60.0, 31.5] and [b.get_height() for b in retrained] == [64.25, 40.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["val_metric", "val_vqa_acc_number"]


def test_trial_labels_name_strategy_seed_and_sampled_numbers():
    from mmsearch.report.style import trial_label

    config = {"seed": 1, "search.strategy": "darts", "search.arch_lr": 0.052345}
    assert trial_label("a_00001", config) == "a_00001: seed 1, darts, arch_lr 0.0523"
    assert trial_label("a_00002", {}, best=True) == "a_00002 (best)"
