"""FuseMix components: adapters, latent mixup, symmetric InfoNCE / MIL-NCE (torch only)."""
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
