"""The README's commands stay true: CI runs exactly its test command, and every job, config and
file it names exists and parses its arguments."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    main, tests = _quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "README test command and .ci/run differ"
    assert main.endswith("python jobs/search_vqa.py")
    assert tests.endswith("python -m pytest")
    # Both install torch's pinned release first, so pip never resolves a torch build by itself.
    for command in (main, tests):
        assert command.index("torch==") < command.index("pip install -q -e" if "-q -e" in command else "pip install -e")


def test_every_path_the_readme_names_exists():
    names = set(re.findall(r"\b((?:jobs|configs|cluster|bench|mmsearch)/[\w./-]+\.(?:py|yaml|json|md))", README))
    names |= {"ray_cluster.yaml", ".ci/run"}
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, missing


def test_every_named_spec_in_the_readme_loads():
    from mmsearch.nas import named_spec

    for name in ("mcan", "mmnas_vqa", "mmnas_vg", "mmnas_itm"):
        assert name in README
        spec = named_spec(name)
        assert len(spec.enc) == 12 and len(spec.dec) == 18


@pytest.mark.parametrize("job", sorted(p.name for p in (ROOT / "jobs").glob("*.py")))
def test_every_job_parses_its_arguments(job):
    result = subprocess.run([sys.executable, str(ROOT / "jobs" / job), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
