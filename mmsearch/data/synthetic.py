"""A small procedural ``TaskData`` with a real, learnable signal, for tests and smoke runs.

Every image is a handful of objects, each a colour and a shape at a box, plus a few clutter
regions. A region's feature is the sum of fixed colour and shape embeddings plus noise (so
features say *what* an object is, never *where*: position is only in the boxes). Per task:

* **vqa**, four families: "what color is the <shape>?" (the one object of that shape; ``query``),
  "what color is the thing <left|right|above|below> of the <shape>?" (the nearest object in that
  direction from it: needs box geometry; ``relate``), both of answer type ``other``; "is there a
  <color> <shape>?" (``exist``, ``yes/no``, half of them about an object that is there); "how many
  <color> things?" (``count``, ``number``). One-hot answer scores over colours, counts, yes/no.
* **itm**: captions "<color> <shape> <rel> of the <color> <shape>" true of two objects of the
  image, two per image; one dataset hard negative per caption with the relation flipped (false,
  and told apart only by geometry).
* **vg**: "the thing <rel> of the <shape>" and "the <color> <shape>" (a unique object); the target
  box, jittered by a pixel, is the ground truth; the region proposals are the object boxes.

The data is a pure function of the constructor arguments (seed included); batch order of a
shuffled part is a pure function of ``(seed, epoch)``. Batches carry both ``text_ids`` and
``text_states`` (a fixed per-word vector plus noise), so either text input works. Meta per row:
``sample_id`` (unique over the data set, e.g. ``"train/17"``), ``image_id``, ``family`` and, for
VQA, ``answer_type`` and ``question_id``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from mmsearch.batch import MultimodalBatch
from mmsearch.data.synthetic_kinds import SCENE_KINDS
from mmsearch.data.task_data import Part, Task, TaskDataConfig, TaskInfo, row_batches

COLORS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left", "right", "above", "below")
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
WORDS = ("what", "color", "is", "the", "thing", "of", "how", "many", "things", "there", "a") + RELATIONS + COLORS + SHAPES
VOCAB = ("<pad>", "<unk>") + WORDS  # PAD = 0, UNK = 1
TOKEN = {word: i for i, word in enumerate(VOCAB)}
PARTS: tuple[str, ...] = ("weights", "arch", "train", "val", "test")
VQA_FAMILIES = ("query", "relate", "exist", "count")
IMAGE_HEIGHT, IMAGE_WIDTH = 96.0, 128.0
MARGIN = 4.0  # pixels between centres for a relation to hold


@dataclass
class _Object:
    color: int
    shape: int
    box: np.ndarray  # [4] pixels x1 y1 x2 y2

    @property
    def center(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2


@dataclass
class _Sample:
    image: int
    words: list[str]
    family: str
    answer: str = ""  # vqa
    answer_type: str = ""  # vqa
    negative: list[str] | None = None  # itm: a hard-negative caption
    target: int = -1  # vg: index of the referred object
    referents: tuple[int, ...] = ()  # vqa: indices of the objects the answer is read from


def _holds(relation: str, a: _Object, b: _Object) -> bool:
    """Whether ``a`` is ``relation`` of ``b`` (centres at least MARGIN apart on that axis)."""
    (ax, ay), (bx, by) = a.center, b.center
    return {"left": ax < bx - MARGIN, "right": ax > bx + MARGIN, "above": ay < by - MARGIN, "below": ay > by + MARGIN}[relation]


class SyntheticTaskData:
    """``TaskData`` over generated scenes (see the module docstring)."""

    def __init__(
        self,
        task: Task,
        *,
        train_images: int = 120,
        val_images: int = 30,
        test_images: int = 30,
        samples_per_image: int = 2,
        min_objects: int = 3,
        max_objects: int = 6,
        max_clutter: int = 2,
        region_dim: int = 16,
        text_state_dim: int = 24,
        noise: float = 0.3,
        arch_fraction: float = 0.2,
        split_seed: int = 0,
        seed: int = 0,
        limit: dict[str, int] | None = None,
        vqa_families: tuple[str, ...] = VQA_FAMILIES,
        shuffle_block: int = 1,
    ) -> None:
        self.shuffle_block = shuffle_block  # samples shuffled together (data.shuffle_block)
        if task not in SCENE_KINDS:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(SCENE_KINDS)}")
        if not 2 <= min_objects <= max_objects:
            raise ValueError(f"need 2 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        if min(train_images, val_images, test_images, samples_per_image) < 1:
            raise ValueError("every split needs at least one image and every image one sample")
        if not 0.0 < arch_fraction < 1.0:
            raise ValueError(f"arch_fraction must be in (0, 1), got {arch_fraction}")
        if not vqa_families or set(vqa_families) - set(VQA_FAMILIES):
            raise ValueError(f"vqa_families must be a non-empty subset of {VQA_FAMILIES}, got {vqa_families}")
        self._families = tuple(vqa_families)
        self.task = task
        self.kind = SCENE_KINDS[task]
        self._max_objects, self._min_objects, self._max_clutter = max_objects, min_objects, max_clutter
        self._noise, self._seed, self._per_image = noise, seed, samples_per_image
        tables = np.random.default_rng([seed, 0])
        # An object's region feature is color_embeddings[color] + shape_embeddings[shape] + noise.
        self.color_embeddings = tables.standard_normal((len(COLORS), region_dim)).astype(np.float32)
        self.shape_embeddings = tables.standard_normal((len(SHAPES), region_dim)).astype(np.float32)
        self._word_states = tables.standard_normal((len(VOCAB), text_state_dim)).astype(np.float32)
        self.answers: tuple[str, ...] = COLORS + tuple(str(n) for n in range(max_objects + 1)) + ("yes", "no")
        self._splits = {
            name: self._build_split(name, code, count)
            for code, (name, count) in enumerate((("train", train_images), ("val", val_images), ("test", test_images)), start=1)
        }
        self._parts = self._divide(arch_fraction, split_seed, limit or {})
        lengths = [len(s.words) for split in self._splits.values() for s in split.samples]
        self.info = TaskInfo(
            task=task,
            region_dim=region_dim,
            vocab_size=len(VOCAB),
            text_state_dim=text_state_dim,
            num_answers=len(self.answers) if self.kind.answers else 0,
            answers=self.answers if self.kind.answers else (),
            max_regions=max_objects + max_clutter,
            max_tokens=max(lengths),
            optional_targets=("referent_boxes",) if task == "vqa" else (),
        )

    @classmethod
    def from_config(cls, cfg: TaskDataConfig, **sizes: int | float) -> "SyntheticTaskData":
        """Synthetic data for a recipe's data config (task, weights/arch division, part caps, shuffle block)."""
        return cls(cfg.task, arch_fraction=cfg.arch_fraction, split_seed=cfg.split_seed, limit=dict(cfg.limit),
                   shuffle_block=cfg.shuffle_block, **sizes)

    # --- the TaskData protocol -------------------------------------------------------------
    def num_samples(self, part: Part) -> int:
        return len(self._part(part)[1])

    def batches(
        self,
        part: Part,
        *,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[MultimodalBatch]:
        split, rows = self._part(part)
        order = [seed, epoch, PARTS.index(part)] if shuffle else None
        for chunk in row_batches(rows, batch_size, order, drop_last, self.shuffle_block):
            yield split.collate(chunk)

    # --- generation ------------------------------------------------------------------------
    def collate_rows(self, part: Part, positions: np.ndarray) -> MultimodalBatch:
        """The batch of the samples at ``positions`` (0-based within ``part``), as ``batches`` collates them."""
        split, rows = self._part(part)
        return split.collate(rows[np.asarray(positions, dtype=np.int64)])

    def _part(self, part: str) -> tuple["_Split", np.ndarray]:
        if part not in self._parts:
            raise ValueError(f"unknown part {part!r}; known parts: {', '.join(PARTS)}")
        return self._parts[part]

    def _divide(self, arch_fraction: float, split_seed: int, limit: dict[str, int]) -> dict[str, tuple["_Split", np.ndarray]]:
        """weights / arch: disjoint sets of training *images* (all samples of an image go together)."""
        train = self._splits["train"]
        n_images = len(train.objects)
        order = np.random.default_rng([split_seed, 7]).permutation(n_images)
        n_arch = min(max(1, round(arch_fraction * n_images)), n_images - 1)
        arch_images = set(order[:n_arch].tolist())
        in_arch = np.array([s.image in arch_images for s in train.samples])
        parts = {
            "weights": (train, np.flatnonzero(~in_arch)),
            "arch": (train, np.flatnonzero(in_arch)),
            "train": (train, np.arange(len(train.samples))),
            "val": (self._splits["val"], np.arange(len(self._splits["val"].samples))),
            "test": (self._splits["test"], np.arange(len(self._splits["test"].samples))),
        }
        return {name: (split, rows[: limit.get(name, len(rows))]) for name, (split, rows) in parts.items()}

    def _build_split(self, name: str, code: int, count: int) -> "_Split":
        objects, clutter, samples = [], [], []
        for image in range(count):
            rng = np.random.default_rng([self._seed, code, image])
            scene = self._scene(rng)
            objects.append(scene)
            clutter.append(self._clutter(rng))
            samples += [self._sample(rng, image, scene) for _ in range(self._per_image)]
        return _Split(name, code, objects, clutter, samples, self)

    def _scene(self, rng: np.random.Generator) -> list[_Object]:
        scene = []
        for _ in range(int(rng.integers(self._min_objects, self._max_objects + 1))):
            size = rng.uniform(8.0, 20.0, size=2)
            center = rng.uniform([size[0] / 2, size[1] / 2], [IMAGE_WIDTH - size[0] / 2, IMAGE_HEIGHT - size[1] / 2])
            box = np.concatenate([center - size / 2, center + size / 2]).astype(np.float32)
            scene.append(_Object(int(rng.integers(len(COLORS))), int(rng.integers(len(SHAPES))), box))
        return scene

    def _clutter(self, rng: np.random.Generator) -> np.ndarray:
        """Background regions: [K, 4] small boxes (their features are noise)."""
        k = int(rng.integers(0, self._max_clutter + 1))
        corner = rng.uniform([0, 0], [IMAGE_WIDTH - 6, IMAGE_HEIGHT - 6], size=(k, 2))
        return np.concatenate([corner, corner + rng.uniform(3.0, 6.0, size=(k, 2))], axis=1).astype(np.float32)

    def _sample(self, rng: np.random.Generator, image: int, scene: list[_Object]) -> _Sample:
        return getattr(self, self.kind.maker)(rng, image, scene)

    @staticmethod
    def _relate(rng: np.random.Generator, scene: list[_Object]) -> tuple[str, int, int] | None:
        """A (relation, anchor, target) with a unique-shape anchor and the nearest object in that
        direction as target, or None if the scene has none."""
        shapes = [o.shape for o in scene]
        options = []
        for anchor, obj in enumerate(scene):
            if shapes.count(obj.shape) != 1:
                continue
            for relation in RELATIONS:
                candidates = [i for i, o in enumerate(scene) if i != anchor and _holds(relation, o, obj)]
                if candidates:
                    target = min(candidates, key=lambda i: float(np.linalg.norm(scene[i].center - obj.center)))
                    options.append((relation, anchor, target))
        return options[int(rng.integers(len(options)))] if options else None

    def _question(self, rng: np.random.Generator, image: int, scene: list[_Object]) -> _Sample:
        """A question of a random family; one the scene cannot answer (no unique shape, no object in
        any direction) falls through to the next family in the list, and to ``exist`` after all."""
        first = int(rng.integers(len(self._families)))
        for family in self._families[first:] + self._families[:first] + ("exist",):
            sample = self._ask(family, rng, image, scene)
            if sample is not None:
                return sample
        raise AssertionError("exist questions can always be asked")

    def _ask(self, family: str, rng: np.random.Generator, image: int, scene: list[_Object]) -> _Sample | None:
        if family == "query":
            shapes = [o.shape for o in scene]
            unique = [i for i, o in enumerate(scene) if shapes.count(o.shape) == 1]
            if not unique:
                return None
            index = unique[int(rng.integers(len(unique)))]
            obj = scene[index]
            words = ["what", "color", "is", "the", SHAPES[obj.shape]]
            return _Sample(image, words, "query", COLORS[obj.color], "other", referents=(index,))
        if family == "relate":
            related = self._relate(rng, scene)
            if related is None:
                return None
            relation, anchor, target = related
            words = ["what", "color", "is", "the", "thing", relation, "of", "the", SHAPES[scene[anchor].shape]]
            return _Sample(image, words, "relate", COLORS[scene[target].color], "other", referents=(target,))
        if family == "exist":  # half the time about an object that is there
            if rng.random() < 0.5:
                obj = scene[int(rng.integers(len(scene)))]
                color, shape = obj.color, obj.shape
            else:
                color, shape = int(rng.integers(len(COLORS))), int(rng.integers(len(SHAPES)))
            found = tuple(i for i, o in enumerate(scene) if o.color == color and o.shape == shape)
            words = ["is", "there", "a", COLORS[color], SHAPES[shape]]
            return _Sample(image, words, "exist", "yes" if found else "no", "yes/no", referents=found)
        color = int(rng.integers(len(COLORS)))
        counted = tuple(i for i, o in enumerate(scene) if o.color == color)
        return _Sample(image, ["how", "many", COLORS[color], "things"], "count", str(len(counted)), "number", referents=counted)

    def _caption(self, rng: np.random.Generator, image: int, scene: list[_Object]) -> _Sample:
        pairs = [(r, a, b) for a in range(len(scene)) for b in range(len(scene)) if a != b for r in RELATIONS if _holds(r, scene[a], scene[b])]
        if pairs:
            relation, a, b = pairs[int(rng.integers(len(pairs)))]
        else:  # every centre within MARGIN of every other (rare): left / right without the margin
            a, b = 0, 1
            relation = "left" if scene[a].center[0] < scene[b].center[0] else "right"

        def describe(rel: str) -> list[str]:
            return [COLORS[scene[a].color], SHAPES[scene[a].shape], rel, "of", "the", COLORS[scene[b].color], SHAPES[scene[b].shape]]
        return _Sample(image, describe(relation), "relation", negative=describe(OPPOSITE[relation]))

    def _expression(self, rng: np.random.Generator, image: int, scene: list[_Object]) -> _Sample:
        related = self._relate(rng, scene) if rng.random() < 0.5 else None
        if related is not None:
            relation, anchor, target = related
            return _Sample(image, ["the", "thing", relation, "of", "the", SHAPES[scene[anchor].shape]], "relate", target=target)
        kinds = [(o.color, o.shape) for o in scene]
        unique = [i for i, kind in enumerate(kinds) if kinds.count(kind) == 1]
        target = unique[int(rng.integers(len(unique)))] if unique else int(rng.integers(len(scene)))
        obj = scene[target]
        return _Sample(image, ["the", COLORS[obj.color], SHAPES[obj.shape]], "attribute", target=target)


class _Split:
    """One split's scenes and samples as padded arrays; ``collate`` makes dynamically padded batches."""

    def __init__(self, name: str, code: int, objects: list[list[_Object]], clutter: list[np.ndarray],
                 samples: list[_Sample], data: SyntheticTaskData) -> None:
        self.name, self.objects, self.samples, self.kind = name, objects, samples, data.kind
        n_images, n_regions = len(objects), max(len(o) + len(c) for o, c in zip(objects, clutter))
        dim = data.color_embeddings.shape[1]
        self.region_count = np.zeros(n_images, dtype=np.int64)
        self.feats = np.zeros((n_images, n_regions, dim), dtype=np.float32)
        self.boxes = np.zeros((n_images, n_regions, 4), dtype=np.float32)
        for i, (scene, extra) in enumerate(zip(objects, clutter)):
            rng = np.random.default_rng([data._seed, code, i, 1])
            count = len(scene) + len(extra)
            self.region_count[i] = count
            for j, obj in enumerate(scene):
                self.feats[i, j] = data.color_embeddings[obj.color] + data.shape_embeddings[obj.shape]
                self.boxes[i, j] = obj.box
            self.boxes[i, len(scene):count] = extra
            self.feats[i, :count] += data._noise * rng.standard_normal((count, dim)).astype(np.float32)
        lengths = [len(s.words) for s in samples] + [len(s.negative) for s in samples if s.negative]
        self.width = max(lengths)
        self.image = np.array([s.image for s in samples], dtype=np.int64)
        self.text_ids, self.text_length = self.encode([s.words for s in samples])
        self.word_states = data._word_states
        self.kind.prepare(self, data, code)

    def encode(self, sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids [S, width] and lengths [S] of the split's sentences."""
        return _encode(sentences, self.width)

    def states(self, ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.word_states[ids])

    def collate(self, rows: np.ndarray) -> MultimodalBatch:
        images = self.image[rows]
        t = int(self.text_length[rows].max())
        if self.kind.negatives:  # the negatives share the text width
            t = max(t, int(self.neg_length[rows].max()))
        n = int(self.region_count[images].max())
        text_ids = torch.from_numpy(self.text_ids[rows, :t])
        text_mask = torch.arange(t)[None, :] >= torch.from_numpy(self.text_length[rows])[:, None]
        region_mask = torch.arange(n)[None, :] >= torch.from_numpy(self.region_count[images])[:, None]
        batch = MultimodalBatch(
            text_mask=text_mask,
            text_ids=text_ids,
            text_states=self.states(self.text_ids[rows, :t]).masked_fill(text_mask[..., None], 0.0),
            region_feats=torch.from_numpy(self.feats[images, :n]),
            region_boxes=torch.from_numpy(self.boxes[images, :n]),
            region_mask=region_mask,
            image_size=torch.tensor([[IMAGE_HEIGHT, IMAGE_WIDTH]]).expand(len(rows), 2).contiguous(),
            meta={
                "sample_id": [f"{self.name}/{r}" for r in rows.tolist()],
                "image_id": [f"{self.name}/image{i}" for i in images.tolist()],
                "family": [self.samples[r].family for r in rows.tolist()],
            },
        )
        self.kind.collate(self, rows, batch, t)
        return batch


def _encode(sentences: list[list[str]], width: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((len(sentences), width), dtype=np.int64)
    for i, words in enumerate(sentences):
        ids[i, : len(words)] = [TOKEN.get(w, 1) for w in words]
    return ids, np.array([max(1, len(w)) for w in sentences], dtype=np.int64)


__all__ = ["COLORS", "RELATIONS", "SHAPES", "VOCAB", "SyntheticTaskData"]
