"""DeepSpeed ZeRO-3 through the project's engine on the CPU (gloo, one rank, a tiny model): the fp32
config runs, steps, gathers its partitioned weights and checkpoints; the bf16 configs parse and
complete. (ZeRO-2 under Ray Train with two workers is in test_train_ray.py.)"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from mmsearch.config import load_config
from mmsearch.orchestration.deepspeed_engine import DeepSpeedEngine, complete_deepspeed_config
from mmsearch.recipes.train_derived.config import TrainDerivedConfig, load_deepspeed_json

ROOT = Path(__file__).resolve().parents[1]
DS = ROOT / "configs" / "deepspeed"


def train_config(deepspeed: str) -> TrainDerivedConfig:
    return load_config(TrainDerivedConfig, {
        "arch": "mmnas_vqa", "data": {"task": "vqa"}, "train": {"batch_size": 4, "device": "cpu"},
        "deepspeed": load_deepspeed_json(str(DS / deepspeed)), "scaling": {"deepspeed_shm_op": False},
    })


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


@pytest.fixture(scope="module")
def gloo_rank0():
    """One gloo process group of one rank for the module (DeepSpeed keeps the group it first saw)."""
    import os

    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_WORLD_SIZE": "1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero3_fp32.json", "zero3_bf16.json"])
def test_zero3_runs_on_cpu(gloo_rank0, tmp_path, name):
    cfg = train_config(name)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = DeepSpeedEngine(model, cfg, world_size=1, rank=0)
    bf16 = "bf16" in name
    assert engine.stage == 3 and engine.gathers_parameters and engine.dtype == (torch.bfloat16 if bf16 else None)
    assert f"ZeRO-3 x1 on cpu, {'bf16' if bf16 else 'fp32'}" in engine.description
    x = torch.randn(4, 8)
    target = (x.sum(dim=1, keepdim=True) > 0).float()
    losses = []
    for _ in range(5):
        with engine.autocast():
            loss = nn.functional.binary_cross_entropy_with_logits(engine.forward(x), target)
        engine.step(loss)
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    weights = engine.full_state_dict()  # gathered from ZeRO-3's partitions: full shapes, fp32, changed
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape) for k, v in before.items()}
    assert all(v.dtype == torch.float32 for v in weights.values())
    assert any(not torch.equal(weights[k], before[k]) for k in before)
    engine.save(tmp_path, rank=0)
    assert (tmp_path / "model.pt").is_file() and list((tmp_path / "deepspeed" / "state").glob("*optim_states.pt"))


@pytest.mark.parametrize("name", ["zero3_bf16.json", "zero2_bf16.json"])
def test_bf16_configs_parse_and_complete(name):
    cfg = train_config(name)
    done = complete_deepspeed_config(cfg.deepspeed_config, cfg, world_size=4)
    assert done["bf16"] == {"enabled": True} and not done.get("fp16", {}).get("enabled")
    assert (done["train_micro_batch_size_per_gpu"], done["train_batch_size"]) == (4, 16)
    assert done["zero_optimization"]["stage"] == int(name[4])
    assert done["gradient_clipping"] == cfg.optim.grad_clip


@pytest.mark.parametrize("weights", [torch.bfloat16, torch.float32])
def test_inputs_reach_16_bit_weights_in_their_dtype(weights):
    """DeepSpeed's bf16 section keeps the weights in bf16 and turns an outer autocast off inside its
    forward: the engine casts the batch's floating inputs (not masks, ids or targets) to the weights'
    dtype; fp32 weights get the batch unchanged."""
    from mmsearch.batch import MultimodalBatch

    seen = {}

    def module(batch):
        seen["batch"] = batch
        return {}

    engine = object.__new__(DeepSpeedEngine)
    engine.engine, engine.model = module, nn.Linear(2, 2).to(weights)
    batch = MultimodalBatch(text_mask=torch.zeros(2, 3, dtype=torch.bool), text_ids=torch.ones(2, 3, dtype=torch.long),
                            region_feats=torch.randn(2, 4, 5), region_boxes=torch.rand(2, 4, 4) * 600,
                            region_mask=torch.zeros(2, 4, dtype=torch.bool), image_size=torch.full((2, 2), 640.0),
                            targets={"answer_scores": torch.rand(2, 7)}, meta={"question_id": [1, 2]})
    engine.forward(batch)
    got = seen["batch"]
    assert engine.weight_dtype() == weights
    assert got.region_feats.dtype == got.region_boxes.dtype == got.image_size.dtype == weights
    assert torch.allclose(got.region_feats.float(), batch.region_feats, rtol=1e-2, atol=1e-2)
    assert got.text_ids.dtype == torch.long and got.text_mask.dtype == got.region_mask.dtype == torch.bool
    assert got.targets["answer_scores"].dtype == torch.float32 and got.meta == batch.meta
    assert (got is batch) == (weights == torch.float32)
