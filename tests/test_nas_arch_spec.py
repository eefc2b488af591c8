"""Architecture specs: JSON round trip, MMnas's published files as they are, named specs, validation."""
from __future__ import annotations

import json
import math

import pytest

from mmsearch.nas import ArchSpec, load_arch_spec, mcan_prior_spec, named_spec, named_specs, random_spec, save_arch_spec
from mmsearch.nas.arch_spec import DEFAULT_POOLS, SPECS_DIR
from mmsearch.registry import UnknownNameError

MMNAS_FILES = ["mmnas_vqa.json", "mmnas_vgd.json", "mmnas_itm.json", "mcan.json"]


@pytest.mark.parametrize("file", MMNAS_FILES)
def test_mmnas_published_files_load_as_they_are(file):
    path = SPECS_DIR / file
    raw = json.loads(path.read_text())
    assert list(raw) == ["epoch0"]  # the files are MMnas's, unchanged
    spec = load_arch_spec(path)
    assert spec.epoch == 0
    assert spec.depths == (12, 18)
    mmnas_names = {"self_att_64": "self_att", "guided_att_64": "guided_att", "rel_self_att_64": "rel_self_att", "feed_forward": "feed_forward"}
    assert list(spec.enc) == [mmnas_names[b[0]] for b in raw["epoch0"]["enc"]]
    assert list(spec.dec) == [mmnas_names[b[0]] for b in raw["epoch0"]["dec"]]


def test_named_specs_match_the_published_op_counts():
    # Op counts of MMnas's arch/*.json (the reference notes' table).
    expected = {
        "mmnas_vqa": ({"self_att": 5, "feed_forward": 7}, {"guided_att": 6, "feed_forward": 7, "rel_self_att": 4, "self_att": 1}),
        "mmnas_vg": ({"self_att": 3, "feed_forward": 9}, {"guided_att": 11, "feed_forward": 2, "rel_self_att": 5}),
        "mmnas_itm": ({"self_att": 4, "feed_forward": 8}, {"guided_att": 10, "feed_forward": 1, "rel_self_att": 4, "self_att": 3}),
        "mcan": ({"self_att": 6, "feed_forward": 6}, {"guided_att": 6, "feed_forward": 6, "self_att": 6}),
    }
    for name, (enc, dec) in expected.items():
        counts = named_spec(name).op_counts()
        assert counts == {"enc": enc, "dec": dec}, name
    assert named_spec("mmnas_vqa").task == "vqa"
    assert named_spec("mmnas_vgd").same_architecture(named_spec("mmnas_vg"))
    assert named_spec("mcan").dec[:3] == ("self_att", "guided_att", "feed_forward")
    assert set(named_specs()) >= {"mmnas_vqa", "mmnas_vg", "mmnas_itm", "mcan"}
    with pytest.raises(KeyError, match="known: mmnas_vqa"):
        named_spec("mmnas_gqa")


def test_round_trip_with_all_metadata(tmp_path):
    spec = ArchSpec(
        enc=("self_att_64", "feed_forward"),
        dec=("rel_self_att", "guided_att_64", "feed_forward"),
        probs={"enc": [[0.7, 0.3], [0.2, 0.8]], "dec": [[0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.25] * 4]},
        op_pools={"enc": DEFAULT_POOLS["enc"], "dec": DEFAULT_POOLS["dec"]},
        seed=888,
        config={"net": {"hidden": 256}, "strategy": "proxyless"},
        epoch=7,
        task="vqa",
        source="unit test",
    )
    assert spec.enc == ("self_att", "feed_forward")  # canonicalised
    path = save_arch_spec(spec, tmp_path / "arch.json")
    raw = json.loads(path.read_text())
    assert raw["enc"] == [["self_att"], ["feed_forward"]]  # MMnas's genotype shape
    # the file says how sure the search was, per block: entropy in nats and over log(K)
    entropy = raw["entropy"]
    assert entropy["enc"] == pytest.approx([-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)), -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))])
    assert entropy["dec"][2] == pytest.approx(math.log(4)) and entropy["normalized"][4] == pytest.approx(1.0)
    assert entropy["normalized"][0] == pytest.approx(entropy["enc"][0] / math.log(2))
    assert entropy["normalized_mean"] == pytest.approx(sum(entropy["normalized"]) / 5)
    loaded = load_arch_spec(path)
    assert loaded == spec
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no scratch file


def test_mmnas_format_export_and_epoch_selection(tmp_path):
    spec = named_spec("mmnas_vqa").replace(epoch=3)
    path = save_arch_spec(spec, tmp_path / "export.json", mmnas_format=True)
    raw = json.loads(path.read_text())
    assert list(raw) == ["epoch3"] and raw["epoch3"]["enc"][0] == ["self_att_64"]
    assert set(raw["epoch3"]) == {"enc", "dec"}
    assert load_arch_spec(path).same_architecture(spec)

    # A search log in MMnas's layout: {"epoch1": ..., "epoch3": ..., "epoch10": ...}: latest is numeric.
    genotypes = {f"epoch{e}": random_spec(12, 18, seed=e).to_dict(mmnas_names=True) for e in (1, 3, 10)}
    for g in genotypes.values():
        del g["op_pools"], g["seed"], g["source"]
    log = tmp_path / "train_vqa-search.json"
    log.write_text(json.dumps(genotypes))
    assert load_arch_spec(log).epoch == 10
    assert load_arch_spec(log).same_architecture(random_spec(12, 18, seed=10))
    assert load_arch_spec(log, epoch=3).same_architecture(random_spec(12, 18, seed=3))
    with pytest.raises(ValueError, match=r"no 'epoch2'; it has epochs \[1, 3, 10\]"):
        load_arch_spec(log, epoch=2)


def test_unknown_op_names_list_the_known_ops(tmp_path):
    with pytest.raises(UnknownNameError, match="known ops: self_att, guided_att, rel_self_att, feed_forward"):
        ArchSpec(enc=("self_att",), dec=("sep_conv_3",))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"epoch0": {"enc": [["self_att_64"]], "dec": [["skip_connect"]]}}))
    with pytest.raises(ValueError, match="skip_connect.*known ops"):
        load_arch_spec(path)


def test_invalid_specs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="encoder blocks cannot use"):
        ArchSpec(enc=("guided_att",), dec=("self_att",))
    with pytest.raises(ValueError, match="not in the dec op pool"):
        ArchSpec(enc=("self_att",), dec=("rel_self_att",), op_pools={"enc": ("self_att",), "dec": ("self_att",)})
    with pytest.raises(ValueError, match="probs\\['dec'\\] has 2 blocks"):
        ArchSpec(enc=("self_att",), dec=("self_att",), probs={"enc": [[1.0]], "dec": [[1.0], [1.0]]})
    with pytest.raises(FileNotFoundError, match="not found"):
        load_arch_spec(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_arch_spec(tmp_path / "broken.json")
    (tmp_path / "two_ops.json").write_text(json.dumps({"enc": [["self_att", "feed_forward"]], "dec": [["self_att"]]}))
    with pytest.raises(ValueError, match="exactly one op"):
        load_arch_spec(tmp_path / "two_ops.json")
    (tmp_path / "other.json").write_text(json.dumps({"arch": 1}))
    with pytest.raises(ValueError, match="neither a genotype"):
        load_arch_spec(tmp_path / "other.json")


@pytest.mark.parametrize("enc_depth,dec_depth", [(1, 1), (5, 7), (12, 18), (13, 20)])
def test_mcan_prior_for_any_depth(enc_depth, dec_depth):
    spec = mcan_prior_spec(enc_depth, dec_depth)
    assert spec.depths == (enc_depth, dec_depth)
    assert spec.enc == tuple(("self_att", "feed_forward")[i % 2] for i in range(enc_depth))
    assert spec.dec == tuple(("rel_self_att", "guided_att", "feed_forward")[i % 3] for i in range(dec_depth))


def test_random_spec_is_reproducible_and_uses_the_pools():
    a, b = random_spec(12, 18, seed=5), random_spec(12, 18, seed=5)
    assert a == b
    assert not a.same_architecture(random_spec(12, 18, seed=6))
    pools = {"enc": ("feed_forward",), "dec": ("guided_att_64", "rel_self_att")}
    c = random_spec(4, 30, pools, seed=1)
    assert set(c.enc) == {"feed_forward"} and set(c.dec) == {"guided_att", "rel_self_att"}
