"""bench/bench_vs_reference.py: the side-by-side run against the reference code. The reference
checkouts are never in the repository (nor on CI), so the tests check the skip without them, the
pinned-commit check, the per-round ratio and, with ``--self``, the interleaved runs end to end."""
from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest
from test_bench_provenance import check_provenance


def _bench():
    return importlib.import_module("bench_vs_reference")  # bench/ is on sys.path (test_bench_provenance)


def _probes(root: Path) -> Path:
    (root / "fusemix_stubs" / "lavis").mkdir(parents=True)
    (root / "mmnas_probe.py").write_text("")
    (root / "mmnas_tiny_arch.json").write_text("{}")
    return root


def test_without_the_reference_checkout_it_says_so_times_nothing_and_records_provenance(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "vs.json"
    absent = tmp_path / "refcode"
    args = ["--quick", "--refcode", str(absent), "--probes", str(_probes(tmp_path / "probes")), "--out", str(out)]
    assert bench.main(args) == 0
    message = f"vs_reference: skipped, nothing timed: reference checkout not found: {absent / 'mmnas'}"
    assert capsys.readouterr().out.strip() == message
    report = json.loads(out.read_text())
    assert report["skipped"] == message and "cases" not in report and "runs" not in report
    check_provenance(report, "bench_vs_reference.py", args)

    assert bench.main(["--quick", "--out", str(out)]) == 0  # no folders given at all
    assert "no reference checkout given (--refcode" in json.loads(out.read_text())["skipped"]

    (absent / "mmnas").mkdir(parents=True)  # only the MMnas checkout: enough for the MMnas cases alone
    given = bench.parse(args)
    assert bench.missing_reference(given, ["tiny_derived", "search_supernet_arch"]) is None
    assert bench.missing_reference(given, ["tiny_derived", "fusemix_2048_halves"]) == f"reference checkout not found: {absent / 'fusemix'}"


def test_a_reference_file_that_differs_from_the_pinned_commit_is_refused(tmp_path, capsys):
    bench = _bench()
    refcode = tmp_path / "refcode"
    for rel in bench.MMNAS_BLOBS:
        (refcode / "mmnas" / rel).parent.mkdir(parents=True, exist_ok=True)
        (refcode / "mmnas" / rel).write_text("changed\n")
    first = refcode / "mmnas" / next(iter(bench.MMNAS_BLOBS))
    git_blob = subprocess.run(["git", "hash-object", str(first)], capture_output=True, text=True, check=True).stdout.strip()
    assert bench.git_blob(first) == git_blob  # the same hash as git's
    out = tmp_path / "vs.json"
    args = ["--refcode", str(refcode), "--probes", str(_probes(tmp_path / "probes")), "--cases", "tiny_derived", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    assert exit_.value.code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert f"{first} is not the file of the pinned commit 552e29e (blob {git_blob}, expected" in err


def test_the_ratio_is_per_sample_and_per_round_from_the_runs_of_that_round():
    bench = _bench()
    runs = [
        {"round": 0, "side": "reference", "wall_s": 2.0, "cpu_s": 3.0, "batch": 16},
        {"round": 0, "side": "project", "wall_s": 4.0, "cpu_s": 8.0, "batch": 64},
        {"round": 1, "side": "project", "wall_s": 5.0, "cpu_s": 6.0, "batch": 64},
        {"round": 1, "side": "reference", "wall_s": 2.5, "cpu_s": 3.0, "batch": 16},
    ]
    c = bench.compare("search_supernet_weight", runs)
    assert c["speedup_wall"] == [2.0, 2.0] and c["speedup_cpu"] == [1.5, 2.0]
    assert c["speedup_cpu_range"] == {"min": 1.5, "median": 1.75, "max": 2.0}
    assert c["reference"]["wall_s"] == [2.0, 2.5] and c["project"]["batch"] == 64
    assert "speedup_at_kernel_floor" not in c  # runs without a kernel floor (the reference's never have one)

    for run in runs:
        if run["side"] == "project":
            run.update(kernel_floor_s=run["wall_s"] / 4, kernel_share=0.3)
    c = bench.compare("search_supernet_weight", runs)
    # the reference's seconds per sample over the project's kernel seconds per sample, per round
    assert c["speedup_at_kernel_floor"] == [pytest.approx(8.0), pytest.approx(8.0)]
    assert c["project"]["kernel_floor_s"] == [1.0, 1.25] and c["project"]["kernel_share"] == [0.3, 0.3]


@pytest.mark.slow
def test_quick_self_check_interleaves_fresh_processes_and_records_wall_cpu_and_load(tmp_path):
    bench = _bench()
    out = tmp_path / "vs.json"
    args = ["--quick", "--self", "--threads", "1", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_vs_reference.py", args)
    assert report["self_check"] is True and "reference" not in report
    assert [(r["case"], r["round"], r["side"]) for r in report["runs"]] == [("tiny_derived", 0, "reference"), ("tiny_derived", 0, "project")]
    for run in report["runs"]:
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["batch"] == 8 and len(run["load_1m"]) == 2
        assert run["process_s"] > run["wall_s"] * 3  # 1 warm-up + 2 timed steps, in its own process
    ref, proj = report["runs"]
    case = report["cases"]["tiny_derived"]
    assert case["speedup_wall"] == [pytest.approx(ref["wall_s"] / proj["wall_s"])]
    assert case["speedup_cpu"] == [pytest.approx(ref["cpu_s"] / proj["cpu_s"])]
    # the project's run profiles steps after the timed ones: its matmul / LSTM / Adam kernels are
    # a real part of the step, and the ratio at that floor is the reference's time over it
    assert 0 < proj["kernel_floor_s"] and 0 < proj["kernel_share"] < 1
    assert case["speedup_at_kernel_floor"] == [pytest.approx(ref["wall_s"] / proj["kernel_floor_s"])]
    assert report["load_1m"]["min"] <= report["load_1m"]["max"]
