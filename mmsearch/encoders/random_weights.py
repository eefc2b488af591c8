"""The pretrained encoders' networks at a seeded random initialisation, as registered encoders.

``efficientnet_lite0_random<s>`` and ``minilm_random<s>`` (``s`` in :data:`RANDOM_WEIGHT_SEEDS`)
build exactly the network of ``efficientnet_lite0`` / ``minilm`` (same architecture, same
preprocessing and tokenizer, same latent) with the weights left at the library's own random
initialisation drawn from ``torch.manual_seed(s)`` (inside a forked RNG, so the caller's stream is
untouched). They are the "no encoder quality" end of the encoder-quality -> alignment comparison
(``bench/bench_fusemix_evidence.py``).

The seed is part of the *name*, so a precompute config selects it with ``image.name`` /
``text.name``, the data-set fingerprint differs from the pretrained one (and per seed), and
random-weight latents can never be cached, or stored, under the pretrained encoder's name; the
encoder's ``info.name`` (written into the stores' column metadata) is the same name.
"""
from __future__ import annotations

from functools import partial

from mmsearch.encoders.base import ENCODERS
from mmsearch.encoders.efficientnet_lite0 import EfficientNetLite0Encoder
from mmsearch.encoders.minilm import MiniLMEncoder

# Registered seeds (each adds an encoder the registry's generic tests build); the classes take any
# ``random_weights_seed``, a new registered seed is one more entry here.
RANDOM_WEIGHT_SEEDS: tuple[int, ...] = (0,)
RANDOM_VARIANTS = {"efficientnet_lite0": EfficientNetLite0Encoder, "minilm": MiniLMEncoder}


def random_weights_name(pretrained: str, seed: int) -> str:
    """Registry name of ``pretrained``'s network at random weights drawn with ``seed``."""
    if pretrained not in RANDOM_VARIANTS or seed not in RANDOM_WEIGHT_SEEDS:
        raise ValueError(f"no random-weight variant of {pretrained!r} with seed {seed}; "
                         f"encoders {sorted(RANDOM_VARIANTS)}, seeds {list(RANDOM_WEIGHT_SEEDS)}")
    return f"{pretrained}_random{seed}"


def _build(cls, seed: int, **kwargs):
    return cls(random_weights_seed=seed, **kwargs)


for _base, _cls in RANDOM_VARIANTS.items():
    for _seed in RANDOM_WEIGHT_SEEDS:
        ENCODERS.add(random_weights_name(_base, _seed), partial(_build, _cls, _seed))

__all__ = ["RANDOM_VARIANTS", "RANDOM_WEIGHT_SEEDS", "random_weights_name"]
