"""The bf16 autocast code paths, run as far as a CPU can (torch's CPU autocast supports bf16), at
tiny shapes: bf16 matmuls are far slower than fp32 on CPUs without AMX. The search uses the
precomputed-text-states input: oneDNN has no bf16 LSTM on such CPUs, so the token path's LSTM
under bf16 autocast is left to the GPU check.

On a GPU these paths are chosen by precision "auto" (search.precision, FuseMix train.amp: auto,
train_derived train.precision); here they are asked for explicitly. The GPU itself (CUDA
autocast, NCCL, DeepSpeed bf16 on a GPU) is checked by bench/gpu_check.py on a GPU machine.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mmsearch.recipes.search.recipe as search_module
from mmsearch.config import load_config
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.search.recipe import run_search
from mmsearch.recipes.search.config import SearchConfig


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _search_config(precision: str) -> SearchConfig:
    return load_config(SearchConfig, {
        # precomputed text states: the token path's LSTM has no bf16 kernel on CPUs without
        # AVX512-BF16/AMX (oneDNN refuses it); on a GPU it is checked by bench/gpu_check.py
        "data": {"task": "vqa", "text_input": "states"},
        "model": {"hidden": 16, "head_dim": 8, "enc_depth": 1, "dec_depth": 1, "word_dim": 8, "relation_dim": 8},
        "head": {"task": "vqa", "flat_mlp_size": 16},
        "search": {"strategy": "darts", "epochs": 1, "warmup_epochs": 0, "arch_every": 1, "batch_size": 4,
                   "arch_batch_size": 4, "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu",
                   "precision": precision},
        "eval": {"batch_size": 8, "max_samples": 16},
    })


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("auto", None)])
def test_search_steps_and_evaluation_run_under_the_chosen_autocast(tmp_path, monkeypatch, precision, dtype):
    seen = {"weight": set(), "arch": set(), "eval": set()}

    def recording(name, fn):
        def wrapper(*args, **kwargs):
            enabled = torch.is_autocast_enabled("cpu")
            seen[name].add(torch.get_autocast_dtype("cpu") if enabled else None)
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(search_module, "weight_step", recording("weight", search_module.weight_step))
    monkeypatch.setattr(search_module, "arch_step", recording("arch", search_module.arch_step))
    monkeypatch.setattr(search_module, "evaluate", recording("eval", search_module.evaluate))
    data = SyntheticTaskData("vqa", train_images=8, val_images=4, test_images=2)
    context = LocalContext(tmp_path)
    run_search(_search_config(precision), context, data)
    assert seen == {"weight": {dtype}, "arch": {dtype}, "eval": {dtype}}  # "auto" on a CPU is fp32
    for m in context.history:
        assert math.isfinite(m["w_loss"]) and math.isfinite(m["val_metric"])
    state = torch.load(tmp_path / "checkpoints" / "epoch_000001" / "state.pt", weights_only=False)
    tensors = [t for t in _tensors(state) if t.is_floating_point()]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)  # weights stay fp32 under autocast


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def test_fusemix_step_and_embedding_under_bf16_autocast():
    from mmsearch.adapters import FuseMixModel
    from mmsearch.recipes.fusemix.recipe import _embed, fusemix_step
    from mmsearch.recipes.fusemix.config import FuseMixLossConfig, FuseMixOptimConfig
    from mmsearch.recipes.fusemix.optim import build_optimizer

    torch.manual_seed(0)
    model = FuseMixModel(12, 10, out_dim=8)
    opt = build_optimizer(model, load_config(FuseMixOptimConfig, {}), torch.device("cpu"))
    dtypes = []
    handle = model.x_adapter.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(16, 12), torch.randn(16, 10)
    loss_cfg = load_config(FuseMixLossConfig, {"mixup_alpha": 1.0})
    loss, rows = fusemix_step(model, opt, x, y, loss_cfg=loss_cfg, rng=np.random.default_rng(0), amp=True)
    handle.remove()
    assert dtypes == [torch.bfloat16]  # the adapters ran in bf16
    assert math.isfinite(loss) and rows == 16  # the loss (fp32) and the step went through
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    z = _embed(model.embed_x, torch.randn(10, 12), 4, torch.device("cpu"), amp=True)
    assert z.dtype == torch.float32 and z.shape == (10, 8) and torch.isfinite(z).all()


def test_train_derived_bf16_precision_on_cpu_autocasts():
    from mmsearch.recipes.train_derived.engine import autocast_context, autocast_dtype

    dtype = autocast_dtype("bf16", torch.device("cpu"))
    assert dtype is torch.bfloat16 and autocast_dtype("auto", torch.device("cpu")) is None
    layer = torch.nn.Linear(4, 3)
    with autocast_context(torch.device("cpu"), dtype):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
