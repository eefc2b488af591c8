"""The importer of MMnas's own networks, without the reference code: a state dict in MMnas's key layout
(our exporter) imports back bit for bit; what does not map fails naming the keys; the command's
exit codes. bench/check_mmnas_import.py checks the outputs against the reference network itself."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mmsearch.batch import MultimodalBatch
from mmsearch.mmnas_import import import_mmnas, main
from mmsearch.nas import ArchSpec, NetConfig
from mmsearch.nas.mmnas_keys import MMnasKeyError, mmnas_to_ours, ours_to_mmnas
from mmsearch.ops import MMnasLayerNorm
from mmsearch.recipes.train_derived.engine import DerivedModel
from mmsearch.tasks import build_head, head_config

ROOT = Path(__file__).resolve().parents[1]
SPEC = ArchSpec.from_dict({"enc": [["self_att_64"], ["feed_forward"]],
                           "dec": [["guided_att_64"], ["rel_self_att_64"], ["self_att_64"], ["feed_forward"]]})
HEADS = {"vqa": {"num_answers": 7}, "itm": {"fusion": "sum"}, "vg": {}}


def ours(task: str, spec: ArchSpec = SPEC, **head: object) -> DerivedModel:
    torch.manual_seed(0)
    net = NetConfig(hidden=64, head_dim=64, layer_norm="mmnas", vocab_size=20, region_dim=16)
    model = DerivedModel(spec, net, head_config(task, flat_mlp_size=32, **{**HEADS[task], **head})).eval()
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so a mix-up would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def mmnas_checkpoint(model: DerivedModel, task: str, spec: ArchSpec = SPEC) -> dict:
    """As MMnas's train_*.py save it: DDP's state dict (``module.``) under ``state_dict``."""
    state = ours_to_mmnas(model.state_dict(), spec, task)
    return {"state_dict": {f"module.{k}": v for k, v in state.items()}, "net_optim": {}, "epoch": 1}


def batch() -> MultimodalBatch:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 20, (3, 6), generator=g)
    ids[0, 4:] = 0
    region_mask = torch.zeros(3, 5, dtype=torch.bool)
    region_mask[1, 3:] = True
    xy = torch.rand(3, 5, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(3, 5, 2, generator=g) * 50 + 2], -1)
    feats = torch.randn(3, 5, 16, generator=g) * ~region_mask[..., None]
    return MultimodalBatch(text_mask=ids == 0, text_ids=ids, region_feats=feats, region_boxes=boxes, region_mask=region_mask)


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_import_of_the_exported_mmnas_layout_reproduces_the_outputs_bit_for_bit(task):
    model = ours(task)
    checkpoint = mmnas_checkpoint(model, task)
    theirs = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    assert torch.equal(theirs["backnone.cells_enc.0.dag.0.0.mhatt.linear_k.weight"], model.net.encoder[0].attn.qkv.weight[64:128])
    assert torch.equal(theirs["backnone.cells_dec.0.dag.0.0.mhatt.linear_v.weight"], model.net.decoder[0].attn.kv.weight[64:])
    assert torch.equal(theirs["proj_norm.a_2"], (model.head.norm if task == "vg" else model.head.fusion.norm).weight)
    for flat in ("attflat_x", "attflat_y") if task != "vg" else ("attflat_x",):  # a logit shift before a softmax
        checkpoint["state_dict"][f"module.{flat}.mlp.linear.bias"] = torch.tensor([3.0])
    result = import_mmnas(checkpoint, SPEC, task)
    assert result.net.hidden == 64 and result.net.layer_norm == "mmnas" and result.net.vocab_size == 20
    assert isinstance(result.model.head.norm if task == "vg" else result.model.head.fusion.norm, MMnasLayerNorm)
    assert [line.split(":")[0] for line in result.ignored] == [f"{f}.mlp.linear.bias" for f in ("attflat_x", "attflat_y")][: 1 if task == "vg" else 2]
    with torch.no_grad():
        expected, got = model(batch()), result.model(batch())
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_the_relation_embedding_of_a_genotype_without_rsa_is_reported_ignored():
    spec = ArchSpec.from_dict({"enc": [["self_att"]], "dec": [["guided_att"], ["feed_forward"]]})
    checkpoint = mmnas_checkpoint(ours("vqa", spec), "vqa", spec)
    assert "module.linear_y_rel.weight" in checkpoint["state_dict"]  # MMnas's Net_Full always has it
    result = import_mmnas(checkpoint, spec, "vqa")
    assert any(line.startswith("linear_y_rel.weight: the relation embedding, which no op") for line in result.ignored)


def _error(state: dict, task: str = "vqa", spec: ArchSpec = SPEC, target: DerivedModel | None = None) -> str:
    with pytest.raises(MMnasKeyError) as info:
        mmnas_to_ours(state, spec, task, (target or ours(task)).state_dict())
    return str(info.value)


def test_missing_unexpected_and_mis_shaped_keys_are_named():
    state = ours_to_mmnas(ours("vqa").state_dict(), SPEC, "vqa")
    missing = {k: v for k, v in state.items() if k != "proj.bias"}
    assert "missing in the checkpoint: proj.bias" in _error(missing)
    assert "unexpected in the checkpoint: extra.weight" in _error({**state, "extra.weight": torch.zeros(1)})
    message = _error({**state, "backnone.cells_enc.0.dag.0.0.mhatt.linear_q.weight": torch.zeros(32, 64)})
    assert "mis-shaped: backnone.cells_enc.0.dag.0.0.mhatt.linear_q.weight (32, 64) (expected (64, 64) for our net.encoder.0.attn.qkv.weight)" in message


def test_structural_differences_are_said_precisely():
    state = ours_to_mmnas(ours("vqa").state_dict(), SPEC, "vqa")
    assert "box features (MMnas BBOX_FEATURE=True" in _error({**state, "bboxfeat_linear.weight": torch.zeros(2048, 5)})
    assert "repeated cells (MMnas LAYERS > 1)" in _error({**state, "backnone.cells_enc.1.dag.0.0.ln.a_2": torch.zeros(64)})
    swapped = ArchSpec.from_dict({"enc": [["feed_forward"], ["self_att"]], "dec": [["guided_att"], ["rel_self_att"], ["self_att"], ["feed_forward"]]})
    message = _error(state, spec=swapped, target=ours("vqa", swapped))
    assert "enc block 0: the genotype has feed_forward, the checkpoint's parameters are a self_att or guided_att's" in message
    shallow = ArchSpec.from_dict({"enc": [["self_att"]], "dec": [["guided_att"], ["rel_self_att"], ["self_att"], ["feed_forward"]]})
    assert "the checkpoint has 2 enc blocks, the genotype 1" in _error(state, spec=shallow, target=ours("vqa", shallow))
    itm = ours_to_mmnas(ours("itm").state_dict(), SPEC, "itm")
    message = _error(itm, "itm", target=ours("itm", fusion="sum_bilinear"))
    assert "no MMnas counterpart" in message and "head.bilinear.weight" in message
    with pytest.raises(MMnasKeyError, match="--task vqa, but the checkpoint's output layer is a vg network's"):
        import_mmnas(ours_to_mmnas(ours("vg").state_dict(), SPEC, "vg"), SPEC, "vqa")


def test_model_layer_norm_mmnas_reaches_the_heads():
    for task, extra in HEADS.items():
        norms = [type(m) for m in build_head(task, 32, layer_norm="mmnas", **extra).modules() if isinstance(m, (nn.LayerNorm, MMnasLayerNorm))]
        assert norms == [MMnasLayerNorm], task
        plain = [type(m) for m in build_head(task, 32, **extra).modules() if isinstance(m, (nn.LayerNorm, MMnasLayerNorm))]
        assert plain == [nn.LayerNorm], task
    assert isinstance(ours("vqa").head.fusion.norm, MMnasLayerNorm)  # DerivedModel passes model.layer_norm on


def test_the_command_writes_a_derived_training_checkpoint_and_exits_2_on_bad_input(tmp_path, capsys):
    from mmsearch.config import load_config
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig
    from mmsearch.recipes.train_derived.engine import load_model_weights
    from mmsearch.recipes.train_derived.state import read_state

    model = ours("vqa")
    torch.save(mmnas_checkpoint(model, "vqa"), tmp_path / "ckpt.pkl")
    (tmp_path / "arch.json").write_text('{"epoch3": ' + __import__("json").dumps(SPEC.to_dict(mmnas_names=True)) + "}")
    args = [str(tmp_path / "ckpt.pkl"), "--arch", str(tmp_path / "arch.json"), "--task", "vqa",
            "--config", str(ROOT / "configs" / "train" / "vqa.yaml")]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    cfg = load_config(TrainDerivedConfig, read_state(tmp_path / "out")["config"])
    assert cfg.model.layer_norm == "mmnas" and cfg.model.hidden == 64 and cfg.head.num_answers == 7
    again = DerivedModel(SPEC, cfg.model.net_config(text_input="tokens"), cfg.head)
    load_model_weights(again, tmp_path / "out")
    with torch.no_grad():
        assert torch.equal(again.eval()(batch())["logits"], model(batch())["logits"])
    capsys.readouterr()
    (tmp_path / "junk.pkl").write_bytes(b"not a checkpoint")
    broken = mmnas_checkpoint(model, "vqa")
    del broken["state_dict"]["module.proj.weight"]
    torch.save(broken, tmp_path / "broken.pkl")
    for bad in (["junk.pkl", "--arch", "arch.json"], ["broken.pkl", "--arch", "arch.json"], ["ckpt.pkl", "--arch", "nope.json"]):
        bad = [str(tmp_path / bad[0]), bad[1], str(tmp_path / bad[2])]
        assert main(bad + args[3:] + ["--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mmsearch import-mmnas: ") and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_evaluate_checkpoint_loads_the_imported_network_and_scores_it_as_the_original(tmp_path):
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.recipes.train_derived.outputs import evaluate_checkpoint, evaluate_split

    data = SyntheticTaskData("vqa", train_images=4, val_images=4, test_images=12)
    torch.manual_seed(0)
    net = NetConfig(hidden=64, head_dim=64, layer_norm="mmnas", vocab_size=data.info.vocab_size, word_dim=8, region_dim=16)
    model = DerivedModel(SPEC, net, head_config("vqa", flat_mlp_size=32, num_answers=data.info.num_answers)).eval()
    torch.save(mmnas_checkpoint(model, "vqa"), tmp_path / "ckpt.pkl")
    (tmp_path / "train.yaml").write_text("arch: mcan\ndata: {root: synthetic, task: vqa}\nhead: {task: vqa}\ntrain: {device: cpu}\n")
    assert main([str(tmp_path / "ckpt.pkl"), "--arch", "mmnas_vqa", "--task", "vqa", "--out", str(tmp_path / "out"),
                 "--config", str(tmp_path / "train.yaml")]) == 2  # another genotype: its keys do not match
    assert main([str(tmp_path / "ckpt.pkl"), "--arch", str(_arch_file(tmp_path)), "--task", "vqa", "--out", str(tmp_path / "out"),
                 "--config", str(tmp_path / "train.yaml")]) == 0
    evaluated = evaluate_checkpoint(tmp_path / "out", splits=("test",), task_data=data, device="cpu")
    direct, _ = evaluate_split(model, head_config("vqa", num_answers=data.info.num_answers), data, "test", batch_size=64,
                               device=torch.device("cpu"), autocast=__import__("contextlib").nullcontext())
    assert evaluated["test"] == direct and direct["vqa_acc"] > 0, (evaluated, direct)  # the same answers, some right


def _arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "mmnas_arch.json"
    path.write_text('{"epoch0": ' + __import__("json").dumps(SPEC.to_dict(mmnas_names=True)) + "}")
    return path


def test_the_reference_check_exits_2_without_the_reference_code(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_mmnas_import", ROOT / "bench" / "check_mmnas_import.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.main(["--src", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "is not an extracted MILVLG/mmnas" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    (tmp_path / "mmnas" / "model").mkdir(parents=True)
    (tmp_path / "mmnas" / "model" / "full_vqa.py").write_text("# not the pinned file\n")
    with pytest.raises(SystemExit) as stop:
        check.main(["--src", str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert stop.value.code == 2 and "is not the file of the pinned commit 552e29e" in capsys.readouterr().err
