"""Build a precomputed data set: records -> frozen encoders -> one latent store per split + card.

    from mmsearch.config import load_config
    from mmsearch.data.precompute import precompute
    from mmsearch.data.precompute.config import PrecomputeConfig

    result = precompute(load_config(PrecomputeConfig, "configs/data/scenes.yaml", ["output=stores/scenes"]))

Order of work: read the records of every split; build the token vocabulary and the VQA answer
list on the train split and write them; open one store writer per split; run the image stage
over the images of all splits and the text stage over the texts of all splits (through a
:class:`~mmsearch.data.precompute.runner.StageRunner`: this process, or Ray Data actor pools),
writing rows as batches come back (memory: one row group per table and split, plus the
whole-image latents needed for the ``pairs`` table); commit the stores; write the card last.

Idempotent: a root whose card carries the same fingerprint is reused as is (nothing runs);
a root without a card (an interrupted run) is rebuilt; a root with a card of another
fingerprint is an error unless ``overwrite=True``. Two processes asking for the same local
root take turns (a file lock beside it), so the second one reuses what the first built.
Table layouts: ``precompute.tables``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import mmsearch
from mmsearch.config import config_to_dict
from mmsearch.data.dataset_root import DatasetCard, DatasetError, DatasetRoot, cache_root
from mmsearch.data.precompute.config import PrecomputeConfig, fingerprint, storage_key
from mmsearch.data.precompute.records import build_answers, build_vocabulary, image_inputs, load_splits, text_rows
from mmsearch.data.precompute.runner import LocalRunner, StageRunner, StageSpec, concat_inputs
from mmsearch.data.precompute.tables import IMAGE_TABLES, TEXT_TABLES, available_tables, table_columns
from mmsearch.data.records import DatasetSplit
from mmsearch.data.store import StoreWriter

log = logging.getLogger(__name__)
BUA_ENCODER = "bottom-up-attention"  # encoder name recorded for region features copied from .npz files
DEFAULT_IMAGE_SIZE = 224


@dataclass(frozen=True)
class PrecomputeResult:
    root: str  # URI of the data set root
    card: DatasetCard
    built: bool  # False when a complete data set with the same fingerprint was reused


def dataset_root_of(cfg: PrecomputeConfig) -> DatasetRoot:
    """``cfg.output``, or the cache root named after the data set, its fingerprint and a non-default layout."""
    return DatasetRoot(cfg.output or cache_root(cfg.name, storage_key(cfg)))


def precompute(
    cfg: PrecomputeConfig,
    runner: StageRunner | None = None,
    *,
    overwrite: bool = False,
) -> PrecomputeResult:
    """Build (or reuse) the data set ``cfg`` describes; see the module docstring."""
    fp = fingerprint(cfg)
    root = dataset_root_of(cfg)
    with root.build_lock():
        if root.has_card():
            card = root.read_card()
            if card.fingerprint == fp and not overwrite:
                log.info("%s: complete data set with the same fingerprint (%s); nothing to do", root.uri, fp)
                return PrecomputeResult(root.uri, card, built=False)
            if not overwrite:
                raise other_dataset_error(root, card, fp)
            root.remove_card()
        runner = runner or LocalRunner(cfg.local_batch, 8 * cfg.local_batch)
        card = _Build(cfg, root, runner, fp).run()
    return PrecomputeResult(root.uri, card, built=True)


def other_dataset_error(root: DatasetRoot, card: DatasetCard, fp: str) -> DatasetError:
    """A root that holds a data set built from another config is never replaced unasked."""
    return DatasetError(
        f"{root.uri} already holds a different data set ({card.name!r}, fingerprint {card.fingerprint}; this "
        f"config's is {fp}): choose another --output, or pass --overwrite to rebuild it "
        "(overwrite=True from Python)"
    )


def image_size_of(cfg: PrecomputeConfig) -> int:
    """Whole-image latent resolution: the configured one, the scenes' own size, or 224."""
    if cfg.image.image_size is not None:
        return cfg.image.image_size
    return cfg.source.scenes.image_size if cfg.source.real is None else DEFAULT_IMAGE_SIZE


def resolve_tables(cfg: PrecomputeConfig, splits: dict[str, DatasetSplit]) -> tuple[str, ...]:
    available = available_tables(splits["train"])
    if cfg.tables is None:
        return available
    missing = [t for t in cfg.tables if t not in available]
    if missing:
        raise DatasetError(f"{cfg.name}: the source has no records for table(s) {missing}; it can fill {list(available)}")
    return tuple(t for t in available if t in cfg.tables)  # canonical order


def _take(batch: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {k: (v[rows] if isinstance(v, np.ndarray) else [v[int(i)] for i in rows]) for k, v in batch.items()}


def _groups(codes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(code, positions) for each distinct code, in order of first appearance."""
    return [(int(c), np.flatnonzero(codes == c)) for c in dict.fromkeys(codes.tolist())]


class _Build:
    """One build of a data set root (state shared by the steps of :func:`precompute`)."""

    def __init__(self, cfg: PrecomputeConfig, root: DatasetRoot, runner: StageRunner, fp: str) -> None:
        self.cfg, self.root, self.runner, self.fp = cfg, root, runner, fp
        self.region_dim: int | None = None
        self.text_dim: int | None = None
        self.max_regions = self.max_tokens = 0
        self.counts = {"images": 0, "regions": 0, "texts": 0, "encoded_texts": 0}  # encoded: through the text encoder
        self.seconds: dict[str, float] = {}
        self.declared: set[str] = set()

    # -- the steps --------------------------------------------------------------------------------

    def run(self) -> DatasetCard:
        started, load_before = time.perf_counter(), _load_average()
        self.splits = load_splits(self.cfg.source)
        for name, split in self.splits.items():
            if not split.images:
                raise DatasetError(f"{self.cfg.name}: split {name!r} has no images (empty split)")
        self.tables = resolve_tables(self.cfg, self.splits)
        train = self.splits["train"]
        self.vocab = build_vocabulary(train, self.cfg)
        self.answers = build_answers(train, self.cfg) if "vqa" in self.tables else []
        self.needs_encoder = any(r.region_file is None for s in self.splits.values() for r in s.images.values())
        self.image_encoder = self.cfg.image.name if self.needs_encoder else BUA_ENCODER
        self.root.write_vocab(self.vocab.to_json())
        self.root.write_answers(self.answers)
        self.seconds["records"] = time.perf_counter() - started
        log.info("%s: %s records read in %.1f s; vocabulary %d, answers %d; tables %s", self.cfg.name,
                 {s: len(p.images) for s, p in self.splits.items()}, self.seconds["records"], len(self.vocab), len(self.answers), list(self.tables))

        with contextlib.ExitStack() as stack:
            self.writers = {
                split: stack.enter_context(
                    StoreWriter(self.root.split_location(split), dataset=self.cfg.name, split=split, overwrite=True,
                                row_group_bytes=self.cfg.layout.row_group_kib * 1024,
                                row_groups_per_shard=self.cfg.layout.row_groups_per_shard,
                                attrs={"fingerprint": self.fp, "tables": list(self.tables)})
                )
                for split in self.splits
            }
            self.latents: dict[str, np.ndarray] = {}
            self._encode_images()
            self._encode_texts()
            self._declare(self.tables)  # tables no batch reached (empty in every split) still exist
        # every writer committed its manifest on leaving the block (or all aborted on an error)
        self.seconds["total"] = time.perf_counter() - started
        card = self._card(load_before)
        self.root.write_card(card)
        log.info("%s: data set written to %s in %.1f s", self.cfg.name, self.root.uri, self.seconds["total"])
        return card

    def _declare(self, tables: tuple[str, ...]) -> None:
        for table in tables:
            if table in self.declared or table not in self.tables:
                continue
            columns = table_columns(
                table,
                region_dim=self.region_dim or 1,
                text_dim=self.text_dim or 1,
                dtype=self.cfg.dtype,
                states=self.cfg.text.states,
                image_encoder=self.image_encoder,
                text_encoder=self.cfg.text.name,
            )
            for writer in self.writers.values():
                writer.add_table(table, columns)
            self.declared.add(table)

    def _encode_images(self) -> None:
        wanted = [t for t in ("regions", "images") if t in self.tables]
        if not wanted and "pairs" not in self.tables:
            return
        names = list(self.splits)
        parts, split_code, row_of = [], [], []
        self.image_ids: dict[str, list[str]] = {}
        offset = 0
        for code, name in enumerate(names):
            found = image_inputs(self.splits[name])
            n = len(found.image_ids)
            self.image_ids[name] = found.image_ids
            parts.append({"index": np.arange(offset, offset + n, dtype=np.int64), "record": found.records})
            split_code.append(np.full(n, code, np.int64))
            row_of.append(np.arange(n, dtype=np.int64))
            offset += n
        split_code, row_of = np.concatenate(split_code), np.concatenate(row_of)
        spec = StageSpec("image", {
            "encoder": self.cfg.image.name,
            "crop_size": self.cfg.image.crop_size,
            "crop_context": self.cfg.image.crop_context,
            "image_size": image_size_of(self.cfg),
            "grid": self.cfg.image.grid,
            "batch_size": self.cfg.image.batch_size,
            "dtype": self.cfg.dtype,
            "device": "auto",
            "needs_encoder": self.needs_encoder,
            "regions": "regions" in self.tables,
        })
        started = time.perf_counter()
        for out in self.runner.run(spec, concat_inputs(parts)):
            if self.region_dim is None:
                self.region_dim = int(out["image"].shape[1])
                self._declare(IMAGE_TABLES)
            self._check_dim(out["image"].shape[1])
            for code, at in _groups(split_code[out["index"]]):
                self._write_images(names[code], row_of[out["index"][at]], _take(out, at))
        self.seconds["images"] = time.perf_counter() - started

    def _check_dim(self, dim: int) -> None:
        if dim != self.region_dim:
            raise DatasetError(f"{self.cfg.name}: region features of width {dim} and {self.region_dim} in one data set")

    def _write_images(self, split: str, rows: np.ndarray, out: dict[str, Any]) -> None:
        ids = [self.image_ids[split][r] for r in rows]
        counts = [len(f) for f in out["features"]]
        self.counts["images"] += len(ids)
        self.counts["regions"] += sum(counts)
        self.max_regions = max([self.max_regions, *counts])
        sizes = {"image_id": ids, "image_h": out["image_h"], "image_w": out["image_w"]}
        if "regions" in self.tables:
            self.writers[split].write_batch("regions", {**sizes, "features": out["features"], "boxes": out["boxes"]})
        if "images" in self.tables:
            self.writers[split].write_batch("images", {**sizes, "image": out["image"]})
        if "pairs" in self.tables:
            if split not in self.latents:
                self.latents[split] = np.zeros((len(self.image_ids[split]), out["image"].shape[1]), out["image"].dtype)
            self.latents[split][rows] = out["image"]

    def _encode_texts(self) -> None:
        jobs = [t for t in TEXT_TABLES if t in self.tables or (t == "captions" and "pairs" in self.tables)]
        if not jobs:
            return
        answer_index = {a: i for i, a in enumerate(self.answers)}
        keys: list[tuple[str, str]] = []
        self.rows = {}
        parts, key_code, row_of = [], [], []
        offset = 0
        for split_name, split in self.splits.items():
            for table in jobs:
                rows = text_rows(split, table, answer_index)
                if not len(rows):
                    continue
                self.rows[(split_name, table)] = rows
                n = len(rows)
                parts.append({
                    "index": np.arange(offset, offset + n, dtype=np.int64),
                    "text": rows.texts,
                    "sentence": np.full(n, table == "captions"),
                })
                key_code.append(np.full(n, len(keys), np.int64))
                row_of.append(np.arange(n, dtype=np.int64))
                keys.append((split_name, table))
                offset += n
        if not parts:
            return
        key_code, row_of = np.concatenate(key_code), np.concatenate(row_of)
        spec = StageSpec("text", {
            "vocab_tokens": list(self.vocab.tokens),
            "encoder": self.cfg.text.name,
            "states": self.cfg.text.states,
            "sentence": "captions" in jobs,
            "max_tokens": self.cfg.text.max_tokens,
            "batch_size": self.cfg.text.batch_size,
            "dtype": self.cfg.dtype,
            "device": "auto",
        })
        started = time.perf_counter()
        for out in self.runner.run(spec, concat_inputs(parts)):
            if "sentence" in out and self.text_dim is None:
                self.text_dim = int(out["sentence"].shape[1])
            if "states" in out and self.text_dim is None:
                self.text_dim = int(out["states"][0].shape[1])
            self._declare(TEXT_TABLES + ("pairs",))
            for code, at in _groups(key_code[out["index"]]):
                split, table = keys[code]
                self._write_texts(split, table, row_of[out["index"][at]], _take(out, at))
        self.seconds["texts"] = time.perf_counter() - started

    def _write_texts(self, split: str, table: str, rows: np.ndarray, out: dict[str, Any]) -> None:
        meta = self.rows[(split, table)].take(rows)
        self.counts["texts"] += len(rows)
        if self.cfg.text.states or table == "captions":
            self.counts["encoded_texts"] += len(rows)
        self.max_tokens = max(self.max_tokens, *(len(t) for t in out["token_ids"]))
        columns = {**meta, "token_ids": out["token_ids"]}
        if self.cfg.text.states:
            columns["states"] = out["states"]
        if table == "captions":
            columns["sentence"] = out["sentence"]
        if table in self.tables:
            self.writers[split].write_batch(table, columns)
        if table == "captions" and "pairs" in self.tables:
            index = {image_id: r for r, image_id in enumerate(self.image_ids[split])}
            missing = [i for i in meta["image_id"] if i not in index]
            if missing:
                raise DatasetError(f"{self.cfg.name}/{split}: captions of unknown images {missing[:5]}")
            image_rows = np.asarray([index[i] for i in meta["image_id"]], dtype=np.int64)
            self.writers[split].write_batch("pairs", {
                "image_id": meta["image_id"],
                "caption_id": meta["caption_id"],
                "image": self.latents[split][image_rows],
                "text": out["sentence"],
            })

    # -- the card ---------------------------------------------------------------------------------

    def _card(self, load_before: float | None) -> DatasetCard:
        image: dict[str, Any] = {"name": self.image_encoder, "dim": self.region_dim or 0}
        if self.needs_encoder:
            image.update(crop_size=self.cfg.image.crop_size, crop_context=self.cfg.image.crop_context,
                         image_size=image_size_of(self.cfg), grid=self.cfg.image.grid)
        else:
            image["image_latent"] = "mean of the region features"
        text = {"name": self.cfg.text.name, "dim": self.text_dim or 0, "states": self.cfg.text.states,
                "max_tokens": self.cfg.text.max_tokens}
        seconds = {k: round(v, 3) for k, v in self.seconds.items()}
        rates = {
            "images_per_s": self.counts["images"] / max(self.seconds.get("images", 0.0), 1e-9),
            "regions_per_s": self.counts["regions"] / max(self.seconds.get("images", 0.0), 1e-9),
            "texts_per_s": self.counts["texts"] / max(self.seconds.get("texts", 0.0), 1e-9),
            "encoded_texts_per_s": self.counts["encoded_texts"] / max(self.seconds.get("texts", 0.0), 1e-9),
        }
        throughput = {
            **self.runner.describe(),
            "seconds": seconds,
            **self.counts,
            **{k: round(v, 1) for k, v in rates.items()},
            "cpu_count": os.cpu_count(),
            "load_average_1m": [load_before, _load_average()],
        }
        log.info("throughput: %d images, %d regions (%.0f regions/s), %d texts (%.0f texts/s; %d through the text encoder), %.1f s in all",
                 self.counts["images"], self.counts["regions"], rates["regions_per_s"], self.counts["texts"],
                 rates["texts_per_s"], self.counts["encoded_texts"], self.seconds["total"])
        return DatasetCard(
            name=self.cfg.name,
            fingerprint=self.fp,
            source=config_to_dict(self.cfg.source.real) if self.cfg.source.real is not None
            else {"scenes": config_to_dict(self.cfg.source.scenes)},
            encoders={"image": image, "text": text},
            dtype=self.cfg.dtype,
            tables=self.tables,
            splits={split: dict(w.manifest.num_rows) for split, w in self.writers.items()},
            vocab_size=len(self.vocab),
            num_answers=len(self.answers),
            max_regions=self.max_regions,
            max_tokens=self.max_tokens,
            throughput=throughput,
            config=config_to_dict(self.cfg),
            mmsearch_version=mmsearch.__version__,
        )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


__all__ = ["BUA_ENCODER", "PrecomputeResult", "dataset_root_of", "image_size_of", "precompute", "resolve_tables"]
