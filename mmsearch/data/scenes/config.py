"""Configuration of the embedded scene data set (sizes, counts, splits, seed)."""
from __future__ import annotations

from mmsearch.config import config_dataclass

# Number of distinct caption kinds in captions.py: one caption of each kind per image at most.
MAX_CAPTIONS_PER_IMAGE = 5


@config_dataclass
class SceneConfig:
    """Everything that determines the generated data set; equal configs give identical data.

    A scene depends only on ``(seed, scene index)`` and the scene-level fields, never on how many
    scenes are generated, so growing ``num_scenes`` keeps the existing scenes unchanged (the split
    assignment, a permutation of all indices, does change).
    """

    num_scenes: int = 3000
    seed: int = 0
    image_size: int = 128  # square images, pixels
    min_objects: int = 3
    max_objects: int = 7
    questions_per_image: int = 6
    captions_per_image: int = 5
    hard_negatives_per_caption: int = 3
    refs_per_image: int = 3
    max_regions: int = 24  # cap on proposals per image (object proposals + distractors)
    max_proposals_per_object: int = 3
    max_distractor_regions: int = 6
    supersample: int = 3  # anti-aliasing: shapes are drawn at this multiple and downsampled
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    name: str = "scenes"

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.image_size < 64:
            raise ValueError(f"image_size must be >= 64 pixels, got {self.image_size}")
        if not 2 <= self.min_objects <= self.max_objects <= 10:
            raise ValueError(
                f"need 2 <= min_objects <= max_objects <= 10, got {self.min_objects}..{self.max_objects}"
            )
        if not 1 <= self.captions_per_image <= MAX_CAPTIONS_PER_IMAGE:
            raise ValueError(f"captions_per_image must be in 1..{MAX_CAPTIONS_PER_IMAGE}, got {self.captions_per_image}")
        for key in ("questions_per_image", "hard_negatives_per_caption", "refs_per_image", "max_proposals_per_object"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_distractor_regions < 0:
            raise ValueError(f"max_distractor_regions must be >= 0, got {self.max_distractor_regions}")
        if self.max_regions < self.max_objects:
            raise ValueError(
                f"max_regions ({self.max_regions}) must be >= max_objects ({self.max_objects}): "
                "every object needs at least one proposal"
            )
        if not 1 <= self.supersample <= 4:
            raise ValueError(f"supersample must be in 1..4, got {self.supersample}")
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in (0, 1), got {getattr(self, key)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1 (the rest is train)")
        n_val, n_test = split_sizes(self)
        if min(n_val, n_test, self.num_scenes - n_val - n_test) < 1:
            raise ValueError(
                f"num_scenes={self.num_scenes} is too small for the split fractions: every split needs a scene"
            )


def split_sizes(cfg: SceneConfig) -> tuple[int, int]:
    """(number of val scenes, number of test scenes); train gets the rest."""
    return round(cfg.val_fraction * cfg.num_scenes), round(cfg.test_fraction * cfg.num_scenes)
