"""The precompute job on Ray Data (session Ray instance): same stores as the local backend."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmsearch.cli import run_precompute_job
from mmsearch.data.dataset_root import DatasetRoot
from mmsearch.data.store import open_store
from mmsearch.data.precompute import precompute
from test_precompute_common import scenes_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
# Ray's error-level line for a restartable actor whose constructor arguments live in the object
# store (harmless for a stage that is never restarted, but it reads as a failure; issue 15).
RESTART_WARNING = "has constructor arguments in the object store and max_restarts > 0"


def load_job():
    """What ``jobs/precompute_latents.py`` and ``mmsearch precompute`` run."""
    return SimpleNamespace(main=run_precompute_job)


def read_split(root: str, split: str, tables) -> dict:
    store = open_store(DatasetRoot(root).split_uri(split))
    return {name: store.table(name).read_all(float_dtype=None) for name in tables}


def ray_log_lines(ray, needle: str) -> list[str]:
    """Lines of this Ray session's log files (driver and workers, C++ and Python) holding ``needle``."""
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    return [line for path in logs.rglob("*") if path.is_file()
            for line in path.read_text(errors="replace").splitlines() if needle in line]


def test_job_on_ray_data_writes_the_same_stores_as_the_local_backend(ray_session, tmp_path, capsys):
    local = precompute(scenes_config(tmp_path / "local", num_scenes=12, text={"states": False}))
    output = str(tmp_path / "ray")
    job = load_job()
    args = ["--output", output, "--backend", "ray", "source.scenes.num_scenes=12", "text.states=false",
            "ray.image_batch=3", "ray.text_batch=128", "ray.text_actors=1"]
    before = set(ray_log_lines(ray_session, RESTART_WARNING))  # the session's earlier tests are not this job
    assert job.main(args) == 0
    printed = capsys.readouterr().out
    assert f"written to {output}" in printed and "regions/s" in printed and "texts/s" in printed
    # no error-level line for what is not an error
    assert [line for line in ray_log_lines(ray_session, RESTART_WARNING) if line not in before] == []

    card = DatasetRoot(output).read_card()
    assert card.fingerprint == local.card.fingerprint and card.splits == local.card.splits
    stages = card.throughput["stages"]
    assert card.throughput["backend"] == "ray" and stages["image"]["actors"] == 2 and stages["text"]["actors"] == 1
    for split in card.splits:
        ours, theirs = read_split(output, split, card.tables), read_split(local.root, split, card.tables)
        for table in card.tables:
            for column, values in theirs[table].items():
                got = ours[table][column]
                if isinstance(values, list):
                    assert got == values, (split, table, column)
                elif values.dtype.kind == "f":  # float16 latents: batch composition moves the last bit
                    assert np.allclose(got.astype(np.float32), values.astype(np.float32), atol=4e-3, rtol=4e-3), (split, table, column)
                else:
                    assert np.array_equal(got, values), (split, table, column)

    from mmsearch.orchestration.ray_data import RayDataStream

    stream = RayDataStream.from_store(DatasetRoot(output).split_uri("train"), "pairs", ["image_id", "image", "text"])
    rows = [b for b in stream.epoch(0, 32, seed=1)]
    assert sum(len(b["image_id"]) for b in rows) == card.splits["train"]["pairs"] and rows[0]["image"].shape[1] == 1280

    assert job.main(args) == 0  # a complete root: nothing runs
    assert "already complete" in capsys.readouterr().out
