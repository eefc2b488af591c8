"""Exported FuseMix adapters: round trip, embedding API, frozen encoders, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mmsearch.adapters import AdapterConfig, FuseMixModel
from mmsearch.embed import FuseMixEmbedder, ExportError, SideSpec, export_adapters, main


def _model(x_dim=12, y_dim=8, seed=0) -> FuseMixModel:
    torch.manual_seed(seed)
    return FuseMixModel(x_dim, y_dim, out_dim=6, x_adapter=AdapterConfig(depth=2, width_factor=1.5, dropout=0.3),
                        y_adapter=AdapterConfig(depth=1, width_factor=3, dropout=0.0))


@pytest.fixture()
def exported(tmp_path):
    model = _model()
    path = export_adapters(model, tmp_path / "export", x=SideSpec("image", 12, "enc_img", "image"),
                           y=SideSpec("text", 8, None, None), metadata={"best_epoch": 3})
    return model.eval(), path


def test_round_trip_reproduces_the_model(exported):
    model, path = exported
    manifest = json.loads((path / "fusemix.json").read_text())
    assert manifest["x"] == {"column": "image", "dim": 12, "encoder": "enc_img", "modality": "image"}
    assert manifest["adapters"]["x"] == {"depth": 2, "width_factor": 1.5, "dropout": 0.3}
    assert manifest["metadata"] == {"best_epoch": 3}
    embedder = FuseMixEmbedder.load(path)
    x, y = torch.randn(9, 12), torch.randn(9, 8)
    with torch.no_grad():
        torch.testing.assert_close(embedder.embed_x(x), model.embed_x(x))
        torch.testing.assert_close(embedder.embed_y(y, batch_size=4), model.embed_y(y))
    assert embedder.embed_x(x.numpy()[0]).shape == (1, 6)  # a single latent, from numpy
    assert embedder.side_for("text") == "y" and embedder.side_for("image") == "x"


def test_bad_latents_and_bad_exports(exported, tmp_path):
    _, path = exported
    embedder = FuseMixEmbedder.load(path)
    with pytest.raises(ValueError, match=r"\[n, 12\]"):
        embedder.embed_x(torch.randn(3, 8))
    with pytest.raises(ValueError, match="finite"):
        embedder.embed_y(torch.full((2, 8), float("nan")))
    with pytest.raises(ExportError, match="no encoder"):
        embedder.embed_texts(["a"])
    with pytest.raises(ExportError, match="not a FuseMix export"):
        FuseMixEmbedder.load(tmp_path / "nowhere")
    # weights that do not match the manifest fail loudly (no silent partial load)
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "adapters.safetensors"))
    del state["x_adapter.blocks.1.fc1.weight"]
    save_file(state, str(path / "adapters.safetensors"))
    with pytest.raises(ExportError, match="does not match"):
        FuseMixEmbedder.load(path)


@pytest.mark.slow  # builds the real EfficientNet-Lite0 and MiniLM encoders
def test_raw_inputs_go_through_the_registered_frozen_encoders(tmp_path):
    from PIL import Image

    from mmsearch.encoders import ENCODERS

    model = _model(x_dim=1280, y_dim=384)
    path = export_adapters(model, tmp_path / "export", x=SideSpec("image", 1280, "efficientnet_lite0"),
                           y=SideSpec("text", 384, "minilm"))
    embedder = FuseMixEmbedder.load(path)
    texts = ["a small red circle left of a blue square", "two green triangles"]
    z_text = embedder.embed_texts(texts)
    latents = ENCODERS.get("minilm")().embed(texts)
    torch.testing.assert_close(z_text, embedder.embed_y(latents))
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (32, 32), (20, 200, 40))]
    z_image = embedder.embed_images(images)
    assert z_image.shape == (2, 6)
    torch.testing.assert_close(z_image.norm(dim=1), torch.ones(2))
    assert not torch.allclose(z_image[0], z_image[1])


def test_cli_embeds_latents_to_npy_and_parquet(exported, tmp_path, capsys):
    model, path = exported
    latents = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)
    np.save(tmp_path / "lat.npy", latents)
    assert main([str(path), "--latents", str(tmp_path / "lat.npy"), "--side", "x", "--out", str(tmp_path / "z.npy")]) == 0
    with torch.no_grad():
        want = model.embed_x(torch.from_numpy(latents)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), want, rtol=1e-6, atol=1e-6)
    assert main([str(path), "--latents", str(tmp_path / "lat.npy"), "--side", "x", "--out", str(tmp_path / "z.parquet")]) == 0
    table = pq.read_table(tmp_path / "z.parquet")
    assert table.column_names == ["row", "embedding"]
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), want, rtol=1e-6, atol=1e-6)
    assert "wrote 5 embeddings of dimension 6" in capsys.readouterr().out


def test_cli_texts_through_a_fake_encoder(exported, tmp_path, monkeypatch):
    """The CLI's text path, with a stand-in encoder registry (the real one is tested above)."""
    import mmsearch.encoders
    from mmsearch.registry import Registry

    class HashEncoder:
        def __init__(self, device=None):
            pass

        def embed(self, texts):
            return torch.stack([torch.full((12,), float(len(t))) for t in texts])

    fake = Registry("encoder")
    fake.add("enc_img", HashEncoder)
    monkeypatch.setattr(mmsearch.encoders, "ENCODERS", fake)
    model, path = exported
    # Re-export with the x side declared as text, so that --texts goes through the stand-in "enc_img".
    path = export_adapters(model, tmp_path / "swapped", x=SideSpec("caption", 12, "enc_img", "text"),
                           y=SideSpec("photo", 8, None, "image"))
    (tmp_path / "texts.txt").write_text("hello\n\nworld!\n")
    out = tmp_path / "t.parquet"
    assert main([str(path), "--texts", str(tmp_path / "texts.txt"), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column("text").to_pylist() == ["hello", "world!"]  # blank lines skipped
    with torch.no_grad():
        want = model.embed_x(torch.stack([torch.full((12,), 5.0), torch.full((12,), 6.0)])).numpy()
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), want, rtol=1e-6, atol=1e-6)


def test_cli_errors(exported, tmp_path, capsys):
    _, path = exported
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), dtype=np.float32))
    assert main([str(path), "--latents", str(tmp_path / "bad.npy"), "--side", "x", "--out", str(tmp_path / "z.npy")]) == 1
    assert "[n, 12]" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--texts", str(tmp_path / "t.txt"), "--out", str(tmp_path / "z.npy")]) == 1
    assert "not a FuseMix export" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path), "--latents", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "z.npy")])  # no --side
    with pytest.raises(SystemExit):
        main([str(path), "--texts", "t.txt", "--out", str(tmp_path / "z.csv")])
    assert not (tmp_path / "z.npy").exists()
