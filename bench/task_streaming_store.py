"""The benchmark's VQA-shaped data set (``bench_task_streaming.py``): one ``train`` split of
``images`` images, ``--regions`` x ``--dim``-d float16 region features each and
``--questions-per-image`` question rows (token ids, answers; with ``--text-input states`` also
``TOKENS`` x ``TEXT_DIM`` float16 per-token states, as MiniLM states are stored)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

MiB = 2**20
WORDS = ["what", "color", "is", "the", "cube", "sphere", "left", "of", "how", "many", "red", "blue"]
ANSWERS = ["yes", "no", "red", "blue", "green", "one", "two", "three"]
TOKENS = 10  # tokens per question
TEXT_DIM = 384


def write_dataset(root: Path, images: int, args: argparse.Namespace) -> dict:
    """A one-split (train) VQA data set at ``root``; returns its sizes and layout."""
    from mmsearch.data.dataset_root import DatasetCard, DatasetRoot
    from mmsearch.data.precompute.tables import table_columns
    from mmsearch.data.store import StoreWriter
    from mmsearch.data.text import Vocabulary

    rng = np.random.default_rng(0)
    vocab = Vocabulary(["[PAD]", "[UNK]", *WORDS])
    dataset = DatasetRoot(str(root))
    questions = images * args.questions_per_image
    specs = {t: table_columns(t, region_dim=args.dim, text_dim=TEXT_DIM, dtype="float16", states=args.text_input == "states",
                              image_encoder="synthetic", text_encoder="synthetic") for t in ("regions", "vqa")}
    start = time.perf_counter()
    with StoreWriter(dataset.split_location("train"), dataset="bench_vqa", split="train", overwrite=True,
                     row_group_bytes=args.row_group_kib * 1024, row_groups_per_shard=args.row_groups_per_shard) as writer:
        for table, columns in specs.items():
            writer.add_table(table, columns)
        chunk = 256
        for lo in range(0, images, chunk):
            n = min(chunk, images - lo)
            ids = [f"img{i:07d}" for i in range(lo, lo + n)]
            corners = rng.uniform(0, 400, (n, args.regions, 2)).astype(np.float32)
            writer.write_batch("regions", {
                "image_id": ids, "image_h": np.full(n, 480, np.int32), "image_w": np.full(n, 640, np.int32),
                "features": rng.standard_normal((n, args.regions, args.dim), dtype=np.float32).astype(np.float16),
                "boxes": np.concatenate([corners, corners + 50], axis=2),
            })
            k = n * args.questions_per_image
            writer.write_batch("vqa", {
                "question_id": [f"q{lo * args.questions_per_image + j:08d}" for j in range(k)],
                "image_id": [ids[j // args.questions_per_image] for j in range(k)],
                "question": ["what color is the cube"] * k,
                "token_ids": list(rng.integers(2, len(vocab), (k, TOKENS), dtype=np.int32)),
                **({"states": rng.standard_normal((k, TOKENS, TEXT_DIM), dtype=np.float32).astype(np.float16)}
                   if args.text_input == "states" else {}),
                "answer_ids": list(rng.integers(0, len(ANSWERS), (k, 1), dtype=np.int32)),
                "answer_scores": list(np.ones((k, 1), np.float32)),
                "answer_type": ["other"] * k, "family": ["color"] * k,
                "referent_boxes": [np.zeros((0, 4), np.float32)] * k,  # none: the figures measure streaming only
            })
    manifest = writer.manifest
    dataset.write_vocab(vocab.to_json())
    dataset.write_answers(ANSWERS)
    dataset.write_card(DatasetCard(
        name="bench_vqa", fingerprint="bench", source={}, dtype="float16", tables=("regions", "vqa"),
        encoders={"image": {"name": "synthetic", "dim": args.dim}, "text": {"name": "synthetic", "dim": TEXT_DIM, "states": args.text_input == "states"}},
        splits={"train": {"regions": images, "vqa": questions}}, vocab_size=len(vocab), num_answers=len(ANSWERS),
        max_regions=args.regions, max_tokens=TOKENS,
    ))
    regions = manifest.tables["regions"]
    return {
        "images": images, "questions": questions,
        "regions_mb": round(sum(s.bytes for s in regions.shards) / MiB, 1),
        "questions_mb": round(sum(s.bytes for s in manifest.tables["vqa"].shards) / MiB, 1),
        "region_shards": len(regions.shards), "region_row_groups": sum(len(s.row_groups) for s in regions.shards),
        "images_per_row_group": regions.shards[0].row_groups[0],
        "write_seconds": round(time.perf_counter() - start, 2),
    }
