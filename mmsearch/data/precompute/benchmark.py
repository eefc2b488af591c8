"""Which region crop size gives the best region features per second: speed and quality per size.

    python -m mmsearch.data.precompute.benchmark --scenes 100 --sizes 32 48 64 96 128

For each crop size (and crop context) it crops every object of ``--scenes`` embedded scenes at
its true box, encodes the crops with the frozen image encoder and reports

  * ``crops_per_s``: cropping + encoding throughput (best of ``--repeats`` passes, after a
    warm-up pass so one-off kernel set-up is not timed);
  * ``nn_colour`` / ``nn_shape`` / ``nn_size``: leave-one-out 1-nearest-neighbour accuracy of
    the object's attributes under cosine similarity of the features (chance: 1/8, 1/5, 1/2) --
    how much of what the VQA/VG questions ask about the features make directly visible.

One JSON line per setting. The default ``image.crop_size`` of ``PrecomputeConfig`` was chosen
from this table (see ``configs/data/scenes.yaml``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

import numpy as np
import torch


def object_crops_inputs(num_scenes: int, seed: int = 0):
    """(records to encode, per-object attributes) for the objects of the first scenes."""
    import pickle

    from mmsearch.data.records import ImageRecord
    from mmsearch.data.scenes import SceneConfig, render_scene, sample_scene

    cfg = SceneConfig(num_scenes=max(num_scenes, 10), seed=seed)
    records, attributes = [], []
    for index in range(num_scenes):
        scene = sample_scene(cfg, index)
        boxes = np.asarray([o.box for o in scene.objects], dtype=np.float32)
        record = ImageRecord(scene.image_id, scene.height, scene.width, proposals=boxes,
                             render=partial(render_scene, scene, cfg.supersample))
        records.append(pickle.dumps(record))
        attributes += [(o.colour, o.shape, o.size) for o in scene.objects]
    return records, attributes


def nearest_neighbour_accuracy(features: np.ndarray, attributes: list[tuple[str, ...]]) -> list[float]:
    """Leave-one-out 1-NN accuracy of each attribute position under cosine similarity."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    return [float(np.mean([attributes[i][k] == attributes[j][k] for i, j in enumerate(nearest)])) for k in range(len(attributes[0]))]


def measure(size: int, context: float, records: list[bytes], attributes, repeats: int) -> dict:
    from mmsearch.data.precompute.encode import ImageStage

    stage = ImageStage(crop_size=size, crop_context=context, image_size=32, dtype="float32")
    stage.whole = _NoWhole()  # time the regions only
    batch = {"index": np.arange(len(records)), "record": records}
    out = stage(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        stage(batch)
        times.append(time.perf_counter() - start)
    features = np.concatenate(out["features"])
    colour, shape, size_acc = nearest_neighbour_accuracy(features, attributes)
    return {
        "crop_size": size,
        "crop_context": context,
        "crops": len(features),
        "crops_per_s": round(len(features) / min(times), 1),
        "nn_colour": round(colour, 3),
        "nn_shape": round(shape, 3),
        "nn_size": round(size_acc, 3),
        "threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


class _NoWhole:
    """Stands in for the whole-image encoder: zeros, no compute."""

    def encode(self, images):
        return torch.zeros((len(images), 1280))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48, 64, 96, 128])
    parser.add_argument("--contexts", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    records, attributes = object_crops_inputs(args.scenes)
    results = []
    for size in args.sizes:
        for context in args.contexts:
            result = measure(size, context, records, attributes, args.repeats)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    main()
