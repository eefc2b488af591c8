"""Text to token ids: MiniLM WordPiece pieces, a compact vocabulary, and pretrained embedding rows.

Models that learn their own embeddings get *compact* ids: ``PAD = 0``, ``UNK = 1``, then the
WordPiece pieces seen in the training texts, most frequent first. The pieces are cut by MiniLM's
own (uncased) tokenizer, so position ``t`` of :func:`encode_ids` is the same piece as position
``t`` of ``MiniLMEncoder.encode(...).states`` (see ``mmsearch.encoders.minilm``), and each
compact id knows its MiniLM id: :func:`minilm_embedding_rows` gives the pretrained input
embedding of every compact id, to initialise a learned table (as MMnas initialises from GloVe).

:func:`simple_tokenize` is MMnas's word tokenizer (lower-case, strip punctuation, split), kept
for word-level uses such as answer strings.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from mmsearch.encoders.wordpiece import WordPieceTokenizer
from mmsearch.io import atomic_write_json

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
VOCAB_FORMAT = "mmsearch.vocabulary"
VOCAB_VERSION = 1
_SPECIAL_PIECES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_STRIP = re.compile(r"[.,'!?\"()*#:;]")


def simple_tokenize(text: str) -> list[str]:
    """MMnas's word tokenizer: lower-case, drop ``.,'!?"()*#:;``, split '-' and '/', split on spaces."""
    return _STRIP.sub("", text.lower()).replace("-", " ").replace("/", " ").split()


class Vocabulary:
    """Compact ids for the WordPiece pieces of a corpus: ``tokens[i]`` is the piece with id ``i``."""

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        counts: Sequence[int] | None = None,
        min_count: int = 1,
        tokenizer: WordPieceTokenizer | None = None,
    ) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(f"a vocabulary starts with {PAD_TOKEN!r}, {UNK_TOKEN!r}; got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            dupes = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"vocabulary has duplicate tokens: {dupes[:10]}")
        if counts is not None and len(counts) != len(tokens):
            raise ValueError(f"{len(counts)} counts for {len(tokens)} tokens")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.counts: tuple[int, ...] | None = tuple(int(c) for c in counts) if counts is not None else None
        self.min_count = int(min_count)
        self.tokenizer = tokenizer or WordPieceTokenizer()
        ids = []
        for token in self.tokens:
            index = self.tokenizer.token_to_id(token)
            if index is None:
                raise ValueError(f"token {token!r} is not a MiniLM WordPiece token")
            ids.append(index)
        # compact id -> MiniLM id, and the inverse as a dense lookup table (unknown -> UNK).
        self.minilm_ids = np.asarray(ids, dtype=np.int64)
        self._compact_of = np.full(self.tokenizer.vocab_size, UNK_ID, dtype=np.int64)
        self._compact_of[self.minilm_ids] = np.arange(len(self.tokens), dtype=np.int64)
        self._compact_of[self.tokenizer.pad_id] = UNK_ID  # a literal "[PAD]" in text is not padding

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, min_count={self.min_count})"

    def index(self, token: str) -> int:
        """Compact id of a WordPiece token (UNK when it is not in the vocabulary)."""
        index = self.tokenizer.token_to_id(token)
        return UNK_ID if index is None else int(self._compact_of[index])

    def compact_ids(self, minilm_ids: np.ndarray) -> np.ndarray:
        """Map MiniLM vocabulary ids to compact ids (vectorised)."""
        return self._compact_of[np.asarray(minilm_ids, dtype=np.int64)]

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        tokenizer: WordPieceTokenizer | None = None,
        chunk: int = 8192,
    ) -> "Vocabulary":
        """Pieces of ``texts`` seen at least ``min_count`` times, most frequent first (ties by text)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (PAD and UNK), got {max_size}")
        tokenizer = tokenizer or WordPieceTokenizer()
        counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
        batch: list[str] = []

        def flush() -> None:
            pieces = tokenizer.ids(batch)
            if pieces:
                flat = np.fromiter((i for ids in pieces for i in ids), dtype=np.int64)
                counts[:] += np.bincount(flat, minlength=counts.size)
            batch.clear()

        for text in texts:
            batch.append(text)
            if len(batch) >= chunk:
                flush()
        flush()
        for special in _SPECIAL_PIECES:
            index = tokenizer.token_to_id(special)
            if index is not None:
                counts[index] = 0
        kept = [(int(counts[i]), tokenizer.id_to_token(int(i))) for i in np.flatnonzero(counts >= min_count)]
        kept.sort(key=lambda item: (-item[0], item[1]))
        if max_size is not None:
            kept = kept[: max_size - 2]
        tokens = [PAD_TOKEN, UNK_TOKEN] + [token for _, token in kept]
        total_unk = int(counts.sum()) - sum(c for c, _ in kept)
        return cls(tokens, counts=[0, total_unk] + [c for c, _ in kept], min_count=min_count, tokenizer=tokenizer)

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "tokenizer": "all-MiniLM-L6-v2 WordPiece (uncased)",
            "min_count": self.min_count,
            "tokens": list(self.tokens),
            "counts": list(self.counts) if self.counts is not None else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON, atomically."""
        return atomic_write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(
        cls, data: object, origin: str = "vocabulary", tokenizer: WordPieceTokenizer | None = None
    ) -> "Vocabulary":
        """Rebuild from :meth:`to_json` output; ``origin`` names the source in errors."""
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"{origin} is not an mmsearch vocabulary (format {VOCAB_FORMAT!r} expected)")
        if data.get("version") != VOCAB_VERSION:
            raise ValueError(f"{origin}: unsupported vocabulary version {data.get('version')!r}")
        if not isinstance(data.get("tokens"), list):
            raise ValueError(f"{origin}: field 'tokens' must be a list")
        return cls(data["tokens"], counts=data.get("counts"), min_count=int(data.get("min_count", 1)), tokenizer=tokenizer)

    @classmethod
    def load(cls, path: str | Path, tokenizer: WordPieceTokenizer | None = None) -> "Vocabulary":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"vocabulary file {path} is not valid JSON: {exc}") from None
        return cls.from_json(data, str(path), tokenizer)


def encode_ids(
    texts: Sequence[str], vocab: Vocabulary, max_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact ids int64 [n, T] (PAD = 0) and padding mask bool [n, T] (True = padding).

    T is ``max_tokens`` (longer texts are cut) or, when ``None``, the longest text (at least 1).
    """
    pieces = vocab.tokenizer.ids(texts, max_tokens)
    width = max_tokens if max_tokens is not None else max([1, *(len(p) for p in pieces)])
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    flat = np.fromiter((i for p in pieces for i in p), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(pieces)), lengths)
    cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ids = np.zeros((len(pieces), width), dtype=np.int64)
    ids[rows, cols] = vocab.compact_ids(flat)
    ids_t = torch.from_numpy(ids)
    return ids_t, ids_t == PAD_ID


def minilm_embedding_rows(vocab: Vocabulary, embeddings: torch.Tensor | None = None) -> torch.Tensor:
    """Pretrained MiniLM input embedding for each compact id, float32 [len(vocab), 384].

    Row ``PAD_ID`` is zero; row ``UNK_ID`` is MiniLM's ``[UNK]`` embedding. ``embeddings`` is the
    MiniLM table (read from the bundled weights when not given).
    """
    if embeddings is None:
        from mmsearch.encoders.minilm import minilm_input_embeddings

        embeddings = minilm_input_embeddings()
    rows = embeddings[torch.from_numpy(vocab.minilm_ids)].clone().float()
    rows[PAD_ID] = 0.0
    return rows
