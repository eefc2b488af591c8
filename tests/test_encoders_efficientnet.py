"""EfficientNet-Lite0: the packaged weights are the real ImageNet ones, and the encoder API holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.encoders import EfficientNetLite0Encoder, build_encoder

DAISY = 985
BUILDING_CLASSES = {442, 663, 698}  # bell cote, monastery, palace


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP threads spinning on each other cost 3-5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLite0Encoder:
    return build_encoder("efficientnet_lite0", batch_size=4)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    from sklearn.datasets import load_sample_image

    return [Image.fromarray(load_sample_image(name)) for name in ("flower.jpg", "china.jpg")]


@pytest.fixture(scope="module")
def photo_logits(encoder, photos) -> torch.Tensor:
    return encoder.logits(photos)


@pytest.fixture(scope="module")
def photo_features(encoder, photos) -> torch.Tensor:
    return encoder.encode(photos)


def test_real_weights_classify_sample_photos(photo_logits):
    probs = photo_logits.softmax(-1)
    assert probs.shape == (2, 1000)
    flower_top5 = probs[0].topk(5).indices.tolist()
    china_top3 = probs[1].topk(3).indices.tolist()
    assert flower_top5[0] == DAISY, flower_top5
    assert china_top3[0] in BUILDING_CLASSES and len(BUILDING_CLASSES & set(china_top3)) >= 2, china_top3


def test_encode_shapes_dtype_and_pooling_matches_head(encoder, photo_features, photo_logits):
    assert photo_features.shape == (2, 1280) and photo_features.dtype == torch.float32
    assert torch.isfinite(photo_features).all() and (photo_features >= 0).all()  # ReLU6 before the pool
    # The ImageNet head applied to the pooled features gives the logits: pooling is the head's input.
    torch.testing.assert_close(encoder.net._fc(photo_features), photo_logits, rtol=1e-4, atol=1e-4)


def test_tensor_input_and_chunking_match_pil_input(encoder, photos, photo_features):
    batch = encoder.to_uint8_batch(photos)
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 224, 224)
    one_at_a_time = EfficientNetLite0Encoder(batch_size=1)
    torch.testing.assert_close(one_at_a_time.encode(batch), photo_features, rtol=1e-4, atol=1e-4)


def test_speedups_keep_outputs():
    """BatchNorm folding and channels-last give what the network as shipped gives."""
    crops = torch.from_numpy(np.random.default_rng(2).integers(0, 256, size=(2, 3, 64, 64), dtype=np.uint8))
    fast = EfficientNetLite0Encoder(resolution=64)
    as_shipped = EfficientNetLite0Encoder(resolution=64, fuse_batchnorm=False, channels_last=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in as_shipped.modules())
    torch.testing.assert_close(as_shipped.encode(crops), fast.encode(crops), rtol=1e-4, atol=1e-4)


def test_tf_lite_normalisation():
    values = torch.tensor([0, 127, 255], dtype=torch.uint8)
    expected = torch.tensor([-127 / 128, 0.0, 1.0])
    torch.testing.assert_close(EfficientNetLite0Encoder.normalise(values), expected)


def test_configurable_resolution_resizes_any_input():
    enc = EfficientNetLite0Encoder(resolution=64, batch_size=2)
    rng = np.random.default_rng(0)
    crops = torch.from_numpy(rng.integers(0, 256, size=(4, 3, 40, 70), dtype=np.uint8))
    resized = enc.to_uint8_batch(crops)
    assert resized.shape == (4, 3, 64, 64) and resized.dtype == torch.uint8
    feats = enc.encode(crops)
    assert feats.shape == (4, 1280)
    torch.testing.assert_close(feats, enc.encode(resized))  # resizing happens once, up front
    torch.testing.assert_close(feats, enc.encode(crops))  # deterministic
    assert enc.encode(torch.zeros((0, 3, 64, 64), dtype=torch.uint8)).shape == (0, 1280)
    assert "64x64" in enc.info.latent


def test_bad_inputs_fail_clearly(encoder):
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode(torch.zeros((2, 3, 32, 32), dtype=torch.float32))
    with pytest.raises(ValueError, match=r"\[n, 3, H, W\]"):
        encoder.encode(torch.zeros((2, 32, 32, 3), dtype=torch.uint8))
    with pytest.raises(TypeError, match="PIL image"):
        encoder.encode([np.zeros((8, 8, 3), dtype=np.uint8)])
    with pytest.raises(ValueError, match="resolution"):
        EfficientNetLite0Encoder(resolution=16)
    with pytest.raises(FileNotFoundError, match="no/such/weights.pth"):
        EfficientNetLite0Encoder(weights_path="/no/such/weights.pth")
