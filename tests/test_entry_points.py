"""Entry points answer --help without loading torch or Ray; export-arch writes MMnas's layout; the
train job picks its config from the architecture's task; progress lines; quiet Ray output."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mmsearch import cli
from mmsearch.nas import named_spec
from mmsearch.nas.arch_spec import MMNAS_NAMES, SPECS_DIR, save_arch_spec
from mmsearch.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "matplotlib", "transformers", "pyarrow")

# Runs every job script's and every mmsearch subcommand's --help in one fresh interpreter, then
# lists the heavy packages that got imported on the way.
_HELP_EVERYWHERE = """
import contextlib, io, json, runpy, sys
from pathlib import Path
codes = {}
for script in sorted(Path("jobs").glob("*.py")):
    sys.argv = [str(script), "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as stop:
            codes[script.name] = (stop.code, "usage:" in out.getvalue())
from mmsearch import cli
for command in cli.COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            cli.main([command, "--help"])
        except SystemExit as stop:
            codes[command] = (stop.code, out.getvalue().startswith("usage: mmsearch " + command))
print(json.dumps({"codes": codes, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def test_help_of_every_job_and_subcommand_imports_neither_torch_nor_ray():
    done = subprocess.run([sys.executable, "-c", _HELP_EVERYWHERE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    jobs = {p.name for p in (ROOT / "jobs").glob("*.py")}
    assert set(found["codes"]) == jobs | set(cli.COMMANDS)
    assert all(code == [0, True] for code in found["codes"].values()), found["codes"]  # exit 0, its own usage line
    assert found["heavy"] == []


def test_export_arch_writes_mmnas_files_as_mmnas_publishes_them(capsys):
    for name in ("mmnas_vqa", "mmnas_itm", "mcan"):
        assert cli.main(["export-arch", name]) == 0
        published = json.loads((SPECS_DIR / f"{name}.json").read_text())
        assert json.loads(capsys.readouterr().out) == published  # MMnas's own arch/*.json, key for key


def test_export_arch_of_a_search_output_names_the_epoch_mmnas_loads(tmp_path, capsys):
    searched = named_spec("mmnas_vg").replace(epoch=7, seed=3, task="vg", probs=None)
    save_arch_spec(searched, tmp_path / "best_arch.json")  # what a search leaves in its output directory
    out = tmp_path / "arch.json"
    assert cli.main(["export-arch", str(tmp_path), "--format", "mmnas", "--out", str(out), "--epoch", "4"]) == 0
    written = json.loads(out.read_text())
    assert list(written) == ["epoch4"] and set(written["epoch4"]) == {"enc", "dec"}
    for chain, ops in (("enc", searched.enc), ("dec", searched.dec)):  # one MMnas op name per block
        assert written["epoch4"][chain] == [[MMNAS_NAMES[op]] for op in ops]
    assert "--GENO_EPOCH=4" in capsys.readouterr().err
    assert cli.main(["export-arch", str(tmp_path / "missing")]) == 2
    assert "neither a named spec" in capsys.readouterr().err


def _train_job():
    import mmsearch.orchestration.train_job as job  # what jobs/train_derived.py and mmsearch train run

    return job


def test_train_job_takes_the_config_of_the_architectures_task_and_a_searchs_data(tmp_path, capsys, monkeypatch):
    job = _train_job()
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMSEARCH_VERBOSE", "1")  # main() sets it; restored afterwards
    args = job.build_parser().parse_args(["--check"])
    path, overrides = job.arch_defaults("mmnas_vg", args)  # a named spec: the data set search_vg.py reads
    assert path == "configs/train/vg.yaml" and overrides[0].startswith(f"data.root={tmp_path / 'cache'}/scenes-")
    assert "would be built first" in capsys.readouterr().out  # --check builds nothing
    assert job.arch_defaults("mmnas_itm", job.build_parser().parse_args(["--smoke-test"])) == ("configs/train/itm.yaml", [])
    assert job.arch_defaults("mcan", job.build_parser().parse_args(["data.root=/d"])) == ("configs/train/vqa.yaml", [])
    assert "the default task" in capsys.readouterr().out  # mcan records no task: VQA, said so
    searched = named_spec("mmnas_itm").replace(task="itm", config={"data": {"root": "/data/scenes-1234", "task": "itm"}})
    save_arch_spec(searched, tmp_path / "best_arch.json")
    assert job.arch_defaults(str(tmp_path), args) == ("configs/train/itm.yaml", ["data.root=/data/scenes-1234"])
    assert job.main(["--arch", str(tmp_path / "nowhere"), "--check"]) == 2
    assert job.main(["--arch", "mmnas_vg", "--check", "--smoke-test"]) == 0
    assert "config valid: vg on synthetic" in capsys.readouterr().out


def test_progress_logs_every_few_seconds_with_rate_and_eta(caplog):
    now = [0.0]
    progress = Progress("image stage", 1000, "images", log=logging.getLogger("t"), every_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(10):  # 100 images every 2 s: a line at 6 s (300), 12 s (600), 18 s (900), and the end
            now[0] += 2.0
            progress.advance(100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "image stage: 300/1000 images (30%), 50.0 images/s, ETA 14 s"
    assert len(lines) == 4 and lines[-1] == "image stage: 1000/1000 images (100%), 50.0 images/s, done in 20 s"


def test_progress_rate_and_eta_count_from_the_first_batch_not_the_workers_start(caplog):
    now = [0.0]
    progress = Progress("text stage", 300, "rows", log=logging.getLogger("t"), every_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        for at, n in ((20.0, 32), (21.0, 32), (26.0, 32), (40.0, 204)):  # 20 s of actor start-up, then ~10 rows/s
            now[0] = at
            progress.advance(n)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["text stage: 32/300 rows (11%), first rows after 20 s",  # no ETA made of the start-up
                     "text stage: 96/300 rows (32%), 10.7 rows/s, ETA 19 s",  # 64 rows in the 6 s since the first
                     "text stage: 300/300 rows (100%), 7.5 rows/s, done in 40 s"]


def test_quiet_by_default_and_verbose_on_request(monkeypatch):
    from mmsearch.orchestration import quiet

    env: dict[str, str] = {}
    assert quiet.runtime_env_hook(env) == {} and not quiet.is_quiet(env)  # outside a job: Ray's defaults
    quiet.set_verbose(False, env)
    assert quiet.runtime_env_hook(env) == {"worker_process_setup_hook": quiet.WORKER_HOOK}
    quiet.set_verbose(True, env)
    assert quiet.runtime_env_hook(env) == {}
    from mmsearch.orchestration.cluster import FORWARDED_ENV

    assert quiet.VERBOSE_ENV in FORWARDED_ENV  # the trials' Ray Data readers see the choice
    ray_data = pytest.importorskip("ray.data")
    before = {n: logging.getLogger(n).level for n in quiet.QUIET_LOGGERS}
    try:
        monkeypatch.setenv(quiet.VERBOSE_ENV, "0")
        context = quiet.quiet_data_context(ray_data.DataContext.get_current().copy())
        assert context.print_on_execution_start is False
        monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
        transformers_logging = pytest.importorskip("transformers.utils.logging")
        bars = transformers_logging.is_progress_bar_enabled()
        try:
            quiet.quiet_loggers()
            assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # read where transformers is imported later
            assert transformers_logging.is_progress_bar_enabled() is False  # and where it is imported already
        finally:
            (transformers_logging.enable_progress_bar if bars else transformers_logging.disable_progress_bar)()
        assert all(logging.getLogger(n).level == level for n, level in quiet.QUIET_LOGGERS.items())
        assert logging.getLogger("ray.data._internal.progress").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("ray.train._internal.storage").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("matplotlib.font_manager").level == logging.WARNING  # no "generated new fontManager" (the job logs at INFO)
        monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
        assert quiet.quiet_data_context(ray_data.DataContext.get_current().copy()).print_on_execution_start is True
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def test_quiet_workers_drop_ray_trains_per_epoch_report_line_and_rays_own_deprecations(monkeypatch):
    from mmsearch.orchestration import quiet

    context = pytest.importorskip("ray.train.v2._internal.execution.context")  # logs through getLogger(__file__)
    before = {name: logging.getLogger(name).level for name in quiet.QUIET_LOGGERS} | {context.logger.name: context.logger.level}
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # quiet_loggers sets it; restored afterwards
    bars = sys.modules.get("transformers") and sys.modules["transformers"].utils.logging.is_progress_bar_enabled()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet.quiet_loggers()  # the workers' setup hook
            warnings.warn("`ExecutionOptions.exclude_resources` is deprecated and will be removed", DeprecationWarning)
            warnings.warn("a warning of the job's own", UserWarning)
        assert context.logger.getEffectiveLevel() == logging.WARNING  # no "Reporting training result N" per epoch
        assert logging.getLogger("ray.tune.tune").getEffectiveLevel() == logging.WARNING  # no "Wrote the latest version..."
        assert [str(w.message) for w in caught] == ["a warning of the job's own"]  # other warnings stay
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            sys.modules["transformers"].utils.logging.enable_progress_bar()


def test_quiet_trials_drop_ray_datas_note_about_two_datasets_logging_at_once(monkeypatch):
    """A streamed search trial iterates its weights and architecture passes as two Ray Data
    datasets at once; Ray Data notes each such registration at INFO (7 lines in a 4-trial job).
    The quiet workers drop the note; Ray Data's own warnings from that logger stay."""
    from mmsearch.orchestration import quiet

    ray_logging = pytest.importorskip("ray.data._internal.logging")
    logger = logging.getLogger("ray.data._internal.logging")
    caught: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    def two_datasets_at_once(first: str, second: str) -> list[str]:
        caught.clear()
        try:
            ray_logging.register_dataset_logger(first)
            ray_logging.register_dataset_logger(second)
        finally:
            ray_logging.unregister_dataset_logger(second)
            ray_logging.unregister_dataset_logger(first)
        return [m for m in caught if "registers for logging while another dataset" in m]

    handler, propagate = Catch(), logger.propagate
    before = {name: logging.getLogger(name).level for name in quiet.QUIET_LOGGERS}
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # quiet_loggers sets it; restored afterwards
    bars = sys.modules.get("transformers") and sys.modules["transformers"].utils.logging.is_progress_bar_enabled()
    logger.addHandler(handler)
    logger.propagate = False  # the records come to this test's handler, not the console
    try:
        logger.setLevel(logging.NOTSET)
        assert len(two_datasets_at_once("ds_a", "ds_b")) == 1  # Ray Data emits it, as in a trial
        with warnings.catch_warnings():  # the filters quiet_loggers adds end with the test
            quiet.quiet_loggers()  # the workers' setup hook
        assert two_datasets_at_once("ds_c", "ds_d") == []
        logger.warning("a warning of Ray Data's")
        assert caught[-1] == "a warning of Ray Data's"
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            sys.modules["transformers"].utils.logging.enable_progress_bar()
