"""Precompute on the local backend: card, vocabularies, stores against the records, idempotence,
interrupted runs, real region features, configs."""
from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest
import torch

from mmsearch.config import ConfigError, load_config
from mmsearch.data.dataset_root import DatasetError, DatasetRoot
from mmsearch.data.precompute import precompute
from mmsearch.data.precompute.config import PrecomputeConfig, fingerprint
from mmsearch.data.precompute.encode import ImageStage
from mmsearch.data.precompute.records import all_texts, build_answers, top_answer
from mmsearch.data.precompute.runner import LocalRunner
from mmsearch.data.precompute.benchmark import nearest_neighbour_accuracy, object_crops_inputs
from mmsearch.data.store import open_store
from mmsearch.data.text import Vocabulary, encode_ids
from test_precompute_common import scene_records, scenes_config, shared_scenes

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "data")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return shared_scenes(tmp_path_factory)


@pytest.fixture(scope="module")
def records():
    return scene_records()


@pytest.fixture(scope="module")
def tables(built):
    root = DatasetRoot(built.root)
    return {split: {name: open_store(root.split_uri(split)).table(name).read_all(float_dtype=None)
                    for name in built.card.tables} for split in built.card.splits}


def by_id(table: dict, key: str) -> dict:
    return {value: i for i, value in enumerate(table[key])}


def test_card_vocabularies_and_row_counts(built, records):
    card, root = built.card, DatasetRoot(built.root)
    assert root.read_card() == card  # built here or by an earlier module: precompute is idempotent
    assert card.name == "scenes" and card.fingerprint == fingerprint(scenes_config(built.root))
    assert card.tables == ("regions", "images", "vqa", "captions", "pairs", "negatives", "refs")
    assert card.encoders["image"]["dim"] == 1280 and card.encoders["image"]["crop_size"] == 48
    assert card.encoders["text"] == {"name": "minilm", "dim": 384, "states": True, "max_tokens": 32}
    assert card.region_dim == 1280 and card.text_state_dim == 384 and card.dtype == "float16"
    for split, part in records.items():
        rows = card.splits[split]
        assert rows["regions"] == rows["images"] == len(part.images)
        assert rows["vqa"] == len(part.vqa) and rows["refs"] == len(part.refs)
        assert rows["captions"] == rows["pairs"] == len(part.captions)
        assert rows["negatives"] == sum(len(c.hard_negatives) for c in part.captions)
    # Vocabularies come from the train split only.
    train = records["train"]
    assert root.read_vocab() == Vocabulary.build(all_texts(train))
    assert card.vocab_size == len(root.read_vocab())
    answers = root.read_answers()
    assert answers == build_answers(train, scenes_config(built.root)) and card.num_answers == len(answers)
    assert {top_answer(q.answers) for q in train.vqa} == set(answers)
    assert card.max_regions == max(len(i.proposals) for p in records.values() for i in p.images.values())
    rates = card.throughput
    assert rates["backend"] == "local" and rates["regions"] == sum(len(i.proposals) for p in records.values() for i in p.images.values())
    assert rates["regions_per_s"] > 0 and rates["texts_per_s"] > 0 and rates["seconds"]["total"] > 0


def test_rows_match_the_records(built, records, tables):
    vocab = DatasetRoot(built.root).read_vocab()
    answers = DatasetRoot(built.root).read_answers()
    for split in ("train", "test"):
        part, t = records[split], tables[split]
        question = part.vqa[3]
        row = by_id(t["vqa"], "question_id")[question.question_id]
        ids, _ = encode_ids([question.question], vocab)
        assert t["vqa"]["token_ids"][row][: t["vqa"]["token_ids_lengths"][row]].tolist() == ids[0][ids[0] > 0].tolist()
        known = {answers.index(a): s for a, s in question.answers.items() if a in answers}
        got = dict(zip(t["vqa"]["answer_ids"][row][: t["vqa"]["answer_ids_lengths"][row]].tolist(),
                       t["vqa"]["answer_scores"][row][: t["vqa"]["answer_scores_lengths"][row]].tolist()))
        assert got == known and t["vqa"]["answer_type"][row] == question.answer_type and t["vqa"]["family"][row] == question.family
        ref = part.refs[1]
        row = by_id(t["refs"], "ref_id")[ref.ref_id]
        assert np.allclose(t["refs"]["target_box"][row], ref.target_box) and t["refs"]["expression"][row] == ref.expression
        caption = next(c for c in part.captions if c.hard_negatives)
        mine = [i for i, c in enumerate(t["negatives"]["caption_id"]) if c == caption.caption_id]
        assert [t["negatives"]["text"][i] for i in sorted(mine, key=lambda i: t["negatives"]["rank"][i])] == list(caption.hard_negatives)
        image = part.images[caption.image_id]
        row = by_id(t["regions"], "image_id")[caption.image_id]
        assert t["regions"]["features_lengths"][row] == len(image.proposals)
        assert np.array_equal(t["regions"]["boxes"][row][: len(image.proposals)], image.proposals)
        assert (t["regions"]["image_h"][row], t["regions"]["image_w"][row]) == (image.height, image.width)


def test_pairs_join_image_and_caption_latents(built, records, tables):
    from mmsearch.encoders import build_encoder

    t = tables["val"]
    images = by_id(t["images"], "image_id")
    captions = by_id(t["captions"], "caption_id")
    for row, (image_id, caption_id) in enumerate(zip(t["pairs"]["image_id"], t["pairs"]["caption_id"])):
        assert np.array_equal(t["pairs"]["image"][row], t["images"]["image"][images[image_id]])
        assert np.array_equal(t["pairs"]["text"][row], t["captions"]["sentence"][captions[caption_id]])
    expected = build_encoder("minilm").embed(t["captions"]["caption"], max_tokens=32)
    stored = torch.from_numpy(t["captions"]["sentence"].astype(np.float32))
    assert torch.nn.functional.cosine_similarity(stored, expected).min() > 0.999


def test_states_align_with_token_ids(tables):
    t = tables["val"]["vqa"]
    assert np.array_equal(t["states_lengths"], t["token_ids_lengths"])
    padded = t["states"][~t["states_mask"]]
    assert padded.shape[1] == 384 and np.isfinite(padded.astype(np.float32)).all() and np.abs(padded).max() > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_region_features_are_real_and_deterministic(threads):
    """Crops of the scenes' objects at their true boxes: same-looking objects in different scenes
    have near-identical features, other colours or shapes clearly different ones; an object's
    features do not depend on how many others it is encoded with, at one thread or two."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        encoded, attributes = object_crops_inputs(16)
        stage = ImageStage(crop_size=48, image_size=64, dtype="float32")
        out = stage({"index": np.arange(len(encoded)), "record": encoded})
        again = stage({"index": np.arange(2), "record": encoded[:2]})
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(out["features"][:2], again["features"]))  # same object twice
    features = np.concatenate(out["features"])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    same, other_colour, other_shape = [], [], []
    for a in range(len(attributes)):
        for b in range(a + 1, len(attributes)):
            (ca, sa, za), (cb, sb, zb) = attributes[a], attributes[b]
            if (ca, sa, za) == (cb, sb, zb):
                same.append(similarity[a, b])
            elif (sa, za) == (sb, zb):
                other_colour.append(similarity[a, b])
            elif (ca, za) == (cb, zb):
                other_shape.append(similarity[a, b])
    assert same and other_colour and other_shape
    assert np.median(same) > 0.85
    assert np.median(same) > np.median(other_colour) + 0.1 > np.median(other_shape) + 0.2
    colour, shape, size = nearest_neighbour_accuracy(features, attributes)
    assert colour > 0.6 and shape > 0.8 and size > 0.6  # chance: 0.125, 0.2, 0.5


def test_rerun_on_a_complete_root_is_a_noop(built):
    card_path = os.path.join(built.root, "dataset.json")
    before = os.stat(card_path).st_mtime_ns
    again = precompute(scenes_config(built.root, local_batch=3))  # batch sizes are not part of the data
    assert not again.built and again.card == built.card and os.stat(card_path).st_mtime_ns == before


class _FailingRunner(LocalRunner):
    """Runs the image stage, then dies in the text stage (a crashed job)."""

    def run(self, spec, inputs):
        if spec.kind == "text":
            raise RuntimeError("worker died")
        yield from super().run(spec, inputs)


def test_interrupted_run_leaves_no_card_and_is_rebuilt(tmp_path):
    from mmsearch.data.tasks import open_task_data
    from mmsearch.data.task_data import TaskDataConfig

    cfg = scenes_config(tmp_path / "ds", num_scenes=10, tables=["regions", "vqa"], text={"states": False})
    with pytest.raises(RuntimeError, match="worker died"):
        precompute(cfg, _FailingRunner())
    root = DatasetRoot(cfg.output)
    assert not root.has_card() and not (tmp_path / "ds" / "train" / "_mmsearch_store.json").exists()
    with pytest.raises(DatasetError, match="incomplete"):
        open_task_data(TaskDataConfig(root=cfg.output))
    result = precompute(cfg)
    assert result.built and root.has_card() and result.card.splits["train"]["vqa"] == 42
    # A partly committed older attempt is replaced too: drop the card and run again.
    root.remove_card()
    assert precompute(cfg).built


def test_a_root_with_another_data_set_is_not_overwritten(built):
    other = scenes_config(built.root, image={"crop_size": 96})
    assert fingerprint(other) != built.card.fingerprint
    with pytest.raises(DatasetError, match="different data set"):
        precompute(other)


def test_fingerprint_ignores_where_and_how():
    base = scenes_config("/a")
    assert fingerprint(base) == fingerprint(scenes_config("/b", backend="ray", local_batch=99, image={"batch_size": 7},
                                                          layout={"row_group_kib": 128, "row_groups_per_shard": 64}))
    assert fingerprint(base) != fingerprint(scenes_config("/a", source={"scenes": {"seed": 1}}))
    assert fingerprint(base) != fingerprint(scenes_config("/a", text={"max_tokens": 16}))


def test_layout_cuts_row_groups_and_files_without_changing_a_row(built, tmp_path):
    """One image per row group (what a streamed search wants), four row groups per file: the same
    rows as the default layout's 8 MiB row groups."""
    cfg = scenes_config(tmp_path / "small_groups", tables=["regions"], layout={"row_group_kib": 16, "row_groups_per_shard": 4})
    assert fingerprint(cfg) == fingerprint(scenes_config(built.root, tables=["regions"]))
    precompute(cfg)
    for split in ("train", "test"):
        small = open_store(DatasetRoot(cfg.output).split_uri(split)).table("regions")
        default = open_store(DatasetRoot(built.root).split_uri(split)).table("regions")
        shards = small.manifest.shards
        assert all(set(s.row_groups) == {1} and len(s.row_groups) <= 4 for s in shards)  # a region row is > 16 KiB
        assert len(shards) == -(-small.num_rows // 4) and len(default.manifest.shards) == 1
        rows, reference = small.read_arrow(), default.read_arrow()
        assert rows.column("image_id").to_pylist() == reference.column("image_id").to_pylist()
        assert rows.column("features").equals(reference.column("features"))
    with pytest.raises(ConfigError, match="layout.row_group_kib"):
        scenes_config("/x", layout={"row_group_kib": 0})


def test_shipped_configs_load_and_the_default_is_the_scenes_config():
    names = sorted(f[:-5] for f in os.listdir(CONFIGS) if f.endswith(".yaml"))
    assert {"scenes", "scenes_small", "vqa_v2", "flickr30k", "refcoco"} <= set(names)
    configs = {n: load_config(PrecomputeConfig, os.path.join(CONFIGS, f"{n}.yaml")) for n in names}
    assert configs["scenes"] == PrecomputeConfig()
    seeded = load_config(PrecomputeConfig, None, ["source.scenes.seed=1"])  # a partial section keeps the default size
    assert seeded.source.scenes.num_scenes == PrecomputeConfig().source.scenes.num_scenes and seeded.source.scenes.seed == 1
    assert configs["vqa_v2"].name == "vqa_v2" and configs["refcoco"].tables == ("regions", "refs")
    with pytest.raises(ConfigError, match="tables"):
        load_config(PrecomputeConfig, {"tables": ["regions", "nope"]})
    with pytest.raises(ConfigError, match="train"):
        load_config(PrecomputeConfig, {"source": {"splits": ["val"]}})


def test_requested_tables_must_exist_in_the_source():
    from mmsearch.data.precompute import resolve_tables

    splits = {"train": scene_records(10)["train"]}
    splits["train"].captions.clear()  # a source without captions (like VQA-v2)
    assert "pairs" not in resolve_tables(scenes_config("/x", num_scenes=10), splits)
    with pytest.raises(DatasetError, match="no records for table"):
        resolve_tables(scenes_config("/x", num_scenes=10, tables=["regions", "pairs"]), splits)


def test_building_the_scene_records_logs_progress(caplog):
    from mmsearch.data.precompute.records import load_splits

    with caplog.at_level(logging.INFO, logger="mmsearch.data.precompute.records"):
        splits = load_splits(scenes_config("/x", num_scenes=10).source)  # what precompute runs first
    lines = [r.getMessage() for r in caplog.records if r.name == "mmsearch.data.precompute.records"]
    assert lines and lines[-1].startswith("scene records: 10/10 scenes (100%), ") and " done in " in lines[-1]
    assert sum(len(split.images) for split in splits.values()) == 10


def test_image_records_pickle_small():
    """Stage inputs are descriptors (boxes + how to render), never pixels."""
    part = scene_records(10)["train"]
    sizes = [len(pickle.dumps(image)) for image in part.images.values()]
    assert max(sizes) < 4096
    image = next(iter(part.images.values()))
    assert pickle.loads(pickle.dumps(image)).render().size == (image.width, image.height)


def test_grid_regions_for_photos_without_proposals(tmp_path):
    from PIL import Image

    from mmsearch.data.records import ImageRecord

    path = tmp_path / "photo.png"
    Image.new("RGB", (90, 60), (200, 30, 30)).save(path)
    record = ImageRecord("p1", 60, 90, path=str(path))
    out = ImageStage(crop_size=32, image_size=32, grid=2)({"index": np.array([0]), "record": [pickle.dumps(record)]})
    assert out["features"][0].shape == (5, 1280) and out["features"][0].dtype == np.float16
    assert np.allclose(out["boxes"][0][0], [0, 0, 90, 60]) and np.allclose(out["boxes"][0][4], [45, 30, 90, 60])
    assert (out["image_h"][0], out["image_w"][0]) == (60, 90) and out["image"].shape == (1, 1280)


def test_whole_image_latents_without_regions(tmp_path):
    """Tables without ``regions`` (a FuseMix-only data set) cut no crops; the latents are unchanged."""
    from PIL import Image

    from mmsearch.data.records import ImageRecord

    path = tmp_path / "photo.png"
    Image.new("RGB", (90, 60), (20, 160, 30)).save(path)
    batch = {"index": np.array([0]), "record": [pickle.dumps(ImageRecord("p1", 60, 90, path=str(path)))]}
    both = ImageStage(crop_size=32, image_size=32)(batch)
    whole_only = ImageStage(crop_size=32, image_size=32, regions=False)(batch)
    assert whole_only["features"][0].shape == (0, 1280) and whole_only["boxes"][0].shape == (0, 4)
    assert np.array_equal(whole_only["image"], both["image"])
