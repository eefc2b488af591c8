"""The network input stage shared by the supernet and derived networks.

Takes a :class:`~mmsearch.batch.MultimodalBatch`, checks it, trims trailing padding (work on
padding is skipped), and embeds both streams to ``[B, L, H]``. The box-geometry relation
embedding is computed on demand, once per forward pass, only when a relation op runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.net_config import NetConfig
from mmsearch.ops import RegionEmbedding, RelationEmbedding, TextStateProjection, TokenLSTMEmbedding, pad_length, used_length


@dataclass
class Streams:
    """Embedded, trimmed streams; ``*_length`` are the batch's full (untrimmed) lengths."""

    text: Tensor  # [B, T', H]
    text_mask: Tensor  # [B, T'] bool, True = padding
    regions: Tensor  # [B, N', H]
    region_mask: Tensor  # [B, N'] bool
    boxes: Tensor | None  # [B, N', 4] pixels, trimmed like the regions
    full_text_mask: Tensor  # [B, T] the batch's untrimmed masks
    full_region_mask: Tensor  # [B, N]

    def head_inputs(self, text: Tensor, regions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Chain outputs padded back to the batch's lengths (zeros at trimmed padding), with the
        full masks: ``(text, text_mask, regions, region_mask)`` as a head takes them."""
        return (
            pad_length(text, self.full_text_mask.shape[1]),
            self.full_text_mask,
            pad_length(regions, self.full_region_mask.shape[1]),
            self.full_region_mask,
        )


def _checked_mask(mask: Tensor | None, batch: int, length: int, what: str) -> Tensor:
    if mask is None:
        raise ValueError(f"the batch has no {what}")
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, length):
        raise ValueError(f"{what} must be bool [{batch}, {length}] (True = padding), got {mask.dtype} {tuple(mask.shape)}")
    return mask


def _check_finite(x: Tensor, what: str) -> None:
    # min/max propagate NaN and expose inf: one cheap reduction instead of an elementwise mask.
    if x.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):
        raise ValueError(f"{what} contains NaN or infinite values")


class FrontEnd(nn.Module):
    """Text and region embeddings (+ the relation embedding when the network can run RSA)."""

    def __init__(self, net: NetConfig, with_relation: bool, embedding_init: Tensor | None = None,
                 modality_norm: bool = False) -> None:
        super().__init__()
        self.text_input = net.text_input
        if net.text_input == "tokens":
            assert net.vocab_size is not None  # NetConfig validates this
            self.text_embed: nn.Module = TokenLSTMEmbedding(net.vocab_size, net.word_dim, net.hidden, embedding_init)
        else:
            if embedding_init is not None:
                raise ValueError("embedding_init applies to text_input='tokens' only")
            assert net.text_state_dim is not None
            self.text_embed = TextStateProjection(net.text_state_dim, net.hidden)
        self.region_embed = RegionEmbedding(net.region_dim, net.hidden, net.box_feature)
        self.relation_embed = RelationEmbedding(net.relation_dim) if with_relation else None
        # modality_norm: a LayerNorm per stream on its embeddings, as single-stream models do (UNITER,
        # VisualBERT) before text and regions share an attention. Without it the projected region
        # features are ~15x the LSTM's text states in norm (measured on the scenes at init), and a
        # block that mixes the streams first washes the text out of every token: five of the six
        # fusion patterns stayed at chance on ITM (bench/README.md). MMnas's networks, whose text
        # meets the regions only after the encoder, keep the reference's front end (off).
        self.text_norm = nn.LayerNorm(net.hidden, eps=1e-6) if modality_norm else nn.Identity()
        self.region_norm = nn.LayerNorm(net.hidden, eps=1e-6) if modality_norm else nn.Identity()

    def forward(self, batch: MultimodalBatch) -> Streams:
        feats = batch.region_feats
        if feats is None or feats.dim() != 3:
            raise ValueError("the batch needs region_feats [B, N, Dv]")
        b, n = feats.shape[:2]
        region_mask = batch.region_mask if batch.region_mask is not None else torch.zeros(b, n, dtype=torch.bool, device=feats.device)
        region_mask = _checked_mask(region_mask, b, n, "region_mask")
        text = batch.text_ids if self.text_input == "tokens" else batch.text_states
        if text is None:
            need = "text_ids" if self.text_input == "tokens" else "text_states"
            raise ValueError(f"text_input={self.text_input!r} needs batch.{need}")
        t = text.shape[1] if text.dim() >= 2 else -1
        text_mask = _checked_mask(batch.text_mask, b, t, "text_mask")
        _check_finite(feats, "region_feats")

        full_text_mask, full_region_mask = text_mask, region_mask
        t_used, n_used = used_length(text_mask, t), used_length(region_mask, n)
        text, text_mask = text[:, :t_used], text_mask[:, :t_used]
        feats, region_mask = feats[:, :n_used], region_mask[:, :n_used]
        boxes = batch.region_boxes
        if boxes is not None:
            if tuple(boxes.shape) != (b, n, 4):
                raise ValueError(f"region_boxes must be [{b}, {n}, 4] pixels, got {tuple(boxes.shape)}")
            _check_finite(boxes, "region_boxes")
            boxes = boxes[:, :n_used]
        if self.text_input == "states":
            _check_finite(text, "text_states")
        return Streams(
            text=self.text_norm(self.text_embed(text)),
            text_mask=text_mask,
            regions=self.region_norm(self.region_embed(feats, boxes, batch.image_size)),
            region_mask=region_mask,
            boxes=boxes,
            full_text_mask=full_text_mask,
            full_region_mask=full_region_mask,
        )

    def relation(self, streams: Streams) -> Tensor:
        """The shared relation embedding ``[B, N', N', relation_dim]`` of the (trimmed) boxes."""
        if self.relation_embed is None:
            raise RuntimeError("this network was built without relation ops")
        if streams.boxes is None:
            raise ValueError("rel_self_att needs the batch's region_boxes")
        return self.relation_embed(streams.boxes)

    @torch.no_grad()
    def load_shared(self, other: "FrontEnd") -> None:
        """Copy ``other``'s weights into the ones this front end has too (a supernet's front end may
        carry a relation embedding that a fixed network without relation ops lacks)."""
        own = self.state_dict()
        own.update({k: v for k, v in other.state_dict().items() if k in own})
        self.load_state_dict(own)
