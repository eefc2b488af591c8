"""FuseMix evidence benchmark: paired CIs, the probe, equal-compute planning, random-weight encoders,
and the quick mode end to end (every comparison at toy size, real encoders, real recipe)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_fusemix_evidence as bench  # noqa: E402  (bench/ is not a package)

from mmsearch.config import load_config  # noqa: E402
from mmsearch.data.precompute.config import PrecomputeConfig, fingerprint  # noqa: E402
from mmsearch.data.scenes import SceneConfig, sample_scene  # noqa: E402
from mmsearch.encoders import ENCODERS, EfficientNetLite0Encoder, build_encoder, random_weights_name  # noqa: E402
from mmsearch.evaluation.paired import linear_probe_accuracy, paired_difference, scene_attribute_labels  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402


def test_paired_difference_has_a_student_t_interval_over_the_shared_seeds():
    d = paired_difference({0: 10.0, 1: 10.0, 2: 10.0, 9: 50.0}, {0: 12.0, 1: 13.0, 2: 14.0})
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3 and d["mean"] == pytest.approx(3.0) and d["std"] == pytest.approx(1.0)
    half = 4.302653 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(n)
    assert d["ci"] == pytest.approx([3.0 - half, 3.0 + half], rel=1e-5)
    assert d["significant"] and d["wins"] == 3
    noisy = paired_difference({0: 0.0, 1: 0.0, 2: 0.0}, {0: 3.0, 1: -1.0, 2: 1.0})
    assert noisy["ci"][0] < 0 < noisy["ci"][1] and not noisy["significant"] and noisy["wins"] == 2


def test_probe_labels_are_the_scene_contents_and_a_separable_probe_is_exact():
    cfg = SceneConfig(num_scenes=20)
    labels, names = scene_attribute_labels(["scene_000003", "scene_000007", "scene_000003"], cfg)
    scene = sample_scene(cfg, 7)
    assert labels[1, names.index(f"colour={scene.objects[0].colour}")] == 1
    assert labels[1].sum() == len({o.colour for o in scene.objects}) + len({o.shape for o in scene.objects})
    assert torch.equal(labels[0], labels[2])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen)
    y = torch.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5], dim=1).float()
    probe = linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:], steps=30)
    assert probe["accuracy"] > 0.95 and probe["majority_accuracy"] < 0.8 and probe["labels"] == 2


def test_equal_compute_plan_gives_halves_a_doubled_batch_and_the_same_flops():
    args = bench.parse_args(["--comparisons", "pairing", "mixup"])
    _, arms = bench.comparison_arms(args, "pairing")
    flops = {}
    for pairs in (5250, 1050, 130):  # the full scenes' train pairs, 20 %, and a toy size where the batch is capped
        halves, permutation = arms["halves"], arms["permutation"]
        budget = args.steps * bench.flops_per_step(halves, bench.arm_batch(pairs, halves, 4))
        for name, arm in arms.items():
            batch, steps = bench.plan_steps(pairs, arm, budget, 4)
            assert steps % (pairs // batch) == 0  # whole epochs
            flops[name] = steps * bench.flops_per_step(arm, batch)
        assert flops["permutation"] == pytest.approx(flops["halves"], rel=0.05), pairs
    assert bench.plan_steps(5250, arms["halves"], budget, 4)[0] == 1024  # B/2 mixed rows of a 2B input batch
    assert bench.plan_steps(5250, arms["permutation"], budget, 4)[0] == 512
    # Mixup arms differ only in alpha: the same steps and FLOPs (mixing adds no adapter rows).
    _, mixup = bench.comparison_arms(args, "mixup")
    assert len({bench.plan_steps(5250, arm, budget, 4) for arm in mixup.values()}) == 1


def test_a_tuned_config_keeps_its_alpha_and_batch_and_gets_the_defaults_flops():
    """The tuned arm's alpha is applied (an arm's alpha goes after its overrides), its batch is its
    own, and its steps come from the default's FLOP budget."""
    args = bench.parse_args(["--comparisons", "tuned", "--tuned", "loss.mixup_alpha=2.0", "--tuned", "train.batch_size=256",
                             "--tuned", "model.x.depth=2"])
    _, arms = bench.comparison_arms(args, "tuned")
    assert (arms["default"]["alpha"], arms["tuned"]["alpha"]) == (1.0, 2.0)
    budget = args.steps * bench.flops_per_step(arms["default"], bench.arm_batch(5250, arms["default"], 4))
    (default_batch, default_steps), (tuned_batch, tuned_steps) = (bench.plan_steps(5250, a, budget, 4) for a in arms.values())
    assert (default_batch, tuned_batch) == (512, 256) and default_steps == args.steps
    tuned_flops = tuned_steps * bench.flops_per_step(arms["tuned"], tuned_batch)
    assert tuned_flops == pytest.approx(budget, rel=0.05) and tuned_steps > args.steps  # a deeper adapter at half the batch


def test_random_weight_encoders_are_seeded_named_apart_and_fingerprinted_apart():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    before = torch.random.get_rng_state()
    first = build_encoder("efficientnet_lite0_random0", resolution=32).embed(images)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG stream is untouched
    again = build_encoder("efficientnet_lite0_random0", resolution=32)
    assert torch.equal(again.embed(images), first) and again.info.name == "efficientnet_lite0_random0"
    other_seed = EfficientNetLite0Encoder(resolution=32, random_weights_seed=1)
    assert not torch.allclose(other_seed.embed(images), first) and other_seed.info.name == "efficientnet_lite0_random1"
    assert first.abs().mean() > 1e-2  # a usable scale (fp16 stores keep it), not the vanishing default init
    assert {"minilm_random0", "efficientnet_lite0_random0"} <= set(ENCODERS.names())
    with pytest.raises(ValueError, match="no random-weight variant"):
        random_weights_name("minilm", 99)
    with pytest.raises(ValueError, match="no random-weight variant"):
        random_weights_name("resnet50", 0)
    prints = {fingerprint(load_config(PrecomputeConfig, None, [f"image.name={i}", f"text.name={t}"]))
              for i, t in bench.ENCODER_ARMS.values()}
    assert len(prints) == len(bench.ENCODER_ARMS)  # never the pretrained data set's cache root


@pytest.mark.slow
def test_quick_run_covers_every_comparison_at_equal_compute(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "evidence.json"
    args = ["--quick", "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_fusemix_evidence.py", args)

    assert {e["comparison"] for e in report["comparisons"]} == set(bench.COMPARISONS)
    for entry in report["comparisons"]:
        baseline = entry["arms"][entry["baseline"]]
        assert len(entry["arms"]) >= 2 and "difference_vs_baseline" not in baseline
        for name, arm in entry["arms"].items():
            assert arm["flops_ratio_to_baseline"] == pytest.approx(1.0, abs=0.05), (entry["comparison"], name)
            assert arm["test"]["rsum"]["n"] == 2
            if name != entry["baseline"]:
                diff = arm["difference_vs_baseline"]["rsum"]
                assert diff["n"] == 2 and diff["ci"][0] <= diff["mean"] <= diff["ci"][1]
    for name, run in report["runs"].items():  # FLOPs from the rows the recipe really trained on
        rows = run["steps"] * (run["batch_size"] // 2 if "loss.mixup_mode=halves" in run["overrides"] else run["batch_size"])
        assert run["loss_rows"] == rows and run["adapter_flops"] > 0 and run["steps"] == run["planned_steps"], name
        assert (tmp_path / "work" / "cells" / f"{name}.json").is_file()  # one resumable result per run

    # Random-weight latents: their own data set, their own encoder names, different latents.
    pretrained, random = report["datasets"]["pretrained"], report["datasets"]["random_both"]
    assert pretrained["fingerprint"] != random["fingerprint"] and pretrained["root"] != random["root"]
    assert (random["encoders"]["image"]["name"], random["encoders"]["text"]["name"]) == ("efficientnet_lite0_random0", "minilm_random0")
    assert (pretrained["encoders"]["image"]["name"], pretrained["encoders"]["text"]["name"]) == ("efficientnet_lite0", "minilm")
    latents = {k: bench.scenes.load_split(d["root"], "train") for k, d in (("p", pretrained), ("r", random))}
    for side in ("image", "text"):
        assert not np.allclose(latents["p"][side].numpy(), latents["r"][side].numpy(), atol=1e-2), side
        assert latents["r"][side].abs().mean() > 1e-3  # not underflowed to zero in the float16 store
    for arm in ("pretrained", "random_both"):
        for side in ("image", "text"):
            probe = report["encoder_probes"][arm][side]
            assert 0 <= probe["accuracy"] <= 1 and probe["labels"] == 13 and probe["test_rows"] > 0
