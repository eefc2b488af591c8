"""Bottom-up-attention .npz region files: layouts, dtype, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from mmsearch.data.loaders import RegionFileError, read_bua_image_size, read_bua_npz


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture
def regions():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((5, 8)).astype(np.float32)  # N=5 regions, D=8
    boxes = np.array([[0, 0, 10, 10], [5, 5, 50, 40], [1, 2, 3, 4], [20, 0, 64, 48], [0, 10, 30, 47]], np.float64)
    return feats, boxes


def test_mmnas_layout_is_transposed_to_regions_by_features(tmp_path, regions):
    feats, boxes = regions
    path = write_npz(tmp_path / "a.npz", x=feats.T.astype(np.float16), bbox=boxes, image_h=48, image_w=64)
    out = read_bua_npz(path)
    assert out.features.shape == (5, 8) and out.features.dtype == np.float32
    np.testing.assert_allclose(out.features, feats, atol=1e-2)  # float16 on disk
    assert out.boxes.dtype == np.float32 and out.boxes.shape == (5, 4)
    np.testing.assert_array_equal(out.boxes, boxes.astype(np.float32))
    assert (out.image_h, out.image_w) == (48, 64)
    features, boxes_out, image_h, image_w = out  # also unpacks as a plain tuple
    assert image_h == 48 and read_bua_image_size(path) == (48, 64)


def test_regions_by_features_layout_is_accepted(tmp_path, regions):
    feats, boxes = regions
    path = write_npz(tmp_path / "b.npz", x=feats, bbox=boxes, image_h=np.array(48), image_w=np.array([64]))
    np.testing.assert_array_equal(read_bua_npz(path, feature_dim=8).features, feats)
    np.testing.assert_array_equal(read_bua_npz(path).features, feats)  # unambiguous from the box count


def test_square_features_follow_the_mmnas_convention(tmp_path):
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    path = write_npz(tmp_path / "sq.npz", x=x, bbox=np.zeros((4, 4)), image_h=4, image_w=4)
    np.testing.assert_array_equal(read_bua_npz(path).features, x.T)


def test_wrong_feature_dim_or_region_count_fails(tmp_path, regions):
    feats, boxes = regions
    path = write_npz(tmp_path / "c.npz", x=feats.T, bbox=boxes, image_h=48, image_w=64)
    with pytest.raises(RegionFileError, match=r"c\.npz.*\(8, 5\).*\[2048, 5\]"):
        read_bua_npz(path, feature_dim=2048)
    mismatched = write_npz(tmp_path / "d.npz", x=feats.T, bbox=boxes[:4], image_h=48, image_w=64)
    with pytest.raises(RegionFileError, match="'bbox' has 4 boxes"):
        read_bua_npz(mismatched)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_w": None}, r"missing keys \['image_w'\]"),
        ({"bbox": np.zeros((5, 5))}, r"'bbox' must have shape \[N, 4\]"),
        ({"x": np.zeros((8, 5, 1))}, "'x' must be 2-D"),
        ({"image_h": 0}, "'image_h' must be one positive number"),
        ({"bbox": np.full((5, 4), np.inf)}, "'bbox' contains NaN"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, regions, change, message):
    feats, boxes = regions
    arrays = {"x": feats.T, "bbox": boxes, "image_h": 48, "image_w": 64}
    arrays.update(change)
    path = write_npz(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(RegionFileError, match=message) as info:
        read_bua_npz(path)
    assert "bad.npz" in str(info.value)


def test_nan_features_missing_and_corrupt_files(tmp_path, regions):
    feats, boxes = regions
    feats = feats.copy()
    feats[2, 3] = np.nan
    path = write_npz(tmp_path / "nan.npz", x=feats.T, bbox=boxes, image_h=48, image_w=64)
    with pytest.raises(RegionFileError, match="'x' contains NaN"):
        read_bua_npz(path)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        read_bua_npz(tmp_path / "nowhere.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RegionFileError, match="corrupt.npz"):
        read_bua_npz(corrupt)
