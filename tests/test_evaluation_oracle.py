"""Estimator scoring against a tiny oracle file with known answers, and the oracle's sample."""
import json
from pathlib import Path
import math

import pytest

from mmsearch.evaluation import load_oracle, oracle_sample, score_estimator
from mmsearch.evaluation.oracle import kendall_tau, mean_std
from mmsearch.evaluation.sample import arch_key, arch_line

# val / test means: A is the best on val (test 49); B is better on test (51) but not on val.
ORACLE = {
    "task": "vqa",
    "metric": "vqa_acc",
    "archs": [
        {"label": lab, "spec": {"enc": ["self_att"], "dec": [op]}, "val": {"mean": v, "std": 0.5}, "test": {"mean": t, "std": s},
         "parameters": 10}
        for lab, op, v, t, s in [("A", "self_att", 50.0, 49.0, 1.0), ("B", "guided_att", 48.0, 51.0, 1.0),
                                 ("C", "rel_self_att", 45.0, 44.0, 2.0), ("D", "feed_forward", 40.0, 40.0, 0.0)]
    ],
}


def test_score_estimator_on_a_tiny_oracle_file(tmp_path):
    path = tmp_path / "arch_oracle_vqa.json"
    path.write_text(json.dumps(ORACLE))
    header, oracle = load_oracle(path)
    assert header == {"task": "vqa", "metric": "vqa_acc"} and [a.label for a in oracle] == ["A", "B", "C", "D"]

    # ranking B, C, A, D: 4 concordant and 2 discordant pairs against the val means -> tau = 1/3
    scores = score_estimator(oracle, {"A": 1.0, "B": 3.0, "C": 2.0, "D": 0.0}, k=2)
    assert scores["kendall_tau"] == pytest.approx(1 / 3)
    assert scores["reference"] == "A" and scores["reference_test"] == 49.0
    assert scores["top1"] == "B" and scores["top1_regret"] == pytest.approx(-2.0)  # lucky on test
    assert scores["topk"] == ["B", "C"] and scores["topk_pick"] == "B" and scores["topk_regret"] == pytest.approx(-2.0)
    assert scores["noise_std"] == pytest.approx(1.0)
    three = score_estimator(oracle, {"A": 1.0, "B": 3.0, "C": 2.0, "D": 0.0}, k=3)
    assert three["topk_pick"] == "A" and three["topk_regret"] == 0.0  # the shortlist picks on val, never on test

    perfect = score_estimator(oracle, {"A": 4, "B": 3, "C": 2, "D": 1}, k=1)
    assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["top1_regret"] == 0.0
    reversed_ = score_estimator(oracle, {"A": 1, "B": 2, "C": 3, "D": 4}, k=1)
    assert reversed_["kendall_tau"] == pytest.approx(-1.0) and reversed_["top1_regret"] == pytest.approx(9.0)


def test_score_estimator_rejects_what_it_cannot_score():
    _, oracle = load_oracle(ORACLE)
    with pytest.raises(ValueError, match="does not have"):
        score_estimator(oracle, {"A": 1.0, "Z": 2.0})
    with pytest.raises(ValueError, match="non-finite"):
        score_estimator(oracle, {"A": 1.0, "B": math.nan})
    with pytest.raises(ValueError, match="at least 2"):
        score_estimator(oracle, {"A": 1.0})
    with pytest.raises(ValueError, match="entry 1: KeyError"):
        load_oracle({"archs": [ORACLE["archs"][0], {"label": "x"}]})
    with pytest.raises(ValueError, match="twice"):
        load_oracle({"archs": [ORACLE["archs"][0], ORACLE["archs"][0]]})


def test_kendall_tau_and_mean_std():
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3, "values": [1.0, 2.0, 3.0]}
    assert mean_std([4.0])["std"] == 0.0


def test_oracle_sample_is_fixed_distinct_and_holds_the_anchors():
    sample = oracle_sample(4, 6, 34, seed=0)
    assert [label for label, _ in sample[:3]] == ["mcan", "mmnas_prior", "random0"]
    assert arch_line(sample[0][1]) == "SA FFN SA FFN | SA GA FFN SA GA FFN"
    assert arch_line(sample[1][1]) == "SA FFN SA FFN | RSA GA FFN RSA GA FFN"
    assert len({arch_key(s) for _, s in sample}) == 34
    assert [arch_key(s) for _, s in oracle_sample(4, 6, 34, seed=0)] == [arch_key(s) for _, s in sample]
    assert [arch_key(s) for _, s in oracle_sample(4, 6, 34, seed=1)] != [arch_key(s) for _, s in sample]
    # a tiny space is exhausted exactly; asking for more than it holds fails
    assert len(oracle_sample(1, 1, 8, pools={"enc": ["self_att", "feed_forward"], "dec": ["self_att", "guided_att", "rel_self_att", "feed_forward"]})) == 8
    with pytest.raises(ValueError, match="sample size"):
        oracle_sample(1, 1, 9, pools={"enc": ["self_att", "feed_forward"], "dec": ["self_att", "guided_att", "rel_self_att", "feed_forward"]})


def _one_thread_cell(cell, settings, work_dir):
    import torch

    torch.set_num_threads(1)  # as the benchmark cells do
    return {"value": cell.params["x"] * 2}


def test_in_process_cells_give_the_callers_thread_count_back(tmp_path):
    """A benchmark run in-process (workers=1, as the quick tests do) must not leave the rest of the
    process on one torch thread: kernels then pick other algorithms and results change in the last bits."""
    import torch

    from mmsearch.evaluation.cells import Cell, cell_path, run_cells

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = run_cells([Cell("a", {"x": 1}), Cell("b", {"x": 2})], _one_thread_cell, {}, tmp_path, workers=1, log=lambda _: None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert {n: r["value"] for n, r in results.items()} == {"a": 2, "b": 4}
    assert json.loads(cell_path(tmp_path, "b").read_text())["value"] == 4


def test_a_cell_of_other_settings_runs_again_and_unrelated_settings_do_not_matter(tmp_path):
    from mmsearch.evaluation.cells import Cell, cell_path, run_cells

    cells = [Cell("a", {"x": 1}), Cell("b", {"x": 2})]
    scope = lambda cell, settings: {"scale": settings["scale"], **cell.params}  # noqa: E731  ("note" decides nothing)
    lines: list[str] = []
    run_cells(cells, _one_thread_cell, {"scale": 1, "note": "first"}, tmp_path, workers=1, log=lines.append, scope=scope)
    stamps = {c.name: cell_path(tmp_path, c.name).stat().st_mtime_ns for c in cells}
    run_cells(cells, _one_thread_cell, {"scale": 1, "note": "second"}, tmp_path, workers=1, log=lines.append, scope=scope)
    assert lines[-1] == "2 cells: 2 already done, 0 to run"
    assert {c.name: cell_path(tmp_path, c.name).stat().st_mtime_ns for c in cells} == stamps
    run_cells(cells, _one_thread_cell, {"scale": 2, "note": "second"}, tmp_path, workers=1, log=lines.append, scope=scope)
    assert "2 cells: 0 already done, 2 to run (2 with a result of other settings, run again)" in lines
    legacy = json.loads(cell_path(tmp_path, "a").read_text())
    del legacy["settings_digest"]  # a result that cannot say what it was computed under is not trusted
    cell_path(tmp_path, "a").write_text(json.dumps(legacy))
    run_cells(cells, _one_thread_cell, {"scale": 2}, tmp_path, workers=1, log=lines.append, scope=scope)
    assert "2 cells: 1 already done, 1 to run (1 with a result of other settings, run again)" in lines


_ORPHAN_SCRIPT = '''
import os, sys, time
from pathlib import Path
from mmsearch.evaluation.cells import Cell, run_cells

def sleeper(cell, settings, work):
    Path(work, cell.name + ".pid").write_text(str(os.getpid()))
    time.sleep(120)
    return {}

if __name__ == "__main__":
    run_cells([Cell("a"), Cell("b")], sleeper, {}, Path(sys.argv[1]), workers=2, log=lambda _: None)
'''


def test_pool_workers_end_with_a_killed_run(tmp_path):
    """kill -9 of a benchmark run must not leave workers behind that go on writing cell results
    into a work directory that may have been reused since."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(_ORPHAN_SCRIPT)
    run = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        assert len(workers) == 2
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in workers if _running(pid)]
    assert alive == []


def _running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_rank_average_combines_estimators_by_rank_over_the_labels_all_score():
    from mmsearch.evaluation.oracle import rank_average

    supernet = {"a": 0.9, "b": 0.1, "c": 0.5, "fusion": 0.7}  # probabilities
    short = {"a": 30.0, "b": 50.0, "c": 40.0}  # accuracies: another scale, and no "fusion"
    # ranks (1 = worst): supernet a 3, b 1, c 2; short a 1, b 3, c 2
    assert rank_average(supernet, short) == {"a": 2.0, "b": 2.0, "c": 2.0}
    assert rank_average({"a": 1.0, "b": 1.0, "c": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0}) == {"a": 1.25, "b": 1.75, "c": 3.0}
    assert rank_average(short) == {"a": 1.0, "b": 3.0, "c": 2.0}
    with pytest.raises(ValueError, match="at least one"):
        rank_average()
