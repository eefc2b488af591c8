"""FuseMix recipe end to end on small synthetic latents with a real, learnable signal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmsearch.config import ConfigError, load_config
from mmsearch.embed import FuseMixEmbedder
from mmsearch.metrics.retrieval import chance_recall, retrieval_recall_chunked
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.fusemix.recipe import train_fusemix
from mmsearch.recipes.fusemix.config import FuseMixConfig
from mmsearch.recipes.fusemix.data import FuseMixDataError, TensorStream, eval_set_from_stream, tensor_stream_factory

X_DIM, Y_DIM, CAPTIONS = 24, 16, 2
TIMING_KEYS = {"pairs_per_s", "mixed_pairs_per_s", "data_wait_s", "compute_s", "train_s", "eval_s", "export_dir"}


def _split(n_items: int, mapping: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Items x with CAPTIONS noisy linear views y = x @ W + noise each (rows are pairs)."""
    items = torch.randn(n_items, X_DIM, generator=gen)
    ids = torch.arange(n_items).repeat_interleave(CAPTIONS)
    texts = items[ids] @ mapping + 0.3 * torch.randn(len(ids), Y_DIM, generator=gen)
    return {"image": items[ids], "text": texts, "image_id": ids}


@pytest.fixture(scope="module")
def splits() -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    mapping = torch.randn(X_DIM, Y_DIM, generator=gen)
    return {"train": _split(300, mapping, gen), "val": _split(100, mapping, gen), "test": _split(100, mapping, gen)}


def _config(**sections) -> FuseMixConfig:
    base = {
        "model": {"out_dim": 32, "x": {"depth": 1, "width_factor": 2, "dropout": 0.1},
                  "y": {"depth": 1, "width_factor": 2, "dropout": 0.1}},
        "optim": {"lr": 3e-3, "warmup_steps": 4},
        "train": {"batch_size": 64, "epochs": 3, "device": "cpu", "num_threads": 1},  # tiny matmuls: 1 thread is faster
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_config(FuseMixConfig, base)


class CrashAfter(LocalContext):
    """A LocalContext whose process 'dies' right after persisting the report of epoch ``k``."""

    def __init__(self, run_dir: Path, k: int) -> None:
        super().__init__(run_dir)
        self.k = k

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.k:
            raise KeyboardInterrupt("simulated crash")


def test_training_learns_and_exports_the_selected_adapters(tmp_path, splits):
    context = LocalContext(tmp_path)
    threads = torch.get_num_threads()
    final = train_fusemix(_config(), context, stream_factory=tensor_stream_factory(splits))
    assert torch.get_num_threads() == threads  # train.num_threads applies to the run only

    history = context.history
    assert all(m["peak_rss_mib"] > 0 for m in history)
    assert [m["epoch"] for m in history] == [1, 2, 3]  # completed epochs, counted from 1
    for key in ("loss", "temperature", "lr", "val_i2t_r1", "val_t2i_r10", "val_rsum", "pairs_per_s",
                "data_wait_s", "compute_s", "best_epoch"):
        assert key in history[0], key
    assert history[-1]["loss"] < history[0]["loss"]
    assert 0.001 <= history[-1]["temperature"] <= 0.5
    # 100 val images, 2 captions each: chance R@1 is about 1-2 %; the signal is learnable.
    chance = chance_recall(100, 200, torch.arange(100).repeat_interleave(2), ks=(1, 5, 10))
    assert final["val_i2t_r1"] > 10 * chance["i2t_r1"] and final["val_t2i_r1"] > 10 * chance["t2i_r1"]
    assert final["test_rsum"] > 5 * sum(chance.values())
    assert history[-1]["pairs_per_s"] > 0 and history[-1]["dropped_rows"] == 600 % 64

    # The export holds the best-on-validation adapters; they reproduce the reported test recall.
    export = FuseMixEmbedder.load(final["export_dir"])
    assert export.sides["x"].column == "image" and export.sides["x"].dim == X_DIM
    test_set = eval_set_from_stream(TensorStream(splits["test"]), _config().data)
    recall = retrieval_recall_chunked(export.embed_x(test_set.x), export.embed_y(test_set.y), test_set.y_to_x)
    for key, value in recall.items():
        assert final[f"test_{key}"] == pytest.approx(value, abs=1e-6), key
    best = max(history, key=lambda m: m["val_rsum"])
    assert final["best_epoch"] == best["epoch"]
    assert json.loads((tmp_path / "final_metrics.json").read_text())["test_rsum"] == final["test_rsum"]
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["epoch_000002", "epoch_000003"]  # LocalContext keeps the last two
    assert {p.name for p in (tmp_path / "checkpoints" / "epoch_000003").iterdir()} >= {
        "state.pt", "best", "config.yaml", "metrics.json"}


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, splits):
    cfg = _config(loss={"mixup_alpha": 1.0})
    factory = tensor_stream_factory(splits)
    straight = train_fusemix(cfg, LocalContext(tmp_path / "straight"), stream_factory=factory)

    with pytest.raises(KeyboardInterrupt):
        train_fusemix(cfg, CrashAfter(tmp_path / "resumed", k=2), stream_factory=factory)
    resumed_context = LocalContext(tmp_path / "resumed")
    resumed = train_fusemix(cfg, resumed_context, stream_factory=factory)

    assert [m["epoch"] for m in resumed_context.history] == [3]  # only the missing epoch ran
    for key in set(straight) - TIMING_KEYS:
        assert resumed[key] == straight[key], key
    a = FuseMixEmbedder.load(straight["export_dir"]).model.state_dict()
    b = FuseMixEmbedder.load(resumed["export_dir"]).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_restarts_without_training_again(tmp_path, splits):
    cfg = _config(train={"epochs": 1})
    factory = tensor_stream_factory(splits)
    first = train_fusemix(cfg, LocalContext(tmp_path), stream_factory=factory)
    again_context = LocalContext(tmp_path)
    again = train_fusemix(cfg, again_context, stream_factory=factory)
    assert again_context.history == [] and again["test_rsum"] == first["test_rsum"]


def test_halves_mode_trains_on_half_the_pairs(tmp_path, splits):
    final = train_fusemix(_config(loss={"mixup_mode": "halves"}, train={"epochs": 1}), LocalContext(tmp_path),
                          stream_factory=tensor_stream_factory(splits))
    assert final["mixed_pairs_per_s"] == pytest.approx(final["pairs_per_s"] / 2)


def test_permutation_and_no_mixup_keep_the_batch(tmp_path, splits):
    for alpha in (0.0, 1.0):
        final = train_fusemix(_config(loss={"mixup_alpha": alpha}, train={"epochs": 1}),
                              LocalContext(tmp_path / str(alpha)), stream_factory=tensor_stream_factory(splits))
        assert final["mixed_pairs_per_s"] == pytest.approx(final["pairs_per_s"])


def test_multi_positive_loss_trains(tmp_path, splits):
    final = train_fusemix(_config(loss={"multi_positive": True, "chunk_size": 16}, train={"epochs": 2}), LocalContext(tmp_path),
                          stream_factory=tensor_stream_factory(splits))
    assert final["val_t2i_r1"] > 20


def test_string_group_ids_define_eval_items(splits):
    columns = dict(splits["val"])
    columns["image_id"] = [f"img{int(i)}" for i in columns["image_id"]]
    eval_set = eval_set_from_stream(TensorStream(columns), _config().data, batch_size=7)
    assert eval_set.x.shape == (100, X_DIM) and eval_set.y.shape == (200, Y_DIM)
    assert torch.bincount(eval_set.y_to_x).tolist() == [2] * 100
    # every text row's item is the x row it was paired with
    for j in range(0, 200, 17):
        row = next(i for i in range(200) if torch.equal(columns["text"][i], eval_set.y[j]))
        assert torch.equal(eval_set.x[eval_set.y_to_x[j]], columns["image"][row])


def _with(splits, split, **columns):
    changed = {name: dict(values) for name, values in splits.items()}
    changed[split].update(columns)
    return tensor_stream_factory(changed)


def test_dimension_mismatch_between_config_and_data(tmp_path, splits):
    with pytest.raises(FuseMixDataError, match=r"'image' has dimension 24 .* model.x_dim is 10"):
        train_fusemix(_config(model={"x_dim": 10}), LocalContext(tmp_path), stream_factory=tensor_stream_factory(splits))


def test_dimension_mismatch_between_splits(tmp_path, splits):
    factory = _with(splits, "train", text=torch.randn(600, Y_DIM + 1))
    with pytest.raises(FuseMixDataError, match=r"'text' has dimension 17, expected 16"):
        train_fusemix(_config(), LocalContext(tmp_path), stream_factory=factory)


def test_nan_latents_are_rejected(tmp_path, splits):
    image = splits["train"]["image"].clone()
    image[5, 3] = float("nan")
    with pytest.raises(FuseMixDataError, match=r"'image' contains NaN"):
        train_fusemix(_config(), LocalContext(tmp_path), stream_factory=_with(splits, "train", image=image))


def test_empty_or_too_small_training_split(tmp_path, splits):
    empty = {"image": torch.empty(0, X_DIM), "text": torch.empty(0, Y_DIM), "image_id": torch.empty(0, dtype=torch.long)}
    with pytest.raises(FuseMixDataError, match="no batch of 64 pairs"):
        train_fusemix(_config(), LocalContext(tmp_path / "a"), stream_factory=_with(splits, "train", **empty))
    with pytest.raises(FuseMixDataError, match="lower train.batch_size"):
        train_fusemix(_config(train={"batch_size": 1000}), LocalContext(tmp_path / "b"),
                      stream_factory=tensor_stream_factory(splits))


def test_missing_column_and_missing_store(tmp_path, splits):
    factory = tensor_stream_factory({s: {k: v for k, v in cols.items() if k != "text"} for s, cols in splits.items()})
    with pytest.raises(FuseMixDataError, match="no column 'text'"):
        train_fusemix(_config(), LocalContext(tmp_path / "a"), stream_factory=factory)
    with pytest.raises(FuseMixDataError, match="data.store is empty"):
        train_fusemix(_config(), LocalContext(tmp_path / "b"))
    with pytest.raises(FuseMixDataError, match="no stream factory"):
        train_fusemix(_config(data={"backend": "ray"}), LocalContext(tmp_path / "c"))


def test_invalid_settings(tmp_path, splits):
    factory = tensor_stream_factory(splits)
    with pytest.raises(ValueError, match="amp needs a CUDA"):
        train_fusemix(_config(train={"amp": True}), LocalContext(tmp_path), stream_factory=factory)
    with pytest.raises(ConfigError, match="multi_positive needs data.group_column"):
        _config(data={"group_column": None}, loss={"multi_positive": True})
    with pytest.raises(ConfigError, match="never select a model on test"):
        _config(data={"val_store": "s/val", "test_store": "s/val"})
    with pytest.raises(ConfigError, match="select_metric"):
        _config(eval={"select_metric": "test_rsum"})
    with pytest.raises(ConfigError, match="unknown key"):
        _config(train={"batchsize": 3})


def test_trains_from_local_latent_stores_through_the_default_factory(tmp_path, splits):
    from mmsearch.data.store import StoreWriter, scalar, vector

    uris = {}
    for split, columns in splits.items():
        uris[split] = str(tmp_path / "stores" / split)
        with StoreWriter(uris[split], dataset="synthetic", split=split, row_group_rows=64) as writer:
            writer.add_table("pairs", {"image_id": scalar("string"), "image": vector(X_DIM, "float32", encoder="enc_x"),
                                       "text": vector(Y_DIM, "float32", encoder="enc_y")})
            writer.write_batch("pairs", {"image_id": [f"{split}-{int(i)}" for i in columns["image_id"]],
                                         "image": columns["image"].numpy(), "text": columns["text"].numpy()})
    cfg = _config(data={"store": uris["train"], "val_store": uris["val"], "test_store": uris["test"]},
                  loss={"multi_positive": True}, train={"epochs": 2})
    final = train_fusemix(cfg, LocalContext(tmp_path / "run"))
    assert final["val_i2t_r1"] > 20
    export = FuseMixEmbedder.load(final["export_dir"])
    assert (export.sides["x"].encoder, export.sides["y"].encoder) == ("enc_x", "enc_y")  # from the store metadata
    bad = _config(data={"store": uris["train"], "val_store": uris["val"], "x_column": "pixels"})
    with pytest.raises(Exception, match="pixels"):
        train_fusemix(bad, LocalContext(tmp_path / "bad"))
