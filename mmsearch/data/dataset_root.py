"""The on-disk layout of a precomputed data set, and its card (``dataset.json``).

A precomputed data set is a root (local directory or ``s3://bucket/prefix``) holding::

    <root>/dataset.json     the card: source, encoders and dims, vocabulary / answer counts,
                            splits and row counts, throughput, version -- written LAST
    <root>/vocab.json       compact WordPiece vocabulary (train texts; ``mmsearch.data.text``)
    <root>/answers.json     VQA answer vocabulary (train answers; index = class id)
    <root>/<split>/         one latent store per split (``mmsearch.data.store``), tables as
                            documented in ``mmsearch.data.precompute.tables``

The card is the commit point of the whole data set: a root without one is incomplete (an
interrupted precompute) and is rebuilt; a root with one is complete and is reused as a cache
when its ``fingerprint`` (a hash of everything that determines the data) matches.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from mmsearch import storage

CARD_NAME = "dataset.json"
VOCAB_NAME = "vocab.json"
ANSWERS_NAME = "answers.json"
CARD_FORMAT = "mmsearch.dataset"
CARD_VERSION = 1
ANSWERS_FORMAT = "mmsearch.answer_vocab"  # same file format as mmsearch.data.loaders.save_answer_vocab
CACHE_ENV = "MMSEARCH_CACHE"


class DatasetError(ValueError):
    """A precomputed data set is missing, incomplete, or not what the caller expects."""


@dataclass(frozen=True)
class DatasetCard:
    """What ``dataset.json`` records (all JSON-serialisable)."""

    name: str  # data set name ("scenes", "vqa_v2", ...)
    fingerprint: str  # hash of the data-determining config (see precompute.config.fingerprint)
    source: dict[str, Any]  # the source config section
    encoders: dict[str, Any]  # {"image": {name, dim, crop_size, ...}, "text": {name, dim, states, max_tokens}}
    dtype: str  # latent dtype in the stores ("float16" / "float32")
    tables: tuple[str, ...]  # tables every split store holds
    splits: dict[str, dict[str, int]]  # split -> table -> rows
    vocab_size: int  # compact token vocabulary incl. PAD and UNK (0 when not built)
    num_answers: int  # VQA answer vocabulary (0 when the data set has no VQA)
    max_regions: int  # largest region count of any image
    max_tokens: int  # largest token count of any text
    throughput: dict[str, Any] = field(default_factory=dict)  # seconds, rows/s, backend, load
    config: dict[str, Any] = field(default_factory=dict)  # the full resolved PrecomputeConfig
    mmsearch_version: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def region_dim(self) -> int:
        return int(self.encoders.get("image", {}).get("dim", 0))

    @property
    def text_state_dim(self) -> int:
        text = self.encoders.get("text", {})
        return int(text.get("dim", 0)) if text.get("states") else 0

    @property
    def sentence_dim(self) -> int:
        return int(self.encoders.get("text", {}).get("dim", 0))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tables"] = list(self.tables)
        return {"format": CARD_FORMAT, "version": CARD_VERSION, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], origin: str) -> "DatasetCard":
        if not isinstance(data, Mapping) or data.get("format") != CARD_FORMAT:
            raise DatasetError(f"{origin}: not an mmsearch data set card (format {CARD_FORMAT!r} expected)")
        if data.get("version") != CARD_VERSION:
            raise DatasetError(f"{origin}: card version {data.get('version')!r} is not supported (this code reads {CARD_VERSION})")
        fields = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            fields["tables"] = tuple(fields["tables"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{origin}: malformed card ({exc})") from None


class DatasetRoot:
    """Paths and small files of one precomputed data set root (local or S3)."""

    def __init__(self, uri: str | os.PathLike[str] | storage.StorageLocation) -> None:
        if not isinstance(uri, storage.StorageLocation) and not os.fspath(uri):
            raise DatasetError("no data set root given (empty path)")
        self.location = storage.resolve_storage(uri)

    @property
    def uri(self) -> str:
        return self.location.uri

    def split_uri(self, split: str) -> str:
        """URI of the latent store of ``split`` (what ``open_store`` and FuseMix's ``data.store`` take)."""
        return self.location.child(split).uri

    def split_location(self, split: str) -> storage.StorageLocation:
        """The latent store of ``split`` (what ``open_store`` takes; keeps the root's endpoint)."""
        return self.location.child(split)

    # -- the card -------------------------------------------------------------------------------

    def has_card(self) -> bool:
        return storage.is_file(self.location.child(CARD_NAME))

    def read_card(self) -> DatasetCard:
        """The card, or a :class:`DatasetError` saying why there is none."""
        if not self.has_card():
            if not storage.exists(self.location):
                raise DatasetError(f"{self.uri}: no precomputed data set here (the root does not exist); run jobs/precompute_latents.py")
            raise DatasetError(
                f"{self.uri}: {CARD_NAME} not found -- an incomplete data set (the card is written last); "
                "run the precompute job again to rebuild it"
            )
        return DatasetCard.from_json(self._read_json(CARD_NAME), self.location.child(CARD_NAME).uri)

    def write_card(self, card: DatasetCard) -> None:
        """Publish the card (atomically): from here on the data set is complete."""
        self._write_json(CARD_NAME, card.to_json())

    def remove_card(self) -> None:
        """Mark the data set incomplete (before rebuilding it in place)."""
        storage.delete_files([self.location.child(CARD_NAME)])

    # -- vocabularies ---------------------------------------------------------------------------

    def write_vocab(self, vocab_json: Mapping[str, Any]) -> None:
        self._write_json(VOCAB_NAME, dict(vocab_json))

    def read_vocab(self):
        """The compact token vocabulary (``mmsearch.data.text.Vocabulary``)."""
        from mmsearch.data.text import VOCAB_FORMAT, Vocabulary

        data = self._read_json(VOCAB_NAME)
        origin = self.location.child(VOCAB_NAME).uri
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT or not isinstance(data.get("tokens"), list):
            raise DatasetError(f"{origin}: not an mmsearch vocabulary")
        return Vocabulary(data["tokens"], counts=data.get("counts"), min_count=int(data.get("min_count", 1)))

    def write_answers(self, answers: list[str]) -> None:
        if len(set(answers)) != len(answers):
            raise DatasetError("answer vocabulary has duplicates")
        self._write_json(ANSWERS_NAME, {"format": ANSWERS_FORMAT, "version": 1, "answers": list(answers)})

    def read_answers(self) -> list[str]:
        data = self._read_json(ANSWERS_NAME)
        if not isinstance(data, dict) or data.get("format") != ANSWERS_FORMAT or not isinstance(data.get("answers"), list):
            raise DatasetError(f"{self.location.child(ANSWERS_NAME).uri}: not an mmsearch answer vocabulary")
        return [str(a) for a in data["answers"]]

    @contextlib.contextmanager
    def build_lock(self) -> Iterator[None]:
        """Exclusive while held: two processes building the same local root take turns (the
        second then finds the card and reuses the data set). S3 roots are not locked."""
        if self.location.is_s3:
            yield
            return
        import fcntl

        path = Path(self.location.fs_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f".{path.name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- helpers --------------------------------------------------------------------------------

    def _read_json(self, name: str) -> Any:
        file = self.location.child(name)
        raw = storage.read_bytes(file, missing_ok=True)
        if raw is None:
            raise DatasetError(f"{file.uri}: file not found")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{file.uri}: not valid JSON ({exc})") from None

    def _write_json(self, name: str, data: Any) -> None:
        storage.check_bucket(self.location)
        payload = (json.dumps(data, indent=1) + "\n").encode()
        storage.write_bytes(self.location.child(name), payload)


def cache_root(name: str, fingerprint: str) -> str:
    """Default root of a data set built on first use: ``$MMSEARCH_CACHE`` (or ``~/.cache/mmsearch``)
    ``/<name>-<fingerprint>``."""
    base = os.environ.get(CACHE_ENV) or str(Path("~/.cache/mmsearch").expanduser())
    return f"{base.rstrip('/')}/{name}-{fingerprint}"


__all__ = [
    "ANSWERS_NAME",
    "CACHE_ENV",
    "CARD_NAME",
    "DatasetCard",
    "DatasetError",
    "DatasetRoot",
    "VOCAB_NAME",
    "cache_root",
]
