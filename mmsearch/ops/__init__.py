"""Candidate operations of the MMnas search space (SA, GA, RSA, FFN), their front ends and geometry.

Plain ``nn.Module``s; the registry :data:`OPS` maps canonical names (``self_att``, ``guided_att``,
``rel_self_att``, ``feed_forward``) and MMnas's ``*_64`` aliases to op classes.
"""
from mmsearch.ops.attention import MultiHeadAttention, attend, key_padding_bias, mask_value
from mmsearch.ops.dropout import Dropout, cpu_dropout
from mmsearch.ops.base import LAYER_NORMS, OPS, MMnasLayerNorm, ResidualOp, build_op, canonical_op_name, make_layer_norm
from mmsearch.ops.blocks import FeedForward, GuidedAttention, RelationSelfAttention, SelfAttention
from mmsearch.ops.embed import RegionEmbedding, RelationEmbedding, TextStateProjection, TokenLSTMEmbedding
from mmsearch.ops.geometry import box_relation_geometry, normalized_box_features
from mmsearch.ops.padding import pad_length, used_length

__all__ = [
    "LAYER_NORMS",
    "MMnasLayerNorm",
    "make_layer_norm",
    "OPS",
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
