"""Frozen pretrained encoders, by name: ``ENCODERS.get(name)(**kwargs)`` or :func:`build_encoder`.

  * ``efficientnet_lite0`` (image): ImageNet EfficientNet-Lite0, pooled 1280-d features of
    images or region crops (:mod:`.efficientnet_lite0`);
  * ``minilm`` (text): all-MiniLM-L6-v2, per-token 384-d states aligned with the compact token
    ids of ``mmsearch.data.text`` plus a pooled sentence latent (:mod:`.minilm`);
  * ``efficientnet_lite0_random<s>``, ``minilm_random<s>``: the same networks at a seeded random
    initialisation (:mod:`.random_weights`), the no-pretraining end of encoder-quality comparisons.

Heavy libraries (transformers, the weight packages) are imported only when an encoder is built.
"""
from __future__ import annotations

from mmsearch.encoders.base import ENCODERS, EncoderInfo, FrozenEncoder, freeze
from mmsearch.encoders.efficientnet_lite0 import EfficientNetLite0Encoder
from mmsearch.encoders.minilm import MiniLMEncoder, TextEncoding, minilm_input_embeddings
from mmsearch.encoders.random_weights import RANDOM_WEIGHT_SEEDS, random_weights_name
from mmsearch.encoders.wordpiece import WordPieceTokenizer, minilm_model_dir


def build_encoder(name: str, **kwargs) -> FrozenEncoder:
    """Build the registered encoder ``name`` (or an alias) with its keyword arguments."""
    return ENCODERS.get(name)(**kwargs)


__all__ = [
    "ENCODERS",
    "EfficientNetLite0Encoder",
    "EncoderInfo",
    "FrozenEncoder",
    "MiniLMEncoder",
    "RANDOM_WEIGHT_SEEDS",
    "TextEncoding",
    "WordPieceTokenizer",
    "build_encoder",
    "freeze",
    "minilm_input_embeddings",
    "minilm_model_dir",
    "random_weights_name",
]
