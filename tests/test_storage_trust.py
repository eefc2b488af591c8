"""The trust boundary of experiment storage (mmsearch.storage.trust), without Ray.

Resuming unpickles Ray Tune's state: a local experiment directory that someone else can write is
refused (exit 2, before Ray starts) and the planted pickle never runs. mmsearch's own files are
JSON and its torch files load with ``weights_only=True``.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest

from mmsearch.orchestration import cluster
from mmsearch.orchestration.jobs import BAD_INPUT_EXIT, JOBS, main
from mmsearch.storage import StorageError, StorageLocation, preflight
from mmsearch.storage.trust import check_resume_trust

PACKAGE = Path(__file__).resolve().parents[1] / "mmsearch"


class _Planted:
    """Unpickling this writes a marker file: what a planted tuner.pkl could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the pickle ran\n"))


def plant_experiment(exp: Path, marker: Path) -> None:
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    for path in (exp, *exp.iterdir()):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


@pytest.fixture
def no_ray(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the job connected to Ray although the experiment directory is not trusted")

    monkeypatch.setattr(cluster, "connect", refuse)
    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))


def test_world_writable_experiment_is_refused_before_ray_and_its_pickle_never_runs(no_ray, capsys, tmp_path):
    exp, marker = tmp_path / "results" / "search_vqa", tmp_path / "pwned"
    plant_experiment(exp, marker)
    os.chmod(exp / "tuner.pkl", 0o666)
    code = main(JOBS["search_vqa"], ["--storage", str(tmp_path / "results"), "recipe.data.root=synthetic"])
    err = capsys.readouterr().err
    assert code == BAD_INPUT_EXIT, err
    assert re.search(r"refusing to resume .*tuner\.pkl is writable by others \(mode 666\)", err), err
    assert len(err.strip().splitlines()) == 1 and "chmod -R go-w" in err
    assert not marker.exists()
    assert sorted(p.name for p in exp.iterdir()) == ["experiment_state-2026-01-01_00-00-00.json", "tuner.pkl"]


def test_untrusted_directory_symlink_and_group_are_refused_private_is_resumed(tmp_path):
    exp = tmp_path / "exp"
    plant_experiment(exp, tmp_path / "pwned")
    location = StorageLocation(uri=str(exp))
    check_resume_trust(location)  # private: fine
    preflight(location)

    os.chmod(exp, 0o777)
    with pytest.raises(StorageError, match=rf"{re.escape(str(exp))} is writable by others"):
        preflight(location)
    os.chmod(exp, 0o700)

    real = tmp_path / "elsewhere.pkl"
    (exp / "tuner.pkl").rename(real)
    (exp / "tuner.pkl").symlink_to(real)
    with pytest.raises(StorageError, match="tuner.pkl is a symbolic link"):
        check_resume_trust(location)
    (exp / "tuner.pkl").unlink()
    real.rename(exp / "tuner.pkl")

    state = next(exp.glob("experiment_state-*.json"))
    os.chmod(state, 0o620)
    try:
        os.chown(state, -1, 1)  # a shared group (gid 1: daemon/bin), not the user's private one
    except PermissionError:
        pytest.skip("cannot change the file's group here")
    with pytest.raises(StorageError, match="writable by its group, which has other members"):
        check_resume_trust(location)

    new = StorageLocation(uri=str(tmp_path / "new"))  # nothing to resume: never refused
    (tmp_path / "new").mkdir(mode=0o777)
    os.chmod(tmp_path / "new", 0o777)
    check_resume_trust(new)


def test_own_files_are_json_and_torch_files_load_with_weights_only():
    loads = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                loads.append(f"{path}:{number}: {line.strip()}")
            if re.search(r"\bpickle\.loads?\(|yaml\.(unsafe_)?load\(|\bjoblib\.load\(", line):
                loads.append(f"{path}:{number}: {line.strip()}")
    # The one pickle.loads: image descriptors the precompute job pickled itself, in flight between its own stages.
    allowed = {str(PACKAGE / "data" / "precompute" / "encode.py")}
    assert [entry for entry in loads if entry.split(":")[0] not in allowed] == []
