"""Bad input fails before any trial starts (before Ray is even joined), with a message naming the problem."""
from __future__ import annotations

import re
import socket

import pytest

from mmsearch.orchestration import cluster
from mmsearch.orchestration.jobs import BAD_INPUT_EXIT, JOBS, main


@pytest.fixture(autouse=True)
def no_ray(monkeypatch, tmp_path):
    """Fails the test if a job gets as far as joining or starting Ray; the data set cache is private."""

    def refuse(*args, **kwargs):
        raise AssertionError("the job connected to Ray although its input is bad")

    monkeypatch.setattr(cluster, "connect", refuse)
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))


def run(capsys, job: str, *argv: str) -> str:
    code = main(JOBS[job], list(argv))
    err = capsys.readouterr().err
    assert code == BAD_INPUT_EXIT, err
    return err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("recipe.search.epochs=0",), r"search\.epochs"),
        (("recipe.search.strategy=annealing",), "unknown strategy 'annealing'"),
        (("recipe.model.dec_pool=[self_att, bogus_op]",), "bogus_op"),
        (("tune.search_space={model.dec_pool: {choice: [[self_att, rel_self_att, guided_att, feed_forward], [self_att, bogus_op]]}}",), "bogus_op"),
        (("tune.search_space={search.arch_lrate: {loguniform: [0.01, 0.1]}}",), "has no field 'arch_lrate'"),
        (("tune.scheduler.grace_period=0",), "grace_period must be >= 1"),
        (("--config", "configs/search/nope.yaml"), "config file not found"),
    ],
)
def test_invalid_config_fails_naming_the_problem(capsys, tmp_path, argv, message):
    err = run(capsys, "search_vqa", "--storage", str(tmp_path / "results"), *argv)
    assert re.search(message, err), err
    assert not (tmp_path / "results").exists()  # nothing was written either


def test_missing_data_root_fails_naming_it(capsys, tmp_path):
    missing = tmp_path / "no_such_data"
    err = run(capsys, "search_vqa", "--data-root", str(missing), "--storage", str(tmp_path / "results"))
    assert str(missing) in err and "no precomputed data set" in err
    assert not (tmp_path / "results").exists()


def test_missing_latent_store_fails_naming_it(capsys, tmp_path):
    missing = tmp_path / "no_such_store"
    err = run(capsys, "tune_fusemix", f"recipe.data.store={missing}", "--storage", str(tmp_path / "results"))
    assert f"data.store {str(missing)!r}" in err
    assert not (tmp_path / "results").exists()


def test_unreachable_storage_fails_naming_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = closed_port()
    err = run(capsys, "search_vqa", "--storage", "s3://bucket/experiments", f"tune.s3_endpoint_url=http://127.0.0.1:{port}",
              "recipe.data.root=synthetic")
    assert "storage s3://bucket/experiments/search_vqa is not usable" in err and f"127.0.0.1:{port}" in err


def test_storage_below_a_file_fails(capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")
    err = run(capsys, "search_vqa", "--storage", str(tmp_path / "a_file"), "recipe.data.root=synthetic")
    assert "could not create the directory" in err


def test_then_train_with_another_tasks_config_is_refused(capsys, tmp_path):
    err = run(capsys, "search_vqa", "--then-train", "--train-config", "configs/train/vg.yaml",
              "recipe.data.root=synthetic", "--storage", str(tmp_path / "results"))
    assert "trains task 'vg', the search is for 'vqa'" in err
