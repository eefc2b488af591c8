"""The ``mmsearch`` command dispatches to the same functions as the job scripts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmsearch import cli
from mmsearch.orchestration.jobs import run as jobs  # run_job is replaced where main looks it up

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured_runs(monkeypatch):
    """Replaces run_job: records (job name, options) instead of running anything."""
    calls = []

    def record(spec, options):
        calls.append((spec.name, options))
        return jobs.JobOutcome("nowhere", 0)

    monkeypatch.setattr(jobs, "run_job", record)
    return calls


def test_search_task_picks_the_job_and_keeps_every_other_argument(captured_runs):
    argv = ["configs/search/vg.yaml", "recipe.search.epochs=3", "--smoke-test", "--name", "x", "--then-train"]
    assert cli.main(["search", "--task", "itm", *argv]) == 0
    assert jobs.main(jobs.JOBS["search_itm"], argv) == 0  # what python jobs/search_itm.py runs
    (via_cli, cli_options), (via_job, job_options) = captured_runs
    assert via_cli == via_job == "search_itm"
    assert cli_options == job_options
    assert cli_options.overrides == ("recipe.search.epochs=3",) and cli_options.then_train


def test_search_defaults_to_vqa_and_tune_fusemix_is_its_own_command(captured_runs):
    assert cli.main(["search"]) == 0
    assert cli.main(["tune-fusemix", "--storage", "/tmp/r"]) == 0
    assert [name for name, _ in captured_runs] == ["search_vqa", "tune_fusemix"]
    assert captured_runs[1][1].storage == "/tmp/r"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("precompute", "--output"),  # jobs/precompute_latents.py
        ("train", "--deepspeed"),  # jobs/train_derived.py
        ("embed", "--texts"),  # mmsearch.embed
        ("report", "--out"),  # mmsearch.report.cli
        ("search", "--then-train"),
        ("tune-fusemix", "--tune"),
        ("import-mmnas", "--arch"),  # mmsearch.mmnas_import
    ],
)
def test_every_subcommand_reaches_its_parser(capsys, command, expected):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    assert expected in capsys.readouterr().out


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    assert "search" in capsys.readouterr().out
    assert cli.main(["serch"]) == 2
    assert "unknown command 'serch'" in capsys.readouterr().err


def test_console_script_and_job_script_check_the_same_plan(tmp_path):
    """``mmsearch search --task vqa --check`` and ``python jobs/search_vqa.py --check`` (no Ray, no trials)."""
    args = ["--check", "--smoke-test", "recipe.data.root=synthetic", "--storage", str(tmp_path)]
    outputs = []
    for command in ([str(Path(sys.executable).parent / "mmsearch"), "search", "--task", "vqa"],
                    [sys.executable, "jobs/search_vqa.py"]):
        done = subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert f"Results go to {tmp_path}/search_vqa-smoke" in outputs[0]
    assert "epoch      1  rung" in outputs[0] and "top rung (max_t)" in outputs[0]
    assert "vqa data at synthetic" in outputs[0]
