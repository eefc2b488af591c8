"""Records -> what the encoder stages and the store tables need (pure, no encoders, no Ray).

* :func:`load_splits` reads the source (embedded scenes or a real-format loader);
* :func:`build_vocabulary` / :func:`build_answers` build the vocabularies on the train split;
* :func:`image_inputs` lists a split's images as picklable descriptors (the pickled
  ``ImageRecord``: boxes and a ``render`` recipe or a file path -- never pixels);
* :func:`text_rows` gives a text table's metadata columns and its texts, in row order.
"""
from __future__ import annotations

import logging
import pickle
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.data.precompute.config import PrecomputeConfig, SourceConfig
from mmsearch.data.precompute.tables import ID_COLUMN
from mmsearch.data.records import DatasetSplit

log = logging.getLogger(__name__)


def load_splits(source: SourceConfig) -> dict[str, DatasetSplit]:
    """The records of every configured split, in ``source.splits`` order."""
    if source.real is not None:
        from mmsearch.data.loaders.source import load_real_split

        return {split: load_real_split(source.real, split) for split in source.splits}
    from mmsearch.data.scenes import build_scene_dataset

    everything = build_scene_dataset(source.scenes, log=log)  # progress lines: the records take a while too
    return {split: everything[split] for split in source.splits}


def all_texts(split: DatasetSplit) -> list[str]:
    """Every text of a split: questions, captions, hard negatives, referring expressions."""
    out = [q.question for q in split.vqa]
    for caption in split.captions:
        out.append(caption.caption)
        out.extend(caption.hard_negatives)
    out.extend(r.expression for r in split.refs)
    return out


def build_vocabulary(train: DatasetSplit, cfg: PrecomputeConfig):
    """Compact WordPiece vocabulary of the train texts (``mmsearch.data.text.Vocabulary``)."""
    from mmsearch.data.text import Vocabulary

    texts = all_texts(train)
    if not texts:
        raise ValueError(f"{train.name}: the train split has no texts to build a vocabulary from")
    return Vocabulary.build(texts, min_count=cfg.vocab.min_count)


def top_answer(answers: dict[str, float]) -> str | None:
    """The highest-scored answer (ties: alphabetical), i.e. what most annotators said."""
    if not answers:
        return None
    return min(answers.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def build_answers(train: DatasetSplit, cfg: PrecomputeConfig) -> list[str]:
    """Answers that are the top answer of at least ``vocab.answer_min_count`` train questions,
    most frequent first (ties alphabetical), at most ``vocab.max_answers`` (MMnas-style)."""
    counts = Counter(a for a in (top_answer(q.answers) for q in train.vqa) if a)
    kept = sorted(((n, a) for a, n in counts.items() if n >= cfg.vocab.answer_min_count), key=lambda x: (-x[0], x[1]))
    answers = [a for _, a in kept][: cfg.vocab.max_answers]
    if train.vqa and not answers:
        raise ValueError(f"{train.name}: no answer is frequent enough (vocab.answer_min_count={cfg.vocab.answer_min_count})")
    return answers


@dataclass(frozen=True)
class ImageInputs:
    image_ids: list[str]
    records: list[bytes]  # pickled ImageRecord, one per image, same order


def image_inputs(split: DatasetSplit) -> ImageInputs:
    ids = list(split.images)
    return ImageInputs(ids, [pickle.dumps(split.images[i], protocol=pickle.HIGHEST_PROTOCOL) for i in ids])


@dataclass(frozen=True)
class TextRows:
    """One text table of one split: metadata columns (row order) and the texts to encode."""

    table: str
    texts: list[str]
    columns: dict[str, Any]  # column -> list / array, one entry per row

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> dict[str, Any]:
        """Metadata columns of ``rows`` (a batch of stage outputs comes back by row index)."""
        out = {}
        for name, values in self.columns.items():
            if isinstance(values, np.ndarray):
                out[name] = values[rows]
            else:
                out[name] = [values[int(i)] for i in rows]
        return out


def _check_texts(table: str, ids: list[str], texts: list[str], where: str) -> None:
    for row_id, text in zip(ids, texts):
        if not text or not text.strip():
            raise ValueError(f"{where}: table {table!r}, {ID_COLUMN[table]} {row_id!r} has an empty text")


def text_rows(split: DatasetSplit, table: str, answers: dict[str, int] | None = None) -> TextRows:
    """Metadata columns and texts of ``table`` (vqa, captions, negatives or refs) for ``split``.

    ``answers`` maps answer string -> index; a question's answers outside it are dropped (the
    question then has no target: unanswerable within the vocabulary, as in VQA practice).
    """
    where = f"{split.name}/{split.split}"
    if table == "vqa":
        answers = answers or {}
        ids, scores = [], []
        for q in split.vqa:
            known = sorted((answers[a], s) for a, s in q.answers.items() if a in answers)
            ids.append(np.asarray([i for i, _ in known], dtype=np.int32))
            scores.append(np.asarray([s for _, s in known], dtype=np.float32))
        columns = {
            "question_id": [q.question_id for q in split.vqa],
            "image_id": [q.image_id for q in split.vqa],
            "question": [q.question for q in split.vqa],
            "answer_ids": ids,
            "answer_scores": scores,
            "answer_type": [q.answer_type for q in split.vqa],
            "family": [q.family for q in split.vqa],
            "referent_boxes": [np.asarray(q.referent_boxes, dtype=np.float32).reshape(-1, 4) for q in split.vqa],
        }
        texts = columns["question"]
    elif table == "captions":
        columns = {
            "caption_id": [c.caption_id for c in split.captions],
            "image_id": [c.image_id for c in split.captions],
            "caption": [c.caption for c in split.captions],
            "num_negatives": np.asarray([len(c.hard_negatives) for c in split.captions], dtype=np.int32),
        }
        texts = columns["caption"]
    elif table == "negatives":
        owners = [(c.caption_id, rank, text) for c in split.captions for rank, text in enumerate(c.hard_negatives)]
        columns = {
            "caption_id": [o[0] for o in owners],
            "rank": np.asarray([o[1] for o in owners], dtype=np.int32),
            "text": [o[2] for o in owners],
        }
        texts = columns["text"]
    elif table == "refs":
        columns = {
            "ref_id": [r.ref_id for r in split.refs],
            "image_id": [r.image_id for r in split.refs],
            "expression": [r.expression for r in split.refs],
            "target_box": np.asarray([r.target_box for r in split.refs], dtype=np.float32).reshape(-1, 4),
            "family": [r.family for r in split.refs],
        }
        texts = columns["expression"]
    else:
        raise KeyError(f"{table!r} is not a text table")
    _check_texts(table, columns[ID_COLUMN[table]], texts, where)
    return TextRows(table, list(texts), columns)


__all__ = [
    "ImageInputs",
    "TextRows",
    "all_texts",
    "build_answers",
    "build_vocabulary",
    "image_inputs",
    "load_splits",
    "text_rows",
    "top_answer",
]
