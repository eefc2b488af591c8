"""mmsearch: one-shot multimodal architecture search (MMnas) and frozen-encoder alignment
(FuseMix), distributed with Ray.

Layers: components (``ops``, ``nas``, ``heads``, ``adapters``, ``metrics``) are plain
``torch.nn.Module``s and functions; ``data`` reads and writes data sets and latent stores;
``recipes`` are the workflows (``fn(config, context)``); ``orchestration`` is the only place
that imports Ray Tune / Train / Data.
"""
__version__ = "0.1.0"
