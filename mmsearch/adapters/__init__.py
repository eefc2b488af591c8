"""FuseMix components (torch only): adapters, latent mixup, symmetric InfoNCE / MIL-NCE.

Design notes (the recipe is ``mmsearch.recipes.fusemix``):

* Adapters (:mod:`.mlp`): pre-LN residual MLP blocks, final LayerNorm, Linear to the shared
  space; per-side depth / width factor / dropout; reference size = 76.3M + 34.1M parameters.
* Temperature (:mod:`.model`): a learned scalar that divides the cosine logits, clamped in place
  to [0.001, 0.5] before each training forward, never weight-decayed (as the reference).
* Mixup (:mod:`.mixup`): one lambda ~ Beta(alpha, alpha) per batch, shared by both sides. The
  default pairs rows by a random permutation, so the contrastive batch is B with or without
  mixup (alpha = 0 vs alpha > 0 compares mixing alone) and every input pair is a main component
  each step; ``mode="halves"`` is the reference (B/2 mixed pairs, half the adapter compute).
* Loss (:mod:`.loss`): logits computed once for both directions; chunked rows with a custom
  backward keep memory O(chunk x B) for batches of tens of thousands; optional MIL-NCE
  positives from group ids (several captions per image).
"""
from mmsearch.adapters.loss import auto_chunk_size, contrastive_loss
from mmsearch.adapters.mixup import MIXUP_MODES, MixedPairs, MixupMode, mix_latent_pairs, sample_mixup_lambda
from mmsearch.adapters.mlp import Adapter, AdapterConfig, ResidualMLPBlock
from mmsearch.adapters.model import FuseMixModel, FuseMixModelConfig, param_groups

__all__ = [
    "Adapter",
    "AdapterConfig",
    "FuseMixModel",
    "FuseMixModelConfig",
    "MIXUP_MODES",
    "MixedPairs",
    "MixupMode",
    "ResidualMLPBlock",
    "auto_chunk_size",
    "contrastive_loss",
    "mix_latent_pairs",
    "param_groups",
    "sample_mixup_lambda",
]
