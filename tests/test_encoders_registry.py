"""Properties every registered encoder keeps: metadata, frozen weights, deterministic latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch.encoders import ENCODERS, build_encoder
from mmsearch.registry import UnknownNameError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP threads spinning on each other cost 3-5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=ENCODERS.names())
def encoder(request):
    return build_encoder(request.param, batch_size=2)


def sample_inputs(modality: str, n: int):
    if modality == "image":
        rng = np.random.default_rng(1)
        return torch.from_numpy(rng.integers(0, 256, size=(n, 3, 64, 64), dtype=np.uint8))
    return [f"a photo of {k} red cubes left of a blue sphere" for k in range(n)]


def test_metadata_describes_the_latent(encoder):
    info = encoder.info
    assert info.name in ENCODERS
    assert info.modality in ("image", "text") and info.dim > 0 and info.latent and info.source


def test_frozen_and_stays_in_eval_mode(encoder):
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())


def test_embed_is_batched_deterministic_and_finite(encoder):
    inputs = sample_inputs(encoder.info.modality, 3)  # 3 inputs in chunks of 2
    first, second = encoder.embed(inputs), encoder.embed(inputs)
    assert first.shape == (3, encoder.info.dim) and first.dtype == torch.float32
    assert torch.isfinite(first).all() and first.device.type == "cpu"
    assert torch.equal(first, second)
    assert not torch.allclose(first[0], first[1])  # different inputs, different latents


def test_unknown_encoder_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="efficientnet_lite0"):
        build_encoder("resnet50")
    assert ENCODERS.canonical("efficientnet-lite0") == "efficientnet_lite0"
