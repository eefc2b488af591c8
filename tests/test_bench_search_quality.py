"""The search-quality benchmark (bench/bench_search_quality.py, bench/search_quality/): its arithmetic on hand-made
architectures, and one --quick run on tiny synthetic data that must produce every table entry
(the full run takes an hour and is run by hand; its figures are in bench/search_quality.md)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_search_quality as bench  # noqa: E402
from test_bench_provenance import check_provenance  # noqa: E402
from search_quality import analysis as sq_analysis, cells as sq_cells, report as sq_report, settings as sq_settings  # noqa: E402

POOLS = {"enc": ["self_att", "feed_forward"], "dec": ["self_att", "rel_self_att", "guided_att", "feed_forward"]}


def spec(enc: str, dec: str) -> dict:
    names = {"SA": "self_att", "FFN": "feed_forward", "GA": "guided_att", "RSA": "rel_self_att"}
    return {"enc": [[names[n]] for n in enc.split()], "dec": [[names[n]] for n in dec.split()]}


def test_mcan_spec_is_the_mcan_pattern_at_any_depth_and_matches_the_shipped_mcan_at_12_18():
    from mmsearch.nas import mcan_prior_spec, named_spec

    small = sq_settings.mcan_spec(4, 6)
    assert sq_settings.arch_line(small.to_dict()) == "SA FFN SA FFN | SA GA FFN SA GA FFN"
    assert sq_settings.mcan_spec(12, 18).same_architecture(named_spec("mcan"))
    # MMnas's search prior differs from MCAN exactly in the decoder SA blocks (RSA there).
    prior = mcan_prior_spec(4, 6)
    assert prior.enc == small.enc
    assert [i for i, (a, b) in enumerate(zip(prior.dec, small.dec)) if a != b] == [0, 3]


def test_agreement_and_its_chance_level():
    a, b = spec("SA FFN", "SA GA FFN RSA"), spec("SA SA", "SA GA GA GA")
    assert sq_analysis.agreement(a, b) == pytest.approx(3 / 6)
    assert sq_analysis.agreement(a, b, ("enc",)) == pytest.approx(1 / 2)
    assert sq_analysis.agreement(a, b, ("dec",)) == pytest.approx(2 / 4)
    assert sq_analysis.agreement(a, a) == 1.0
    # 2 encoder blocks at 1/2, 4 decoder blocks at 1/4.
    assert sq_analysis.chance_agreement(POOLS, [2, 4]) == pytest.approx((2 * 0.5 + 4 * 0.25) / 6)


def test_op_frequency_and_block_choices_count_every_block():
    specs = [spec("SA FFN", "RSA GA FFN RSA"), spec("FFN FFN", "RSA SA GA GA"), spec("SA SA", "GA GA GA FFN")]
    freq = sq_analysis.op_frequency(specs, POOLS)
    assert freq["dec"]["rel_self_att"]["counts"] == [2, 1, 0]
    assert freq["dec"]["guided_att"]["mean"] == pytest.approx((1 + 2 + 3) / 3)
    assert freq["dec"]["guided_att"]["uniform"] == pytest.approx(1.0) and freq["enc"]["self_att"]["uniform"] == 1.0
    for chain, depth in (("enc", 2), ("dec", 4)):
        assert [sum(f["counts"][i] for f in freq[chain].values()) for i in range(3)] == [depth] * 3
    blocks = sq_analysis.block_choices(specs)
    assert blocks[0] == {"guided_att": 1, "rel_self_att": 2}
    assert blocks[3] == {"feed_forward": 1, "guided_att": 1, "rel_self_att": 1}


def test_summaries_and_rank_correlation():
    assert sq_analysis.mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert sq_analysis.mean_std([5.0])["std"] == 0.0
    assert sq_analysis.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert sq_analysis.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(sq_analysis.kendall_tau([1.0], [2.0]))


def test_deep_merge_and_the_interpretation_kept_across_regeneration():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    merged = sq_settings.deep_merge(base, {"a": {"c": 3}, "d": [2]})
    assert merged == {"a": {"b": 1, "c": 3}, "d": [2]} and base["a"]["c"] == 2
    text = "## tables\n\n| x |\n\n### Interpretation\n\nThe search did not beat random.\n"
    assert sq_report.kept_interpretation(text) == "### Interpretation\n\nThe search did not beat random.\n"
    assert sq_report.kept_interpretation("## tables only\n") == ""


def test_plan_orders_searches_first_and_retrains_each_search(tmp_path):
    import argparse

    args = argparse.Namespace(quick=True, tasks=["vqa"], strategies=["proxyless"], seeds=3, randoms=3, noise_seeds=3)
    cells = sq_cells.plan_cells(sq_settings.benchmark_settings(args, "synthetic"))
    kinds = [c.kind for c in cells]
    assert kinds[:3] == ["search"] * 3 and kinds.count("proxy") == 3
    trains = [c for c in cells if c.kind == "train"]
    # 3 searched + MCAN x 3 training seeds + MMnas prior + 3 random.
    assert len(trains) == 10 and len({c.name for c in cells}) == len(cells)
    assert sum(c.params["label"] == "mcan" for c in trains) == 3
    searched = [c for c in trains if c.params["label"].startswith("searched")]
    assert all(c.needs == (c.params["search"],) for c in searched)


@pytest.mark.slow
def test_quick_run_fills_every_table_entry_and_resumes_without_rerunning(tmp_path, capsys):
    work = tmp_path / "work"
    args = ["--quick", "--workers", "1", "--work-dir", str(work)]
    assert bench.main(args) == 0
    report = json.loads((work / "search_quality.json").read_text())
    markdown = (work / "search_quality.md").read_text()
    block = check_provenance(report, "bench_search_quality.py", args)
    # every cell was computed at this commit, and the markdown says which
    assert list(report["run"]["cell_commits"]) == [block["commit"] + (" (dirty)" if block["dirty"] else "")]
    assert list(report["run"]["cell_commits"].values()) == [48] and f"at commit `{block['commit'][:12]}`" in markdown
    assert set(report["tasks"]) == {"vqa", "vg", "itm"}
    for task, fig in report["tasks"].items():
        labels = [row["label"] for row in fig["rows"].values()]
        assert sorted(set(labels)) == sorted(["searched_proxyless_seed0", "searched_proxyless_seed1", "searched_proxyless_seed2",
                                              "mcan", "mmnas_prior", "random1000", "random1001", "random1002"])
        assert labels.count("mcan") == 3
        columns = sq_report.columns(task, fig["summary"]["mcan"].keys())
        assert fig["metric"] in columns and (task == "itm" or any("_family_" in c for c in columns))
        for row in fig["rows"].values():
            assert all(math.isfinite(row["test"][c]) for c in columns)
        assert set(fig["summary"]) == {"searched_proxyless", "mcan", "mmnas_prior", "random"}
        assert fig["summary"]["mcan"][fig["metric"]]["n"] == 3 and math.isfinite(fig["retrain_noise_std"])
        search = fig["search"]["proxyless"]
        assert len(search["archs"]) == 3 and len(search["agreement"]["pairs"]) == 3
        assert all(0.0 <= a <= 1.0 for a in search["agreement"]["pairs"])
        assert search["agreement"]["chance"] == pytest.approx((2 * 0.5 + 3 * 0.25) / 5)
        assert sum(f["mean"] for f in search["op_frequency"]["dec"].values()) == pytest.approx(3)
        assert all(len(scores) == 8 for scores in search["proxy"]["scores"])
        assert all(math.isfinite(v) for v in search["search_val_final"] + search["retrained_test"])
        # The supernet's estimate of a seed's own architecture is the search's last validation.
        for seed, scores in enumerate(search["proxy"]["scores"]):
            assert scores[f"searched_proxyless_seed{seed}"] == pytest.approx(search["search_val_final"][seed])
        assert 0.0 <= search["entropy"]["normalized_mean"]["mean"] <= 1.0
        assert f"### {task.upper()}" in markdown
    assert "nan" not in markdown.lower()

    # A rerun reuses every cell (same results, nothing retrained) and keeps a hand-written interpretation.
    (work / "search_quality.md").write_text(markdown + "\n### Interpretation\n\nhand-written\n")
    capsys.readouterr()
    assert bench.main(args) == 0
    assert "48 cells already done, 0 to run" in capsys.readouterr().out
    again = json.loads((work / "search_quality.json").read_text())
    assert again["tasks"] == report["tasks"]
    assert (work / "search_quality.md").read_text().endswith("### Interpretation\n\nhand-written\n")


def test_a_work_dir_of_other_settings_is_refused(tmp_path):
    import argparse

    args = argparse.Namespace(quick=True, tasks=["vqa"], strategies=["proxyless"], seeds=3, randoms=3, noise_seeds=3)
    bench._check_work_dir(tmp_path, sq_settings.benchmark_settings(args, "synthetic"))
    args.tasks = ["vqa", "vg"]  # adding a task is fine
    bench._check_work_dir(tmp_path, sq_settings.benchmark_settings(args, "synthetic"))
    args.randoms = 2
    with pytest.raises(SystemExit, match="other settings"):
        bench._check_work_dir(tmp_path, sq_settings.benchmark_settings(args, "synthetic"))
