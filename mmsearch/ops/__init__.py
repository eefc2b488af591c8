"""Candidate operations of the MMnas search space (SA, GA, RSA, FFN), the fusion blocks (text-to-region
attention, co-attention, joint attention, early summation; :mod:`mmsearch.ops.fusion`), stream
bookkeeping, their front ends and geometry.

Plain ``nn.Module``s; the registry :data:`OPS` maps canonical names (``self_att``, ``guided_att``,
``rel_self_att``, ``feed_forward``) and MMnas's ``*_64`` aliases to op classes.
"""
from mmsearch.ops.attention import MultiHeadAttention, attend, key_padding_bias, mask_value
from mmsearch.ops.dropout import Dropout, cpu_dropout
from mmsearch.ops.base import LAYER_NORMS, OPS, MMnasLayerNorm, ResidualOp, build_op, canonical_op_name, make_layer_norm
from mmsearch.ops.blocks import FeedForward, GuidedAttention, RelationSelfAttention, SelfAttention
from mmsearch.ops.embed import RegionEmbedding, RelationEmbedding, TextStateProjection, TokenLSTMEmbedding
from mmsearch.ops.fusion import (
    PAIR_OPS,
    CoAttention,
    EarlySummation,
    JointRelationSelfAttention,
    TextToRegionAttention,
    build_pair_op,
    self_attention_weights,
)
from mmsearch.ops.geometry import box_relation_geometry, normalized_box_features
from mmsearch.ops.padding import pad_length, used_length
from mmsearch.ops.streams import concat_streams, cross_modal_mass, masked_mean, split_streams

__all__ = [
    "LAYER_NORMS",
    "MMnasLayerNorm",
    "make_layer_norm",
    "OPS",
    "PAIR_OPS",
    "CoAttention",
    "EarlySummation",
    "JointRelationSelfAttention",
    "TextToRegionAttention",
    "build_pair_op",
    "self_attention_weights",
    "concat_streams",
    "cross_modal_mass",
    "masked_mean",
    "split_streams",
    "Dropout",
    "attend",
    "cpu_dropout",
    "FeedForward",
    "GuidedAttention",
    "MultiHeadAttention",
    "RegionEmbedding",
    "RelationEmbedding",
    "RelationSelfAttention",
    "ResidualOp",
    "SelfAttention",
    "TextStateProjection",
    "TokenLSTMEmbedding",
    "box_relation_geometry",
    "build_op",
    "canonical_op_name",
    "key_padding_bias",
    "mask_value",
    "normalized_box_features",
    "pad_length",
    "used_length",
]
