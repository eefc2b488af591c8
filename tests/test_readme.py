"""The README's commands stay true: CI runs exactly its test command, and every job, config and
file it names exists and parses its arguments."""
from __future__ import annotations

import json
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


# ------------------------------------------------------------- every command the README shows runs
# Each command is run as cheaply as it can be checked for real, in this process (no Ray started):
#   python jobs/search_*.py / tune_fusemix.py, mmsearch search / tune-fusemix -> the job with --check
#       (config, overrides, search space, ASHA ladder, storage preflight, data plan); the full run at
#       smoke size: test_cli_dispatch (--check via both entry points), test_cluster_jobs (ray job submit)
#   python jobs/train_derived.py, mmsearch train -> --check (config for the arch's task, the arch resolved);
#       the run: test_train_ray
#   python jobs/precompute_latents.py -> --check; the run: test_precompute_ray
#   mmsearch export-arch -> the real command, on a search output directory
#   mmsearch report / embed / import-mmnas -> their argument parsing; the runs: test_report_build,
#       test_fusemix_embed, test_mmnas_import
#   python -m mmsearch.recipes.* -> their config, validated as their main does; the runs: test_search_recipe,
#       test_train_recipe
COMMAND = re.compile(r"(python (?:jobs/|-m mmsearch)\S*.*|mmsearch [a-z].*)")


def readme_commands() -> list[str]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            match = COMMAND.search(line.split(" #")[0].strip())
            if match:
                found.append(match.group(1).strip())
    for inline in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", README, flags=re.S)):
        match = COMMAND.match(" ".join(inline.split()))
        if match:
            found.append(match.group(1))
    return list(dict.fromkeys(c.replace("...", "").strip() for c in found))


def _search_output(tmp_path: Path) -> Path:
    from mmsearch.nas import named_spec
    from mmsearch.nas.arch_spec import save_arch_spec

    out = tmp_path / "search_vqa"
    out.mkdir(exist_ok=True)
    save_arch_spec(named_spec("mmnas_vqa"), out / "best_arch.json")
    return out


def _run_readme_command(command: str, tmp_path: Path) -> int:
    import shlex

    from mmsearch import cli, cli_parsers
    from mmsearch.config import load_config, read_yaml

    search = _search_output(tmp_path)
    for placeholder, value in (("~/mmsearch_results/search_vqa", str(search)), ("s3://YOUR-BUCKET/mmsearch", str(tmp_path)),
                               ("EXPERIMENT", str(search)), ("ARCH", "mcan"), ("DIR", str(tmp_path / "store")),
                               ("arch.json", str(tmp_path / "arch.json"))):
        command = command.replace(placeholder, value)
    tokens = shlex.split(command)
    if tokens[:2] == ["python", "-m"]:
        from mmsearch.recipes.search.config import SearchConfig
        from mmsearch.recipes.train_derived.config import TrainDerivedConfig

        config_cls = {"mmsearch.recipes.search": SearchConfig, "mmsearch.recipes.train_derived": TrainDerivedConfig}[tokens[2]]
        raw = read_yaml(ROOT / tokens[3])
        load_config(config_cls, raw.get("recipe", raw), tokens[4:])
        return 0
    if tokens[0] == "python":
        script = Path(tokens[1]).stem
        tokens = ["mmsearch", {"precompute_latents": "precompute", "train_derived": "train"}.get(script, script), *tokens[2:]]
        if script.startswith("search_"):
            tokens[1:2] = ["search", "--task", script.removeprefix("search_")]
        elif script == "tune_fusemix":
            tokens[1] = "tune-fusemix"
    command, args = tokens[1], tokens[2:]
    if command in ("search", "tune-fusemix"):
        storage = [] if "--storage" in args else ["--storage", str(tmp_path)]
        return cli.main([command, *args, "--check", *storage])
    if command in ("train", "precompute"):
        return cli.main([command, *args, "--check"])
    if command == "export-arch":
        return cli.main([command, *args])
    parsers = {"report": cli_parsers.report_parser, "embed": cli_parsers.embed_parser, "import-mmnas": cli_parsers.import_mmnas_parser}
    parsers[command]().parse_args(args)  # a KeyError here: a new README command without a check above
    return 0


def test_the_readme_shows_the_commands_this_test_checks():
    commands = readme_commands()
    for expected in ("python jobs/search_vqa.py", "python jobs/search_vqa.py --smoke-test", "python jobs/tune_fusemix.py",
                     "python jobs/train_derived.py --arch ARCH", "mmsearch report EXPERIMENT",
                     "mmsearch export-arch EXPERIMENT --format mmnas --out arch.json",
                     "python -m mmsearch.recipes.train_derived configs/train/vqa.yaml arch=mcan"):
        assert expected in commands, (expected, commands)
    assert len(commands) >= 15


def test_every_command_the_readme_shows_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))  # data sets "would be built" here; nothing built
    monkeypatch.setenv("MMSEARCH_VERBOSE", "1")  # the jobs set it; restored afterwards
    commands = readme_commands()
    commands += ["python jobs/search_itm.py", "python jobs/search_vg.py",  # the job table's (search_itm.py, search_vg.py)
                 "python jobs/search_vqa.py recipe.search.epochs=12 tune.num_samples=4"]  # its override example
    failed = {}
    for command in commands:
        code = _run_readme_command(command, tmp_path)
        if code != 0:
            failed[command] = capsys.readouterr().err[-500:]
    assert not failed, failed
    printed = capsys.readouterr().out
    assert "config: configs/train/vqa.yaml" in printed and "would be built first" in printed
    assert "val_metric is the ITM recall sum R@1+R@5+R@10" in printed  # search_itm.py says what its number is
    assert json.loads((tmp_path / "arch.json").read_text())["epoch0"]["enc"][0] == ["self_att_64"]
